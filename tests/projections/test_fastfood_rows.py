"""A gradient nonzero in a few rows (an embedding's `tf.IndexedSlices`)
transposed through its rows' blocks only (`fastfood_rows`), against P
materialised; and where such a piece is made whole instead."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import OPS_DIM, OPS_FULL, materialize

from keras_idim import SubspaceModel
from keras_idim.projections import fastfood_ops
from keras_idim.projections.dense import DenseProjection
from keras_idim.projections.fastfood_rows import spans
from keras_idim.projections.pieces import SparseRows
from keras_idim.projections.unilora import UniLoRAProjection

# The P of the `ops` fixture (conftest): 1500 rows in 24 groups of 2
# blocks of 32. The second piece is a 40 x 16 table from row 7: its rows
# straddle blocks, groups 1 to 9 hold nothing else, and its last row shares
# a block with the two pieces after it.
FULL, DIM = OPS_FULL, OPS_DIM
SIZES = [7, 640, 1, 852]
TABLE = (40, 16)
# Five rows, one twice, in at most 5 * spans(16, 32) = 10 blocks: half of
# the table's 20, taken as rows; with a sixth row, too many.
INDICES = [3, 39, 3, 0, 17]


@pytest.fixture
def calls(monkeypatch):
    """How many times the rows were transposed through their blocks."""
    count = []
    transposed = fastfood_ops.OpsBackend._rows_transposed

    def counted(self, *args):
        count.append(1)
        return transposed(self, *args)

    monkeypatch.setattr(fastfood_ops.OpsBackend, "_rows_transposed", counted)
    return count


def gradient(indices):
    """`(pieces, whole)`: a gradient with the table's piece as `SparseRows`,
    and the same pieces all whole (numpy, the rows summed by hand)."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal((len(indices), TABLE[1])).astype(np.float32)
    table = np.zeros(TABLE, np.float32)
    np.add.at(table, indices, values)
    whole = [rng.standard_normal(n).astype(np.float32) for n in SIZES]
    whole[1] = table.ravel()
    pieces = list(whole)
    pieces[1] = SparseRows(tf.constant(values), tf.constant(indices), 640)
    return pieces, whole


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-5)


def test_sparse_rows_are_an_embeddings_gradient_made_whole():
    table = keras.Variable(np.arange(60.0, dtype="float32").reshape(5, 3, 4))
    with tf.GradientTape() as tape:
        rows = tf.gather(table.value, [4, 1, 4])
        loss = tf.reduce_sum(rows * np.arange(36.0).reshape(3, 3, 4))
    g = tape.gradient(loss, table.value)
    assert isinstance(g, tf.IndexedSlices)
    rows = SparseRows.of(g, (5, 3, 4))
    assert (rows.size, rows.width, tuple(rows.values.shape)) == (60, 12, (3, 12))
    expected = np.zeros((5, 12))
    expected[4] = np.arange(12) + np.arange(24, 36)  # row 4 read twice
    expected[1] = np.arange(12, 24)
    np.testing.assert_array_equal(rows.dense().numpy(), expected.ravel())
    assert spans(12, 32) == 2 and spans(1, 32) == 1 and spans(64, 32) == 3


@pytest.mark.parametrize(
    "version, jit_compile, split, graph",
    [(3, True, True, True), (3, True, False, False), (2, False, None, True)],
)
def test_rows_transposed_through_their_blocks_are_p(
    ops, calls, version, jit_compile, split, graph
):
    p = ops(version=version, jit_compile=jit_compile, split=split)
    assert p.pieces.sparse_rows
    mat = materialize(p).astype(np.float64)
    pieces, whole = gradient(INDICES)
    g = np.concatenate(whole).astype(np.float64)
    rng = np.random.default_rng(1)
    v = rng.standard_normal(DIM).astype(np.float32)
    scales = rng.uniform(-2, 2, len(SIZES)).astype(np.float32)
    u = np.split(mat @ v, np.cumsum(SIZES)[:-1])
    dots = [q @ w for q, w in zip(whole, u)]

    def run(fn, *args):
        return (tf.function(fn) if graph else fn)(*args)

    sub, got = run(lambda s, w: p.pieces.transpose(pieces, s, w), scales, v)
    close(sub, mat.T @ (np.repeat(scales, SIZES) * g))
    close(got, dots)
    close(run(lambda: p.pieces.transpose(pieces)[0]), mat.T @ g)
    assert len(calls) == 2
    # The same as the piece made whole, to rounding.
    close(p.pieces.transpose(whole, scales, v)[0], sub.numpy())


def test_too_many_rows_or_rows_of_unknown_number_are_made_whole(ops, calls):
    p = ops()
    mat = materialize(p).astype(np.float64)
    pieces, whole = gradient(INDICES + [21])
    g = np.concatenate(whole)
    close(p.pieces.transpose(pieces)[0], mat.T @ g)
    assert not calls  # 12 blocks: more than half the table's 20
    pieces, whole = gradient(INDICES)
    spec = tf.TensorSpec([None, TABLE[1]], tf.float32)

    @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32)])
    def unknown(values, indices):
        rows = SparseRows(values, indices, 640)
        return p.pieces.transpose([pieces[0], rows, *pieces[2:]])[0]

    close(unknown(pieces[1].values, pieces[1].indices), mat.T @ np.concatenate(whole))
    assert not calls


def test_projections_that_do_not_take_rows_make_them_whole(ops, calls):
    pieces, whole = gradient(INDICES)
    g = np.concatenate(whole)
    regen = ops(regenerate=True)
    assert not regen.pieces.sparse_rows
    close(regen.pieces.transpose(pieces)[0], materialize(regen).T @ g)
    for other in (DenseProjection(FULL, DIM, seed=1), UniLoRAProjection(FULL, DIM)):
        assert not other.pieces.sparse_rows
        close(other.pieces.transpose(pieces)[0], materialize(other).T @ g)
    assert not calls


@pytest.mark.parametrize("structure_aware", [True, False])
def test_model_with_an_embedding_steps_by_the_chain_rule(ops, calls, structure_aware):
    # An embedding of 400 x 8 (3,200 of the model's 3,300 weights): a batch
    # of 2 x 3 tokens reads 6 rows, in at most 12 of its 100 blocks.
    base = keras.Sequential(
        [
            keras.Input((3,), dtype="int32"),
            keras.layers.Embedding(400, 8),
            keras.layers.Flatten(),
            keras.layers.Dense(4),
        ]
    )
    kwargs = {"said_learning_rate": 1.0} if structure_aware else {}
    model = SubspaceModel(
        base,
        DIM + 3 * structure_aware,
        projection="fastfood",
        seed=1,
        structure_aware=structure_aware,
        **kwargs,
    )
    assert model.full_dim == 3300 and model.projection.pieces.sparse_rows
    rng = np.random.default_rng(3)
    x = rng.integers(0, 400, (2, 3)).astype(np.int32)
    x[1, 2] = x[0, 0]  # a row read twice
    y = rng.standard_normal((2, 4)).astype(np.float32)
    loss_fn = keras.losses.MeanSquaredError()
    watched = [w.value for w in model.base_variables]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        loss = loss_fn(y, base(x))
    grads = tape.gradient(loss, watched)
    assert isinstance(grads[0], tf.IndexedSlices)
    g = np.concatenate([tf.convert_to_tensor(w).numpy().ravel() for w in grads])
    sizes = [int(np.prod(w.shape)) for w in model.base_variables]
    mat = materialize(model.projection).astype(np.float64)
    theta_d = model.theta_d.numpy()
    lambdas = model.lambdas.numpy() if structure_aware else np.ones(len(sizes))
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss_fn)
    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    assert calls  # the embedding's rows went through their blocks
    close(model.theta_d.numpy(), theta_d - mat.T @ (np.repeat(lambdas, sizes) * g))
    if structure_aware:
        per_tensor = np.add.reduceat(g * (mat @ theta_d), np.cumsum([0] + sizes[:-1]))
        close(model.lambdas.numpy(), lambdas - per_tensor)
