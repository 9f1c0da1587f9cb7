"""Fastfood's TensorFlow-ops backend (`fastfood_ops`): its products over
pieces, group by group, against P materialised; and that they make no
(D,) temporary (a structural check of the traced graph)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import OPS_CHUNK, OPS_DIM, OPS_FULL, materialize
from piece_products import affine, largest_made, piece_dots, transpose_pieces

from keras_idim import SubspaceModel
from keras_idim.projections import FastfoodProjection, fastfood_ops
from keras_idim.projections.fastfood_ops import said_layout, segments
from keras_idim.projections.fastfood_split import SPLIT_ROWS, splits

# The P of the `ops` fixture (conftest): 1500 rows in groups of 2 blocks of
# 32 (64 rows), 24 groups, the last one padded; the pieces straddle groups,
# one is empty, one is one row.
FULL, DIM, CHUNK = OPS_FULL, OPS_DIM, OPS_CHUNK
SIZES = [7, 0, 693, 1, 130, 669]


def test_segments_cut_the_pieces_at_the_groups():
    table = segments([3, 0, 6, 1], group_size=4, num_groups=3)
    assert table == [
        [(0, 0, 0, 3), (2, 0, 3, 1)],
        [(2, 1, 0, 4)],
        [(2, 5, 0, 1), (3, 0, 1, 1)],
    ]
    # Every row once, in order.
    rows = [(t, a + i) for parts in table for t, a, _, n in parts for i in range(n)]
    assert rows == [(0, 0), (0, 1), (0, 2)] + [(2, i) for i in range(6)] + [(3, 0)]


def test_said_layout_gives_each_block_one_piece():
    # Blocks of 4 rows, 3 blocks: piece 0 (3 rows) and piece 1 (6 rows)
    # share block 0; piece 2 (1 row) is inside block 2 after piece 1's
    # last row; block 2's last two rows are padding.
    parts = segments([3, 6, 1], group_size=12, num_groups=1)[0]
    kept, owner, extra = said_layout(parts, length=4, blocks=3, none=3)
    assert owner == [0, 1, 1]
    assert kept == [(0, 0, 0, 3), (1, 1, 4, 5)]
    assert extra == [(1, 0, 0, 3, 1), (2, 0, 2, 1, 1)]
    # Every row once: kept at its offset, extra at its block's offset.
    rows = sorted(
        [(o + i, t, a + i) for t, a, o, n in kept for i in range(n)]
        + [(4 * b + w + i, t, a + i) for t, a, b, w, n in extra for i in range(n)]
    )
    assert rows == [
        (i, *r)
        for i, r in enumerate(
            [(0, 0), (0, 1), (0, 2)] + [(1, i) for i in range(6)] + [(2, 0)]
        )
    ]
    # A group of padding only: no piece owns its blocks.
    assert said_layout([], 4, 2, none=3) == ([], [3, 3], [])


def inputs():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(DIM).astype(np.float32)
    g = rng.standard_normal(FULL).astype(np.float32)
    base = rng.standard_normal(FULL).astype(np.float32)
    scales = rng.uniform(-2, 2, len(SIZES)).astype(np.float32)
    return v, g, base, scales


def close(a, b):
    np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "version, jit_compile, graph, split",
    [
        (2, True, True, True),
        (2, False, False, None),
        (3, True, False, True),
        (3, False, True, None),
        (3, True, True, None),
    ],
)
def test_products_of_pieces_are_p(ops, version, jit_compile, graph, split):
    p = ops(version=version, jit_compile=jit_compile, split=split)
    mat = materialize(p).astype(np.float64)
    v, g, base, scales = inputs()
    pieces = np.split(g, np.cumsum(SIZES)[:-1])
    u = mat @ v
    scaled = np.repeat(scales, SIZES) * g
    dots = [q @ w for q, w in zip(pieces, np.split(u, np.cumsum(SIZES)[:-1]))]

    def run(fn, *args):
        return (tf.function(fn) if graph else fn)(*args)

    close(run(lambda q: transpose_pieces(p, q), pieces), mat.T @ g)
    close(run(lambda q, s: transpose_pieces(p, q, s), pieces, scales), mat.T @ scaled)
    sub, got = run(p.pieces.transpose, pieces, scales, v)
    close(sub, mat.T @ scaled)
    close(got, dots)
    assert got.numpy()[1] == 0.0  # the empty piece
    close(run(lambda w, q: piece_dots(p, w, q), v, pieces), dots)
    theta = run(lambda: tf.concat(list(p.pieces.affine(v, base, SIZES, scales)), 0))
    close(theta, base + np.repeat(scales, SIZES) * u)
    close(run(lambda: tf.concat(list(p.pieces.affine(v, base, SIZES)), 0)), base + u)
    close(
        run(lambda: affine(p, v, base, SIZES, scales)),
        base + np.repeat(scales, SIZES) * u,
    )
    # theta_d = 0 gives exactly the base.
    zero = np.zeros(DIM, np.float32)
    np.testing.assert_array_equal(
        run(lambda: tf.concat(list(p.pieces.affine(zero, base, SIZES, scales)), 0)),
        base,
    )


def test_groups_grow_past_max_groups_and_the_products_stay_p(ops, monkeypatch):
    # 47 blocks of 32 in groups of 2 make 24 groups; at most 5, they are
    # groups of 10 blocks (5 groups, the last one of 7 and 3 padded rows),
    # and the products are the same P's.
    uncapped = ops()
    monkeypatch.setattr(fastfood_ops, "MAX_GROUPS", 5)
    p = FastfoodProjection(FULL, DIM, seed=1)
    assert (p.group_rows, p.num_groups) == (10, 5)
    assert p.permutation.shape[:2] == (5, 10)
    mat = materialize(uncapped).astype(np.float64)
    np.testing.assert_allclose(materialize(p), mat, rtol=1e-5, atol=1e-6)
    v, g, base, scales = inputs()
    pieces = np.split(g, np.cumsum(SIZES)[:-1])
    u = mat @ v
    sub, dots = tf.function(p.pieces.transpose)(pieces, scales, v)
    close(sub, mat.T @ (np.repeat(scales, SIZES) * g))
    close(dots, [q @ w for q, w in zip(pieces, np.split(u, np.cumsum(SIZES)[:-1]))])
    theta = tf.concat(list(p.pieces.affine(v, base, SIZES, scales)), 0)
    close(theta, base + np.repeat(scales, SIZES) * u)
    # The graph of a product over pieces grows with the groups, not with D.
    specs = [tf.TensorSpec([n], tf.float32) for n in SIZES]

    def ops_of(projection) -> int:
        def said(*q):
            return projection.pieces.transpose(list(q), scales, v)

        graph = tf.function(said).get_concrete_function(*specs).graph
        return len(graph.get_operations())

    assert ops_of(p) < ops_of(uncapped) / 2  # 170 against 496 ops


@pytest.mark.parametrize("split", [True, False])
def test_products_of_pieces_make_no_full_sized_tensor(ops, split):
    p = ops(split=split)
    v, g, base, scales = inputs()
    specs = [tf.TensorSpec([n], tf.float32) for n in SIZES]

    def said(*pieces):
        return p.pieces.transpose(list(pieces), scales, v)

    graph = tf.function(said).get_concrete_function(*specs).graph
    assert largest_made(graph) == CHUNK  # a group's rows, not D's
    # Each group's rows are cut only after the group two before is done (two
    # groups in flight: groups of 64 rows): every slice of a piece but those
    # of the first two groups waits for it.
    cuts = [
        op
        for op in graph.get_operations()
        if op.type == "StridedSlice" and op.inputs[0].op.type == "Placeholder"
    ]
    # (The wait is on the slice or on its bounds, made in the same context.)
    waits = [
        bool(op.control_inputs) or any(x.op.control_inputs for x in op.inputs)
        for op in cuts
    ]
    # Group 0's three: piece 0, and piece 2's rows in piece 0's last block
    # (an extra row of SAID's: `said_layout`) and after it; group 1's one
    # (rows 64 to 127: piece 2's, rows 7 to 699).
    assert p.backend.in_flight == 2
    assert waits.count(False) == 4
    assert len(cuts) > 24

    def affine(base):
        return list(p.pieces.affine(v, base, SIZES, scales))

    graph = tf.function(affine).get_concrete_function(tf.TensorSpec([FULL])).graph
    assert largest_made(graph) == max(SIZES)  # one piece at a time


@pytest.mark.parametrize("split", [True, False])
def test_the_write_makes_the_group_after_the_one_a_piece_needs(ops, monkeypatch, split):
    # Piece 0 (rows 0 to 6) lies in group 0: asking for it makes group 0's
    # P v and, two groups in flight, group 1's; with one, group 0's alone.
    v, _, _, scales = inputs()

    def groups_made():
        p = ops(split=split)
        graph = (
            tf.function(lambda base: next(p.pieces.affine(v, base, SIZES, scales)))
            .get_concrete_function(tf.TensorSpec([FULL]))
            .graph
        )
        calls = [op for op in graph.get_operations() if "PartitionedCall" in op.type]
        # A group's P v: one XLA function, or split, its three steps'.
        per_group = 3 if p.backend.split else 1
        assert len(calls) % per_group == 0
        return p.backend.in_flight, len(calls) // per_group

    assert groups_made() == (2, 2)
    monkeypatch.setattr(fastfood_ops, "IN_FLIGHT_ROWS", CHUNK - 1)
    assert groups_made() == (1, 1)


def test_said_model_with_tensorflow_ops_keeps_no_p_theta_d(ops, monkeypatch):
    # A model of 1,504 weights over 24 groups: SAID's step against the
    # chain rule with P materialised, and nothing of size D kept but theta_0.
    base = keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(60), keras.layers.Dense(4)]
    )
    model = SubspaceModel(
        base,
        dim=DIM + 4,
        projection="fastfood",
        seed=1,
        structure_aware=True,
        said_learning_rate=1.0,  # the scales step at theta_d's rate
    )
    p = model.projection
    assert model.full_dim == 1504 and p.num_groups == 24 and not p.uses_kernel
    assert model._offset is None
    sizes = [int(np.prod(w.shape)) for w in model.base_variables]
    rng = np.random.default_rng(3)
    theta_d = rng.standard_normal(DIM).astype(np.float32)
    lambdas = rng.uniform(0.5, 1.5, 4).astype(np.float32)
    model.theta_d.assign(theta_d)
    model.lambdas.assign(lambdas)
    model.sync_base_weights()
    mat = materialize(p).astype(np.float64)
    theta_0 = model.theta_0.numpy().astype(np.float64)
    u = mat @ theta_d
    scales = np.repeat(lambdas, sizes)
    flat = np.concatenate([w.numpy().ravel() for w in model.base_variables])
    close(flat, theta_0 + scales * u)
    x = rng.standard_normal((16, 20)).astype(np.float32)
    y = rng.standard_normal((16, 4)).astype(np.float32)
    loss_fn = keras.losses.MeanSquaredError()
    watched = [w.value for w in model.base_variables]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        loss = loss_fn(y, base(x))
    g = np.concatenate(
        [w.numpy().ravel() for w in tape.gradient(loss, watched)]
    ).astype(np.float64)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss_fn)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    close(model.theta_d.numpy(), theta_d - mat.T @ (scales * g))
    per_tensor = np.add.reduceat(g * u, np.cumsum([0] + sizes[:-1]))
    close(model.lambdas.numpy(), lambdas - per_tensor)
    full = [w for w in model.weights if w.shape.num_elements() >= model.full_dim]
    assert [w.name for w in full] == ["theta_0"]


def test_groups_are_split_at_the_sizes_measured_only():
    class P:
        jit_compile = True

    gpu = bool(tf.config.list_physical_devices("GPU"))
    assert SPLIT_ROWS == (2**20, 2**21)
    assert splits(P, 1671 * 1024) == (not gpu)  # BERT-base's groups
    assert not splits(P, 195 * 1024)  # fc-mnist's one group
    assert not splits(P, 2**21 + 1024)
    P.jit_compile = False
    assert not splits(P, 1671 * 1024)
