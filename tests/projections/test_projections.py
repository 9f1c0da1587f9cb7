import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf
from conftest import KINDS, materialize
from piece_products import affine, transpose_pieces

from keras_idim import projections
from keras_idim.projections import (
    DenseProjection,
    FastfoodProjection,
    SparseProjection,
    fastfood,
)
from keras_idim.projections.fastfood import fwht
from keras_idim.projections.hadamard import fwht_products


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_exact_unit_column_norms(kind):
    p = projections.get(kind)(full_dim=3000, dim=40, seed=3)
    norms = np.linalg.norm(materialize(p), axis=0)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


@pytest.mark.parametrize("blocks", ["single", "stacked"])
def test_fastfood_columns_unit_norm_in_expectation_and_nearly_orthogonal(blocks):
    p = FastfoodProjection(full_dim=4000, dim=64, seed=3, blocks=blocks)
    assert p.blocks == blocks
    mat = materialize(p)
    norms = np.linalg.norm(mat, axis=0)
    assert abs(norms.mean() - 1.0) < 0.05
    corr = (mat.T @ mat) / np.outer(norms, norms)
    off_diagonal = np.abs(corr[~np.eye(64, dtype=bool)])
    # Independent random unit vectors in R^4000 have |cos| about 0.0126.
    assert off_diagonal.mean() < 0.03


@pytest.mark.parametrize(
    "kind, options",
    [
        ("dense", {}),
        ("sparse", {}),
        ("sparse", {"jit_compile": False}),
        ("fastfood", {"blocks": "single"}),
        ("fastfood", {"blocks": "stacked", "jit_compile": False}),
        ("fastfood", {"blocks": "stacked"}),
    ],
)
def test_transpose_and_autodiff_gradient_equal_p_transpose(kind, options):
    p = projections.get(kind)(full_dim=1500, dim=30, seed=1, **options)
    mat = materialize(p)
    g = np.random.default_rng(0).standard_normal(1500).astype(np.float32)
    expected = mat.T.astype(np.float64) @ g
    np.testing.assert_allclose(p.transpose(g).numpy(), expected, rtol=1e-4, atol=1e-5)
    v = tf.Variable(tf.random.normal([30]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(p(v) * g)
    np.testing.assert_allclose(
        tf.convert_to_tensor(tape.gradient(loss, v)).numpy(),
        expected,
        rtol=1e-4,
        atol=1e-5,
    )
    # And the map is the matrix: P v.
    np.testing.assert_allclose(p(v).numpy(), mat @ v.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_transpose_compiles_in_tf_function(kind):
    p = projections.get(kind)(full_dim=500, dim=10, seed=0)
    g = tf.random.normal([500])
    np.testing.assert_allclose(
        tf.function(p.transpose)(g).numpy(),
        p.transpose(g).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


_CHILD = """
import json, sys
import numpy as np, tensorflow as tf
from keras_idim import projections
out = {}
for kind in %r:
    for seed in (0, 1):
        p = projections.get(kind)(full_dim=700, dim=12, seed=seed)
        cols = [p(tf.one_hot(j, 12)).numpy() for j in range(12)]
        out[f"{kind}-{seed}"] = np.stack(cols, 1).astype(np.float32).tobytes().hex()
p = projections.FastfoodProjection(full_dim=700, dim=12, seed=0, blocks="single")
cols = [p(tf.one_hot(j, 12)).numpy() for j in range(12)]
out["single-0"] = np.stack(cols, 1).astype(np.float32).tobytes().hex()
json.dump(out, sys.stdout)
"""


def test_same_seed_gives_same_matrix_bit_for_bit_in_another_process():
    child = subprocess.run(
        [sys.executable, "-c", _CHILD % (KINDS,)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    theirs = json.loads(child.stdout)
    for kind in KINDS:
        mine = materialize(projections.get(kind)(full_dim=700, dim=12, seed=0))
        assert mine.astype(np.float32).tobytes().hex() == theirs[f"{kind}-0"]
        assert theirs[f"{kind}-0"] != theirs[f"{kind}-1"]
    single = FastfoodProjection(full_dim=700, dim=12, seed=0, blocks="single")
    assert materialize(single).astype(np.float32).tobytes().hex() == theirs["single-0"]


@pytest.mark.parametrize("kind", KINDS)
def test_another_seed_gives_another_matrix(kind):
    cls = projections.get(kind)
    a = materialize(cls(full_dim=400, dim=8, seed=0))
    b = materialize(cls(full_dim=400, dim=8, seed=1))
    assert not np.allclose(a, b)


# Uni-LoRA's P is not nested: a column's rows depend on d (test_unilora.py).
@pytest.mark.parametrize("kind", [k for k in KINDS if k != "unilora"])
def test_first_columns_do_not_depend_on_dim(kind):
    cls = projections.get(kind)
    # Stacked Fastfood blocks are as long as d, so only a single block keeps
    # its columns when d grows.
    options = {"blocks": "single"} if kind == "fastfood" else {}
    small = materialize(cls(full_dim=600, dim=5, seed=2, **options))
    large = materialize(cls(full_dim=600, dim=11, seed=2, **options))
    np.testing.assert_array_equal(small, large[:, :5])


def test_dense_over_budget_regenerates_the_same_matrix_on_the_fly():
    stored = DenseProjection(full_dim=900, dim=25, seed=4)
    blocks = DenseProjection(full_dim=900, dim=25, seed=4, memory_budget=1000)
    assert stored.stored and not blocks.stored
    assert blocks.memory_bytes == 0
    assert stored.memory_bytes == 900 * 25 * 4
    np.testing.assert_array_equal(materialize(stored), materialize(blocks))
    g = tf.random.normal([900])
    np.testing.assert_allclose(
        tf.function(blocks.transpose)(g).numpy(),
        stored.transpose(g).numpy(),
        rtol=1e-5,
        atol=1e-5,
    )
    # The traced gradient keeps its static shape (d,), as the stored one.
    traced = tf.function(blocks.transpose).get_concrete_function(
        tf.TensorSpec([900], tf.float32)
    )
    assert traced.output_shapes.as_list() == [25]


def test_dense_over_budget_can_refuse_naming_the_alternatives():
    with pytest.raises(ValueError, match="sparse.*fastfood"):
        DenseProjection(full_dim=1000, dim=100, memory_budget=10, over_budget="raise")


def test_dense_entries_are_gaussian_before_normalisation():
    # Normalised N(0,1) columns in R^D: entries ~ N(0, 1/D), kurtosis 3.
    mat = materialize(DenseProjection(full_dim=20000, dim=10, seed=0))
    scaled = mat.ravel() * np.sqrt(20000)
    assert abs(scaled.std() - 1.0) < 0.01
    assert abs(np.mean(scaled**4) - 3.0) < 0.1


def test_sparse_density_and_values():
    d_full, dim = 10_000, 200
    p = SparseProjection(full_dim=d_full, dim=dim, seed=0)
    assert isinstance(p.matrix, tf.SparseTensor)
    counts = np.bincount(p.matrix.indices.numpy()[:, 1], minlength=dim)
    # Binomial(D, 1/sqrt(D)): mean 100, sd about 9.95; mean of 200 columns.
    assert abs(counts.mean() - 100) < 3 * 9.95 / np.sqrt(dim) + 0.5
    values = p.matrix.values.numpy()
    cols = p.matrix.indices.numpy()[:, 1]
    np.testing.assert_allclose(np.abs(values), 1 / np.sqrt(counts[cols]), rtol=1e-6)
    assert 0.45 < (values > 0).mean() < 0.55
    assert p.memory_bytes < 4 * d_full * dim / 10


def test_sparse_tiny_full_dim_has_no_empty_column():
    p = SparseProjection(full_dim=3, dim=50, seed=0)
    norms = np.linalg.norm(materialize(p), axis=0)
    np.testing.assert_allclose(norms, 1.0, atol=1e-6)


def test_fwht_equals_the_hadamard_matrix():
    for length in (1, 2, 8, 128, 4096):
        x = np.random.default_rng(length).standard_normal(length)
        expected = scipy.linalg.hadamard(length) @ x
        got = fwht(tf.constant(x)).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-9)


def test_fwht_products_equal_the_hadamard_matrix():
    # One factor (at most 64), two (128: 16 x 8; 4096: 64 x 64) and three (2^13:
    # 32 x 16 x 16), each row its own transform, in float64 exactly.
    for length in (1, 2, 64, 128, 4096, 2**13):
        x = np.random.default_rng(length).standard_normal((3, length))
        expected = x @ scipy.linalg.hadamard(length)
        got = fwht_products(tf.constant(x)).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-9)
    with pytest.raises(ValueError, match="power-of-two length. Received: 12"):
        fwht_products(tf.zeros([2, 12]))


def test_fastfood_allows_dim_above_full_dim():
    p = FastfoodProjection(full_dim=100, dim=200, seed=0, blocks="stacked")
    assert (p.blocks, p.block_length, p.num_blocks) == ("single", 256, 1)
    mat = materialize(p)
    assert mat.shape == (100, 200)
    assert np.linalg.matrix_rank(mat) == 100
    assert abs(np.linalg.norm(mat, axis=0).mean() - 1) < 0.05


def test_fastfood_block_choice_and_memory_bytes():
    single = FastfoodProjection(1000, 10, blocks="single")
    assert (single.block_length, single.num_blocks) == (1024, 1)
    # Per row of the whole blocks (past D: zeros): int8 signs, an int16
    # permutation, float32 Gaussians and row scales.
    assert single.memory_bytes == (1 + 2 + 4 + 4) * 1024
    stacked = FastfoodProjection(1000, 10)  # "auto": 16 <= 1024 / 4
    assert (stacked.blocks, stacked.block_length, stacked.num_blocks) == (
        "stacked",
        16,
        63,
    )
    assert stacked.memory_bytes == (1 + 2 + 4 + 4) * 63 * 16
    assert FastfoodProjection(1000, 300).blocks == "single"  # 512 > 1024 / 4
    with pytest.raises(ValueError, match=r"Received: `blocks='many'`"):
        FastfoodProjection(1000, 10, blocks="many")


def test_get():
    assert projections.get("dense") is DenseProjection
    assert projections.get("Sparse") is SparseProjection
    assert projections.get(FastfoodProjection) is FastfoodProjection
    with pytest.raises(
        ValueError, match=r"\['dense', 'fastfood', 'sparse', 'unilora'\]"
    ):
        projections.get("gaussian")


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True])
def test_bad_dim(bad):
    with pytest.raises(ValueError, match=r"`dim` should be a positive integer"):
        FastfoodProjection(full_dim=10, dim=bad)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [np.int64(7), np.uint32(7), 2**32 - 1])
def test_seed_accepts_numpy_integers_up_to_2_to_the_32(kind, seed):
    p = projections.get(kind)(full_dim=10, dim=2, seed=seed)
    assert p.seed == int(seed) and type(p.seed) is int
    np.testing.assert_array_equal(
        materialize(p), materialize(projections.get(kind)(10, 2, seed=int(seed)))
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [-1, 2**32, 2**63 - 1, 1.0, "0", None, True])
def test_seed_outside_the_one_seed_range(kind, seed):
    with pytest.raises(
        ValueError, match=r"`seed` should be an integer in \[0, 2\*\*32\)"
    ):
        projections.get(kind)(full_dim=10, dim=2, seed=seed)


def test_bad_seed_and_budget():
    with pytest.raises(ValueError, match=r"Received: `seed=-1`"):
        SparseProjection(full_dim=10, dim=2, seed=-1)
    with pytest.raises(ValueError, match=r"`over_budget='never'`"):
        DenseProjection(full_dim=10, dim=2, over_budget="never")
    with pytest.raises(ValueError, match=r"`memory_budget=-1`"):
        DenseProjection(full_dim=10, dim=2, memory_budget=-1)


def test_wrong_input_shape():
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        DenseProjection(full_dim=10, dim=4)(tf.zeros([5]))


def test_dense_on_the_fly_warns_once_when_a_step_would_take_minutes():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DenseProjection(100, 10, seed=0, memory_budget=0)  # on the fly, quick
        assert not caught
        DenseProjection(10**6, 10**5, seed=0)  # 10**11 normals a pass
    (warning,) = caught
    assert "regenerated on the fly" in str(warning.message)
    assert "minutes of random numbers per training step" in str(warning.message)


# Fastfood's versions and its products over groups of blocks

#: SHA-256 of Fastfood's random tensors (signs as float32 +-1, Gaussians, row
#: scales; then the flat permutation, int32) as keras_idim 0.1.0 drew them
#: (commit a3027e3, before versions), computed with that code.
V1_TENSORS = {
    (1500, 30, 1, "stacked"): ("d6dc85461d89d153", "311c712f7326e38b"),
    (700, 12, 0, "single"): ("78e745afe2673310", "665e61fd5de0c15e"),
}


def as_drawn(p):
    """P's random tensors in the order drawn: blocks of signs, Gaussians and
    the flat permutation into the stacked blocks, without the group padding."""
    rows, length = p.num_blocks, p.block_length
    signs = tf.reshape(p.signs, [-1, length])[:rows].numpy().astype(np.float32)
    gauss = tf.reshape(p.gauss, [-1, length])[:rows].numpy()
    starts = np.arange(rows, dtype=np.int32)[:, None] * length
    perm = (p.permutation.numpy().reshape(-1, length)[:rows] + starts).ravel()
    return signs, gauss, p.row_scale.numpy()[: p.full_dim], perm


@pytest.mark.parametrize("key", list(V1_TENSORS))
@pytest.mark.parametrize("pass_chunk", [2**20, 64])
def test_version_1_draws_the_p_of_keras_idim_0_1_0(key, pass_chunk, monkeypatch):
    monkeypatch.setattr(fastfood, "PASS_CHUNK", pass_chunk)
    full_dim, dim, seed, blocks = key
    p = FastfoodProjection(full_dim, dim, seed=seed, blocks=blocks, version=1)
    signs, gauss, scale, perm = as_drawn(p)
    digest = hashlib.sha256(np.concatenate([signs.ravel(), gauss.ravel(), scale]))
    assert digest.hexdigest()[:16] == V1_TENSORS[key][0]
    assert hashlib.sha256(perm.tobytes()).hexdigest()[:16] == V1_TENSORS[key][1]


def test_version_2_is_version_1_where_one_group_holds_every_block():
    for one, two in zip(
        as_drawn(FastfoodProjection(1500, 30, seed=1, version=1)),
        as_drawn(FastfoodProjection(1500, 30, seed=1, version=2)),
    ):
        np.testing.assert_array_equal(one, two)


def test_version_2_draws_groups_of_blocks_from_their_own_streams(monkeypatch):
    monkeypatch.setattr(fastfood, "BUILD_CHUNK", 4 * 32)  # 4 blocks of 32 a group
    v1 = FastfoodProjection(1500, 30, seed=1, version=1)
    v2 = FastfoodProjection(1500, 30, seed=1, version=2)
    signs1, gauss1, _, perm1 = as_drawn(v1)
    signs2, gauss2, _, perm2 = as_drawn(v2)
    # The first group draws from version 1's streams; the next ones from
    # streams of their own, which no two groups share.
    np.testing.assert_array_equal(gauss1[:4], gauss2[:4])
    assert not np.array_equal(gauss1[4:8], gauss2[4:8])
    assert not np.array_equal(gauss2[4:8], gauss2[8:12])
    # Every block is still a permutation with +-1 signs.
    for perm in (perm1, perm2):
        blocks = perm.reshape(-1, 32) - np.arange(len(perm) // 32)[:, None] * 32
        assert (np.sort(blocks, axis=1) == np.arange(32)).all()
    assert set(np.unique(signs2)) == {-1.0, 1.0}
    # Unit columns in expectation, as version 1.
    norms = np.linalg.norm(materialize(v2), axis=0)
    assert abs(norms.mean() - 1) < 0.05


def test_a_configuration_without_a_version_is_version_1():
    p = FastfoodProjection(300, 8, seed=4)
    assert p.version == 2 and p.get_config()["version"] == 2
    old = {k: v for k, v in p.get_config().items() if k != "version"}
    assert FastfoodProjection.from_config(old).version == 1
    np.testing.assert_array_equal(
        materialize(FastfoodProjection.from_config(old)),
        materialize(FastfoodProjection(300, 8, seed=4, version=1)),
    )
    with pytest.raises(
        ValueError, match=r"`version` should be one of \(1, 2, 3\).*`version=4`"
    ):
        FastfoodProjection(300, 8, version=4)
    with pytest.raises(ValueError, match=r"`version=True`"):
        FastfoodProjection(300, 8, version=True)


@pytest.mark.parametrize("jit_compile", [True, False])
@pytest.mark.parametrize("version", [1, 2, 3])
def test_products_over_many_groups_are_p_and_its_transpose(
    version, jit_compile, monkeypatch
):
    # Groups of 2 blocks of 32: 47 blocks in 24 groups, the last one padded.
    monkeypatch.setattr(fastfood, "PASS_CHUNK", 64)
    p = FastfoodProjection(1500, 30, seed=1, version=version, jit_compile=jit_compile)
    assert (p.block_length, p.num_blocks, p.group_rows, p.num_groups) == (32, 47, 2, 24)
    mat = materialize(p)
    # The same P as one group makes.
    monkeypatch.setattr(fastfood, "PASS_CHUNK", 2**20)
    whole = FastfoodProjection(1500, 30, seed=1, version=version)
    assert whole.num_groups == 1
    np.testing.assert_allclose(mat, materialize(whole), rtol=1e-5, atol=1e-6)
    g = np.random.default_rng(0).standard_normal(1500).astype(np.float32)
    np.testing.assert_allclose(
        p.transpose(g).numpy(), mat.T.astype(np.float64) @ g, rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("kind", KINDS)
def test_affine_and_transpose_of_pieces_are_p(kind, monkeypatch):
    monkeypatch.setattr(fastfood, "PASS_CHUNK", 64)  # Fastfood: 24 groups
    p = projections.get(kind)(full_dim=1500, dim=30, seed=1)
    mat = materialize(p).astype(np.float64)
    rng = np.random.default_rng(0)
    v = rng.standard_normal(30).astype(np.float32)
    base = rng.standard_normal(1500).astype(np.float32)
    np.testing.assert_allclose(
        affine(p, v, base).numpy(), base + mat @ v, rtol=1e-4, atol=1e-5
    )
    g = rng.standard_normal(1500).astype(np.float32)
    pieces = [tf.constant(x) for x in np.split(g, [7, 700, 701])]
    np.testing.assert_allclose(
        transpose_pieces(p, pieces).numpy(), mat.T @ g, rtol=1e-4, atol=1e-5
    )
    # No base: the pieces of s * (P v) alone, each scaled by its own s.
    sizes, scales = [7, 693, 1, 799], np.array([2.0, -1.0, 0.5, 3.0], np.float32)
    alone = list(p.pieces.affine(v, None, sizes, scales))
    assert [int(q.shape[0]) for q in alone] == sizes
    np.testing.assert_allclose(
        np.concatenate(alone),
        np.repeat(scales, sizes) * (mat @ v),
        rtol=1e-4,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        np.concatenate(list(p.pieces.affine(v, None, sizes))),
        mat @ v,
        rtol=1e-4,
        atol=1e-5,
    )
    with pytest.raises(ValueError, match=r"shape \(30,\)"):
        affine(p, np.zeros(29, np.float32), base)


def test_version_3_is_version_2_with_g_and_s_stored_as_float16(monkeypatch):
    monkeypatch.setattr(fastfood, "PASS_CHUNK", 64)  # 24 groups, padded
    monkeypatch.setattr(fastfood, "BUILD_CHUNK", 4 * 32)  # streams of groups
    v2 = FastfoodProjection(1500, 30, seed=1, version=2)
    v3 = FastfoodProjection(1500, 30, seed=1, version=3)
    assert (v3.gauss.dtype, v3.row_scale.dtype) == (tf.float16, tf.float16)
    assert v3.block_scale.shape == (24, 2) and v2.block_scale is None
    # The same draws: signs and permutations equal, G rounded to float16.
    np.testing.assert_array_equal(v2.signs.numpy(), v3.signs.numpy())
    np.testing.assert_array_equal(v2.permutation.numpy(), v3.permutation.numpy())
    g2, g3 = v2.gauss.numpy(), v3.gauss.numpy()
    np.testing.assert_array_equal(g2.astype(np.float16), g3)
    # Each block normalised by its float16 G: 1 / sqrt(D * sum(G^2)).
    blocks = g3.reshape(-1, 32).astype(np.float64)[:47]
    expected = 1 / np.sqrt(1500 * (blocks**2).sum(axis=1))
    np.testing.assert_allclose(v3.block_scale.numpy().ravel()[:47], expected, rtol=1e-6)
    assert (v3.block_scale.numpy().ravel()[47:] == 0).all()  # padding
    # S * normalisation: version 2's row scales, to float16's precision.
    rows = v3.row_scale.numpy().astype(np.float32).reshape(-1, 32)
    scale3 = (rows * v3.block_scale.numpy().reshape(-1, 1)).ravel()[:1500]
    np.testing.assert_allclose(scale3, v2.row_scale.numpy()[:1500], rtol=2e-3)
    # 7 bytes a row (int8, int16, two float16) and a float32 per block.
    assert v3.memory_bytes == 7 * 48 * 32 + 4 * 48
    # Unit columns in expectation, and its own transpose.
    mat = materialize(v3)
    assert abs(np.linalg.norm(mat, axis=0).mean() - 1) < 0.05
    np.testing.assert_allclose(mat, materialize(v2), rtol=0.01, atol=2e-3)


def test_version_3_is_the_default_from_half_from_rows(monkeypatch):
    assert FastfoodProjection(1500, 30).version == 2
    monkeypatch.setattr(fastfood, "HALF_FROM", 1500)
    p = FastfoodProjection(1500, 30, seed=2)
    assert p.version == 3 and p.get_config()["version"] == 3
    again = FastfoodProjection.from_config(p.get_config())
    np.testing.assert_array_equal(materialize(again), materialize(p))
    assert FastfoodProjection(1499, 30).version == 2
