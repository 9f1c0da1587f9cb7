"""Uni-LoRA's projection: checked against P made by hand from its index."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from piece_products import affine, piece_dots, transpose_pieces

from keras_idim import SubspaceModel, projections
from keras_idim.projections import UniLoRAProjection, unilora


def by_hand(p) -> np.ndarray:
    """P as a dense float64 (D, d) array, from the stored index and scales
    (not from the products under test)."""
    index = p.index.numpy()
    mat = np.zeros((p.full_dim, p.dim))
    mat[np.arange(p.full_dim), index] = p.scale.numpy()[index]
    return mat


@pytest.fixture(scope="module")
def proj():
    return UniLoRAProjection(full_dim=300, dim=20, seed=3)


def test_one_nonzero_per_row_and_orthonormal_columns(proj):
    mat = by_hand(proj)
    assert ((mat != 0).sum(axis=1) == 1).all()
    np.testing.assert_allclose(mat.T @ mat, np.eye(20), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(mat, axis=0), 1.0, atol=1e-7)
    # The nonzeros of column j are 1 / sqrt(n_j), no signs.
    counts = np.bincount(proj.index.numpy(), minlength=20)
    np.testing.assert_allclose(
        proj.scale.numpy(), (1 / np.sqrt(counts)).astype(np.float32), rtol=0
    )
    assert (mat >= 0).all()


@pytest.mark.parametrize(
    "full_dim, dim", [(300, 20), (1000, 30), (301, 300), (50, 50), (7, 1)]
)
def test_columns_are_balanced_and_never_empty(full_dim, dim):
    p = UniLoRAProjection(full_dim, dim, seed=1)
    counts = np.bincount(p.index.numpy(), minlength=dim)
    q, r = divmod(full_dim, dim)
    assert counts.min() >= q >= 1 and counts.max() <= q + 1
    assert (counts == q + 1).sum() == r
    mat = by_hand(p)
    np.testing.assert_allclose(np.linalg.norm(mat, axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(mat.T @ mat, np.eye(dim), atol=1e-6)


def test_rows_go_to_every_column_alike_and_the_extra_rows_at_random():
    # Over 200 seeds, row 0's column is uniform (20 times each expected,
    # sd 4.2), and each column is one of the D mod d = 3 heavier ones 3
    # times in 10 (60 times expected, sd 6.5).
    firsts, heavy = [], np.zeros(10)
    for seed in range(200):
        p = UniLoRAProjection(103, 10, seed=seed)
        firsts.append(int(p.index[0]))
        heavy += np.bincount(p.index.numpy(), minlength=10) == 11
    freq = np.bincount(firsts, minlength=10)
    assert freq.min() > 5 and freq.max() < 40
    assert heavy.sum() == 600 and heavy.min() > 35 and heavy.max() < 85


@pytest.mark.parametrize("jit_compile", [False, True])
def test_products_are_the_matrix(proj, jit_compile):
    p = UniLoRAProjection(300, 20, seed=3, jit_compile=jit_compile)
    np.testing.assert_array_equal(p.index.numpy(), proj.index.numpy())
    mat = by_hand(p)
    rng = np.random.default_rng(0)
    v = rng.standard_normal(20).astype(np.float32)
    g = rng.standard_normal(300).astype(np.float32)
    base = rng.standard_normal(300).astype(np.float32)
    np.testing.assert_allclose(p(v).numpy(), mat @ v, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(p.transpose(g).numpy(), mat.T @ g, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        affine(p, v, base).numpy(), base + mat @ v, rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        tf.function(p.transpose)(g).numpy(), mat.T @ g, rtol=1e-5, atol=1e-5
    )
    # Autodiff through P v gives P^T g too.
    var = tf.Variable(v)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(p(var) * g)
    np.testing.assert_allclose(
        tf.convert_to_tensor(tape.gradient(loss, var)).numpy(),
        mat.T @ g,
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("jit_compile", [False, True])
def test_pieces_are_the_matrix(jit_compile):
    proj = UniLoRAProjection(300, 20, seed=3, jit_compile=jit_compile)
    mat = by_hand(proj)
    rng = np.random.default_rng(1)
    v = rng.standard_normal(20).astype(np.float32)
    g = rng.standard_normal(300).astype(np.float32)
    base = rng.standard_normal(300).astype(np.float32)
    sizes = [7, 93, 1, 199]
    lambdas = np.array([0.5, 2.0, -1.0, 1.5], np.float32)
    s = np.repeat(lambdas, sizes).astype(np.float64)
    starts = np.cumsum([0] + sizes[:-1])
    pieces = [tf.constant(x) for x in np.split(g, np.cumsum(sizes)[:-1])]
    assert proj.pieces.fused

    got = list(proj.pieces.affine(v, base, sizes))
    assert [int(x.shape[0]) for x in got] == sizes
    np.testing.assert_allclose(np.concatenate(got), base + mat @ v, atol=1e-6)
    got = list(proj.pieces.affine(v, base, sizes, lambdas))
    np.testing.assert_allclose(np.concatenate(got), base + s * (mat @ v), atol=1e-6)
    np.testing.assert_allclose(
        affine(proj, v, base, sizes, lambdas).numpy(),
        base + s * (mat @ v),
        atol=1e-6,
    )

    np.testing.assert_allclose(
        transpose_pieces(proj, pieces).numpy(), mat.T @ g, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        transpose_pieces(proj, pieces, lambdas).numpy(),
        mat.T @ (s * g),
        rtol=1e-5,
        atol=1e-5,
    )
    dots = np.add.reduceat(g * (mat @ v), starts)
    np.testing.assert_allclose(piece_dots(proj, v, pieces).numpy(), dots, atol=1e-5)
    transposed, got_dots = proj.pieces.transpose(pieces, lambdas, v)
    np.testing.assert_allclose(
        transposed.numpy(), mat.T @ (s * g), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(got_dots.numpy(), dots, atol=1e-5)
    with pytest.raises(ValueError, match=r"add up to full_dim=300"):
        transpose_pieces(proj, pieces[:3])


def test_building_in_chunks_gives_the_same_matrix(monkeypatch, proj):
    monkeypatch.setattr(unilora, "CHUNK_ELEMENTS", 16)
    np.testing.assert_array_equal(
        UniLoRAProjection(300, 20, seed=3).index.numpy(), proj.index.numpy()
    )


_CHILD = """
import json, sys
from keras_idim.projections import UniLoRAProjection
out = {}
for seed in (0, 1):
    p = UniLoRAProjection(full_dim=300, dim=20, seed=seed)
    out[seed] = [p.index.numpy().tobytes().hex(), p.scale.numpy().tobytes().hex()]
json.dump(out, sys.stdout)
"""


def test_same_seed_gives_same_matrix_bit_for_bit_in_another_process():
    child = subprocess.run(
        [sys.executable, "-c", _CHILD],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    theirs = json.loads(child.stdout)
    mine = UniLoRAProjection(full_dim=300, dim=20, seed=0)
    assert theirs["0"] == [
        mine.index.numpy().tobytes().hex(),
        mine.scale.numpy().tobytes().hex(),
    ]
    assert theirs["0"][0] != theirs["1"][0]
    other = UniLoRAProjection(full_dim=300, dim=20, seed=1)
    assert not np.array_equal(by_hand(mine), by_hand(other))


def test_memory_config_and_get(proj):
    assert proj.memory_bytes == 4 * 300 + 4 * 20
    assert proj.supports_xla
    assert projections.get("unilora") is UniLoRAProjection
    assert projections.get("UniLoRA") is UniLoRAProjection
    assert "unilora" in projections.ALL and "UniLoRAProjection" in projections.__all__
    config = proj.get_config()
    assert config == {"full_dim": 300, "dim": 20, "seed": 3, "jit_compile": True}
    again = UniLoRAProjection.from_config(config)
    np.testing.assert_array_equal(by_hand(again), by_hand(proj))
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(proj)
    )
    assert isinstance(restored, UniLoRAProjection)
    np.testing.assert_array_equal(by_hand(restored), by_hand(proj))


def test_dim_above_full_dim_and_bad_options_are_refused():
    with pytest.raises(ValueError, match=r"at most `full_dim` \(10\).*`dim=11`"):
        UniLoRAProjection(10, 11)
    with pytest.raises(ValueError, match=r"`jit_compile='yes'`"):
        UniLoRAProjection(10, 2, jit_compile="yes")


# In a subspace model


def tiny():
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, activation="tanh"),
            keras.layers.Dense(2),
        ]
    )


def flat(variables) -> np.ndarray:
    return np.concatenate([np.ravel(v.numpy()) for v in variables]).astype(np.float64)


def base_gradient(base, x, y, loss_fn) -> np.ndarray:
    copy = keras.models.clone_model(base)
    copy.set_weights(base.get_weights())
    with tf.GradientTape() as tape:
        loss = loss_fn(y, copy(x, training=True))
    return flat(tape.gradient(loss, copy.trainable_variables))


def xy(seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((16, 4)).astype(np.float32),
        rng.standard_normal((16, 2)).astype(np.float32),
    )


def test_subspace_model_theta_d_zero_is_the_base_and_one_step_is_minus_p_t_g():
    base = tiny()
    x, y = xy()
    before = base.predict(x, verbose=0)
    loss_fn = keras.losses.MeanSquaredError()
    g = base_gradient(base, x, y, loss_fn)
    theta_0 = flat(base.trainable_variables)
    model = SubspaceModel(base, dim=6, projection="unilora", seed=4)
    assert isinstance(model.projection, UniLoRAProjection)
    model.sync_base_weights()
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)
    mat = by_hand(model.projection)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss=loss_fn)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(model.theta_d.numpy(), -mat.T @ g, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        flat(model.base_variables),
        theta_0 + mat @ model.theta_d.numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_said_step_matches_the_chain_rule():
    base = tiny()
    x, y = xy(1)
    theta_0 = flat(base.trainable_variables)
    sizes = [int(np.prod(v.shape)) for v in base.trainable_variables]
    model = SubspaceModel(
        base,
        dim=10,
        projection="unilora",
        seed=2,
        structure_aware=True,
        said_learning_rate=1.0,
    )
    assert model._offset is None  # P theta_d made again, not stored
    rng = np.random.default_rng(3)
    theta_d = rng.standard_normal(6).astype(np.float32)
    lambdas = rng.uniform(0.5, 1.5, 4).astype(np.float32)
    model.theta_d.assign(theta_d)
    model.lambdas.assign(lambdas)
    model.sync_base_weights()
    mat = by_hand(model.projection)
    s = np.repeat(lambdas, sizes).astype(np.float64)
    u = mat @ theta_d
    np.testing.assert_allclose(
        flat(model.base_variables), theta_0 + s * u, rtol=1e-5, atol=1e-6
    )
    loss_fn = keras.losses.MeanSquaredError()
    g = base_gradient(base, x, y, loss_fn)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss=loss_fn)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(
        model.theta_d.numpy(), theta_d - mat.T @ (s * g), rtol=1e-4, atol=1e-5
    )
    grad_lambdas = np.add.reduceat(g * u, np.cumsum([0] + sizes[:-1]))
    np.testing.assert_allclose(
        model.lambdas.numpy(), lambdas - grad_lambdas, rtol=1e-4, atol=1e-5
    )
