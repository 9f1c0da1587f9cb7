"""A Fastfood P that draws its signs and Gaussians again in each product
(`regenerate=True`, `fastfood_regen`): the same P as the stored one, bit
for bit, in every product; each range of blocks drawn once a product; only
the permutations and scales held; SAID's step with exact gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import materialize
from piece_products import largest_made

from keras_idim import SubspaceModel
from keras_idim.projections import FastfoodProjection, fastfood, fastfood_regen, kernel

FULL = 790
SIZES = [7, 0, 343, 1, 130, 309]  # FULL rows in pieces across blocks

# (full_dim, dim, blocks, version, PASS_CHUNK, BUILD_CHUNK): blocks of 32,
# 25 of them (the last group padded); groups inside ranges (2 blocks a
# group, 8 a range), groups across ranges (3 a group), ranges inside groups
# (8 a group, 2 a range), version 1's one range; one single block of 128
# (28 padded rows); P at the default chunks (one group, one range).
CASES = [
    (FULL, 30, "stacked", 3, 64, 256),
    (FULL, 30, "stacked", 2, 96, 256),
    (FULL, 30, "stacked", 3, 256, 64),
    (FULL, 30, "stacked", 1, 64, 256),
    (100, 10, "single", 3, None, None),
    (300, 20, "auto", 2, None, None),
]


@pytest.fixture
def pair(monkeypatch):
    """The stored P and the P that regenerates, of one case, both in
    TensorFlow ops."""
    monkeypatch.setenv(kernel.ENV, "0")

    def make(full, dim, blocks, version, pass_chunk, build_chunk, **kwargs):
        if pass_chunk:
            monkeypatch.setattr(fastfood, "PASS_CHUNK", pass_chunk)
        if build_chunk:
            monkeypatch.setattr(fastfood, "BUILD_CHUNK", build_chunk)
        args = dict(seed=1, blocks=blocks, version=version, **kwargs)
        stored = FastfoodProjection(full, dim, **args)
        again = FastfoodProjection(full, dim, regenerate=True, **args)
        assert not stored.uses_kernel and not again.uses_kernel
        assert isinstance(again.backend, fastfood_regen.RegenBackend)
        return stored, again

    return make


def inputs(full, dim, sizes):
    rng = np.random.default_rng(0)
    v = rng.standard_normal(dim).astype(np.float32)
    g = rng.standard_normal(full).astype(np.float32)
    base = rng.standard_normal(full).astype(np.float32)
    scales = rng.uniform(-2, 2, len(sizes)).astype(np.float32)
    return v, g, base, scales, np.split(g, np.cumsum(sizes)[:-1])


def products(p, v, g, base, scales, pieces, sizes) -> dict:
    """Every product of P, by name."""
    return {
        "call": lambda: p(v),
        "transpose": lambda: p.transpose(g),
        "affine": lambda: tf.concat(list(p.pieces.affine(v, base, sizes)), 0),
        "scaled affine": lambda: tf.concat(
            list(p.pieces.affine(v, base, sizes, scales)), 0
        ),
        "pieces transpose": lambda: p.pieces.transpose(pieces)[0],
        "scaled transpose": lambda: p.pieces.transpose(pieces, scales)[0],
        "said": lambda: p.pieces.transpose(pieces, scales, v),  # (P^T g, dots)
    }


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_every_product_is_the_stored_p_bit_for_bit(pair, case, jit_compile):
    stored, again = pair(*case, jit_compile=jit_compile)
    full, dim = case[:2]
    sizes = SIZES if full == FULL else [full // 3, 0, full - full // 3]
    args = inputs(full, dim, sizes)
    want = products(stored, *args, sizes)
    got = products(again, *args, sizes)
    for name in want:
        # Eagerly, and each product alone in a graph: the same ops on the
        # same numbers (B and G drawn again exactly as stored).
        for eager in (True, False):
            run = (lambda f: f) if eager else tf.function
            outs = [tf.nest.flatten(run(f[name])()) for f in (got, want)]
            for x, y in zip(*outs, strict=True):
                np.testing.assert_array_equal(x, y, f"{name}, eager={eager}")
    if jit_compile:
        return  # (P materialised below once a case)
    mat = materialize(again)
    np.testing.assert_array_equal(mat, materialize(stored))
    v, g, base, scales, pieces = args
    close = dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["call"](), mat @ v, **close)
    np.testing.assert_allclose(got["transpose"](), mat.T @ g, **close)
    scaled = np.repeat(scales, sizes) * g
    said_transpose, said_dots = got["said"]()
    np.testing.assert_allclose(said_transpose, mat.T @ scaled, **close)
    u = np.split(mat @ v, np.cumsum(sizes)[:-1])
    dots = [q @ w for q, w in zip(pieces, u)]
    np.testing.assert_allclose(said_dots, dots, **close)


def test_split_groups_are_the_stored_p_bit_for_bit(pair):
    # Each group's transforms outside XLA between its compiled steps
    # (`fastfood_split`), given B and G drawn again: the same numbers.
    stored, again = pair(*CASES[0], jit_compile=True)
    stored.backend.split = again.backend.split = True
    args = inputs(FULL, 30, SIZES)
    want, got = (products(p, *args, SIZES) for p in (stored, again))
    for name in ("affine", "scaled affine", "pieces transpose", "said"):
        for x, y in zip(
            *(tf.nest.flatten(f[name]()) for f in (got, want)), strict=True
        ):
            np.testing.assert_array_equal(x, y, name)


def test_products_together_in_one_graph_agree_to_rounding(pair):
    # Several products in one graph: Grappler may merge or reorder the
    # stored P's sums (its groups' ops are alike) where the draws' control
    # dependencies keep the regenerating P's apart, so the sums agree to
    # float32 rounding, not bit for bit.
    stored, again = pair(*CASES[1], jit_compile=False)
    v, g, base, scales, pieces = inputs(FULL, 30, SIZES)

    def said(p):
        affine = tf.concat(list(p.pieces.affine(v, base, SIZES, scales)), 0)
        return (p(v), affine, *p.pieces.transpose(pieces, scales, v))

    for a, b in zip(tf.function(lambda: said(again))(), said(stored)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("graph", [False, True])
def test_each_range_is_drawn_once_a_product(pair, monkeypatch, graph):
    stored, again = pair(*CASES[1])  # 9 groups of 3 blocks over 4 ranges
    backend = again.backend
    assert (again.num_groups, len(backend.draws)) == (9, 4)
    drawn = []
    real = backend.draw
    monkeypatch.setattr(backend, "draw", lambda i: drawn.append(i) or real(i))
    v, g, base, scales, pieces = inputs(FULL, 30, SIZES)
    for name, fn in products(again, v, g, base, scales, pieces, SIZES).items():
        drawn.clear()
        (tf.function(fn) if graph else fn)()
        assert drawn == list(range(4)), name


def test_the_graph_draws_each_range_once_and_holds_no_full_sized_tensor(pair):
    stored, again = pair(*CASES[0])  # 13 groups of 64 rows, 4 ranges of 256
    v, g, base, scales, pieces = inputs(FULL, 30, SIZES)
    specs = [tf.TensorSpec([n], tf.float32) for n in SIZES]

    def said(*pieces):
        return again.pieces.transpose(list(pieces), scales, v)

    graph = tf.function(said).get_concrete_function(*specs).graph
    ops = [op.type for op in graph.get_operations()]
    assert ops.count("StatelessRandomNormalV2") == 4
    assert ops.count("StatelessRandomUniformIntV2") == 4
    assert largest_made(graph) == 256  # a range's draws, not D's
    # Every draw waits (on v, and after the first range on the group
    # before: control dependencies, on the op or on the seed it reads).
    kinds = ("StatelessRandomNormalV2", "StatelessRandomUniformIntV2")
    draws = [op for op in graph.get_operations() if op.type in kinds]

    def waits(op, depth=3) -> bool:
        return bool(op.control_inputs) or (
            depth > 0 and any(waits(x.op, depth - 1) for x in op.inputs)
        )

    assert len(draws) == 8 and all(waits(op) for op in draws)

    # Every draw's seed is read from a variable: with seeds made of
    # constants alone, Grappler's constant folding would draw once when it
    # optimises the graph and hold the draws in it (P again, in float64).
    def ancestors(tensor) -> set:
        seen, todo = set(), [tensor.op]
        while todo:
            op = todo.pop()
            if op.name not in seen:
                seen.add(op.name)
                todo.extend(x.op for x in op.inputs)
        return {graph.get_operation_by_name(name).type for name in seen}

    assert all(op.op_def.input_arg[1].name == "key" for op in draws)
    for op in draws:  # (shape, key, counter, alg)
        assert "ReadVariableOp" in ancestors(op.inputs[1]), op.name


@pytest.mark.parametrize("version", [2, 3])
def test_only_the_permutations_and_scales_are_held(pair, version):
    # Version 3 draws S again too (float16, as stored): it holds the
    # permutations and the blocks' normalisations; version 2 the
    # permutations and its row scales (S and the normalisations, folded).
    stored, again = pair(FULL, 30, "stacked", version, 64, 256)
    assert again.signs is None and again.gauss is None
    held = [t for t in again.arrays if t is not None]
    if version == 3:
        assert again.row_scale is None
        assert held == [again.permutation, again.block_scale]
    else:
        assert held == [again.permutation, again.row_scale]
    for name in ("permutation", "row_scale", "block_scale"):
        a, b = getattr(stored, name), getattr(again, name)
        if b is not None:
            np.testing.assert_array_equal(b, a)
    a = stored.arrays
    dropped = [a.signs, a.gauss] + ([a.row_scale] if version == 3 else [])
    assert again.memory_bytes == stored.memory_bytes - sum(
        t.shape.num_elements() * t.dtype.size for t in dropped
    )
    # Nothing of D's size on the projection or its backend but those.
    found = [
        t
        for obj in (again, again.backend)
        for t in vars(obj).values()
        if isinstance(t, tf.Tensor) and t.shape.num_elements() >= FULL
    ]
    assert found == []
    if version == 3:  # int16 permutation: 2 bytes a weight
        padded = again.num_groups * again.group_rows * again.block_length
        assert again.memory_bytes == 2 * padded + 4 * again.num_groups * (
            again.group_rows
        )


def test_building_draws_no_signs(monkeypatch):
    monkeypatch.setenv(kernel.ENV, "0")
    monkeypatch.setattr(fastfood, "BUILD_CHUNK", 256)
    calls = {"signs": 0, "gauss": 0}
    for name in calls:
        real = getattr(fastfood_regen, f"draw_{name}")

        def counted(*args, name=name, real=real):
            calls[name] += 1
            return real(*args)

        monkeypatch.setattr(fastfood_regen, f"draw_{name}", counted)
    FastfoodProjection(FULL, 30, regenerate=True)
    # G only for the blocks' normalisations (1 / sqrt(D sum G^2)), then
    # dropped; B not at all.
    assert calls == {"signs": 0, "gauss": 4}
    FastfoodProjection(FULL, 30)
    assert calls == {"signs": 4, "gauss": 8}


def test_config_round_trip(monkeypatch):
    monkeypatch.setenv(kernel.ENV, "0")
    p = FastfoodProjection(300, 20, seed=2, regenerate=True)
    config = p.get_config()
    assert config["regenerate"] is True
    again = FastfoodProjection.from_config(config)
    assert again.regenerate and again.signs is None
    v = np.ones(20, np.float32)
    np.testing.assert_array_equal(again(v), p(v))
    stored = FastfoodProjection(300, 20, seed=2)
    assert "regenerate" not in stored.get_config()  # as before
    assert not FastfoodProjection.from_config(stored.get_config()).regenerate
    with pytest.raises(ValueError, match="regenerate"):
        FastfoodProjection(300, 20, regenerate="yes")


def test_the_kernel_is_refused_or_left(monkeypatch):
    monkeypatch.setenv(kernel.ENV, "1")
    with pytest.raises(ValueError, match="regenerate=True"):
        FastfoodProjection(300, 20, regenerate=True)
    monkeypatch.setenv(kernel.ENV, "auto")
    p = FastfoodProjection(300, 20, regenerate=True)
    assert not p.uses_kernel and not p.supports_xla


@pytest.mark.parametrize("structure_aware", [True, False])
def test_subspace_model_steps_with_exact_gradients(monkeypatch, structure_aware):
    # A model of 1,504 weights over 24 groups and 6 ranges: one SGD(1.0)
    # step against -P^T g with P materialised.
    monkeypatch.setenv(kernel.ENV, "0")
    monkeypatch.setattr(fastfood, "PASS_CHUNK", 64)
    monkeypatch.setattr(fastfood, "BUILD_CHUNK", 256)
    base = keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(60), keras.layers.Dense(4)]
    )
    model = SubspaceModel(
        base,
        dim=34,
        projection="fastfood",
        projection_kwargs={"regenerate": True},
        seed=1,
        structure_aware=structure_aware,
        # The scales step at theta_d's rate.
        said_learning_rate=1.0 if structure_aware else None,
    )
    p = model.projection
    assert p.regenerate and p.num_groups == 24 and len(p.backend.draws) == 6
    sizes = [int(np.prod(w.shape)) for w in model.base_variables]
    rng = np.random.default_rng(3)
    theta_d = rng.standard_normal(p.dim).astype(np.float32)
    model.theta_d.assign(theta_d)
    scales = np.ones(model.full_dim)
    if structure_aware:
        lambdas = rng.uniform(0.5, 1.5, 4).astype(np.float32)
        model.lambdas.assign(lambdas)
        scales = np.repeat(lambdas, sizes)
    model.sync_base_weights()
    mat = materialize(p).astype(np.float64)
    u = mat @ theta_d
    theta_0 = model.theta_0.numpy().astype(np.float64)
    flat = np.concatenate([w.numpy().ravel() for w in model.base_variables])
    np.testing.assert_allclose(flat, theta_0 + scales * u, rtol=1e-4, atol=1e-5)
    x = rng.standard_normal((16, 20)).astype(np.float32)
    y = rng.standard_normal((16, 4)).astype(np.float32)
    loss_fn = keras.losses.MeanSquaredError()
    watched = [w.value for w in model.base_variables]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        loss = loss_fn(y, base(x))
    g = np.concatenate([w.numpy().ravel() for w in tape.gradient(loss, watched)])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss_fn)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    want = theta_d - mat.T @ (scales * g.astype(np.float64))
    np.testing.assert_allclose(model.theta_d.numpy(), want, rtol=1e-4, atol=1e-5)
    if structure_aware:
        per_tensor = np.add.reduceat(g * u, np.cumsum([0] + sizes[:-1]))
        np.testing.assert_allclose(
            model.lambdas.numpy(), lambdas - per_tensor, rtol=1e-4, atol=1e-5
        )
