"""keras_idim.spaces: the weights that theta_d moves (every weight, a subset
of them, LoRA adapters), and SubspaceModel inside a space."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import materialize

from keras_idim import SubspaceModel, spaces
from keras_idim.export import CompactFileError, load_compact, save_compact
from keras_idim.spaces import LoRA, Weights


def mlp(seed=0):
    """6 -> 5 (tanh) -> 3, layers "h" and "out": D = 30 + 5 + 15 + 3 = 53."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, activation="tanh", name="h"),
            keras.layers.Dense(3, name="out"),
        ],
        name="net",
    )


def data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = rng.normal(size=(n, 3)).astype("float32")
    return x, y


def values(variables) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


def flat(arrays) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays]).astype(np.float64)


#: The spaces tested throughout, with their D on `mlp()` counted by hand:
#: the biases 5 + 3; LoRA rank 2 on both layers 2 (6 + 5) + 2 (5 + 3).
SPACES = {
    "biases": (Weights(include=["*bias"]), 8),
    "lora": (LoRA(2), 38),
    "lora_alpha": (LoRA(2, alpha=6), 38),
}


# -- what a space selects --------------------------------------------------


@pytest.mark.parametrize("name", sorted(SPACES))
@pytest.mark.parametrize("said", [False, True])
def test_exactly_d_numbers_train(name, said):
    space, full_dim = SPACES[name]
    model = SubspaceModel(
        mlp(), dim=6, projection="dense", space=space, structure_aware=said
    )
    assert model.full_dim == full_dim
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 6
    assert model.base_model.trainable_variables == []
    if said:  # one scale per tensor of the space
        assert tuple(model.lambdas.shape) == (2 if name == "biases" else 4,)


def test_the_default_space_is_every_trainable_weight_in_todays_order():
    base = mlp()
    before = [v.path for v in base.trainable_variables]
    model = SubspaceModel(base, dim=4, space=None)
    assert [v.path for v in model.base_variables] == before
    assert model.full_dim == 53 and model.space == Weights()
    assert "space" not in model.get_config()
    assert "space" not in SubspaceModel(mlp(), dim=4, space="weights").get_config()


def test_subset_and_lora_select_in_model_order():
    bias = SubspaceModel(mlp(), dim=3, space=Weights(include=["*bias"]))
    assert [v.path.split("/", 1)[1] for v in bias.base_variables] == [
        "h/bias",
        "out/bias",
    ]
    minus = Weights(include=["*h/*"], exclude=["*bias"])
    assert [v.path for v in minus.prepare(mlp())] == ["net/h/kernel"]
    adapters = SubspaceModel(mlp(), dim=3, space="lora:2")
    assert [v.path.split("/", 1)[1] for v in adapters.base_variables] == [
        "h/lora_kernel_a",
        "h/lora_kernel_b",
        "out/lora_kernel_a",
        "out/lora_kernel_b",
    ]
    only_out = SubspaceModel(mlp(), dim=3, space=LoRA(1, targets=["out"]))
    assert only_out.full_dim == 5 + 3


def test_prepare_is_idempotent_and_freezes_the_rest():
    for space in (Weights(), Weights(include=["*bias"]), LoRA(2)):
        base = mlp()
        first = space.prepare(base)
        again = space.prepare(base)
        assert [id(v) for v in again] == [id(v) for v in first]
        assert [id(v) for v in base.trainable_variables] == [id(v) for v in first]
        model = SubspaceModel(base, dim=3, space=space)  # after prepare
        assert [id(v) for v in model.base_variables] == [id(v) for v in first]
    # A model deserialised from a LoRA one: Keras rebuilt the adapters.
    base = mlp()
    LoRA(2).prepare(base)
    clone = keras.Sequential.from_config(base.get_config())

    def names(variables):  # a deserialised model's paths lack "net/"
        return [v.path.split("/")[-2:] for v in variables]

    assert names(LoRA(2).prepare(clone)) == names(LoRA(2).prepare(base))
    assert names(LoRA(2).prepare(clone)) == names(clone.trainable_variables)
    with pytest.raises(ValueError, match=r"already prepared for the space 'lora:2'"):
        Weights().prepare(base)
    with pytest.raises(ValueError, match=r"already has LoRA of rank 2.*'lora:3'"):
        LoRA(3).prepare(keras.Sequential.from_config(base.get_config()))


def test_a_wrapped_base_is_still_refused():
    base = mlp()
    SubspaceModel(base, dim=4, space="lora:1")
    with pytest.raises(ValueError, match="no trainable weights.*already wrapped"):
        SubspaceModel(base, dim=4, space="lora:1")


# -- LoRA's A from the seed ---------------------------------------------------

_DRAW = """
import sys
import keras
import numpy as np
from keras_idim import SubspaceModel
keras.utils.set_random_seed(0)
layers = [keras.layers.Dense(5, name="h"), keras.layers.Dense(3, name="out")]
base = keras.Sequential([keras.Input((6,)), *layers])
keras.utils.set_random_seed(int(sys.argv[2]))  # Keras' own draws: not A's
model = SubspaceModel(base, dim=4, seed=3, space="lora:2")
np.savez(sys.argv[1], *[keras.ops.convert_to_numpy(v) for v in model.base_variables])
"""


def adapters_of(model):
    return {
        name: values(spaces.lora.adapters(model.base_model.get_layer(name)))
        for name in ("h", "out")
    }


def expected_a(seed, index, shape):
    """He uniform on A's fan-in (limit sqrt(6 / fan_in)), drawn by TF's
    stateless op under the seed pair [seed, key]: key mixes the stream
    "LoRA" (0x4C6F5241) and the layer's index into the seed, as
    `derive_seed` does (63-bit splitmix-like steps)."""
    key = seed
    for stream in (0x4C6F5241, index):
        key = (key * 0x9E3779B97F4A7C15 + stream + 1) % 2**63
    limit = np.sqrt(6.0 / shape[0])
    return tf.random.stateless_uniform(
        shape, tf.constant([seed, key], tf.int64), -limit, limit, tf.float32
    ).numpy()


def test_lora_a_comes_from_the_seed_bit_for_bit_in_any_process(tmp_path):
    model = SubspaceModel(mlp(), dim=4, seed=3, space="lora:2")
    got = adapters_of(model)
    for index, (name, fan_in) in enumerate((("h", 6), ("out", 5))):
        a, b = got[name]
        np.testing.assert_array_equal(a, expected_a(3, index, (fan_in, 2)))
        assert np.abs(a).max() <= np.sqrt(6.0 / fan_in) and np.abs(a).max() > 0
        np.testing.assert_array_equal(b, np.zeros((2, b.shape[1]), "float32"))
    # Another process, another global random state: the same theta_0.
    subprocess.run(
        [sys.executable, "-c", _DRAW, str(tmp_path / "a.npz"), "17"],
        capture_output=True,
        timeout=300,
        check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    with np.load(tmp_path / "a.npz") as npz:
        theirs = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    ours = values(model.base_variables)
    assert [t.shape for t in theirs] == [(6, 2), (2, 5), (5, 2), (2, 3)]
    for a, b in zip(theirs, ours):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.theta_0.numpy(), flat(theirs).astype("f4"))
    # Another seed, other A; the same seed after other draws, the same A.
    other = adapters_of(SubspaceModel(mlp(), dim=4, seed=4, space="lora:2"))
    assert not np.array_equal(other["h"][0], got["h"][0])
    assert not np.array_equal(other["out"][0], got["out"][0])
    base = mlp()
    keras.random.uniform((3,))  # moves Keras' global random state
    again = adapters_of(SubspaceModel(base, dim=4, seed=3, space="lora:2"))
    np.testing.assert_array_equal(again["h"][0], got["h"][0])


def test_prepare_without_a_seed_keeps_keras_draw_and_enabled_layers_keep_a():
    keras.utils.set_random_seed(11)
    plain = LoRA(2).prepare(mlp())
    base = mlp()
    keras.utils.set_random_seed(11)
    assert [v.path for v in LoRA(2).prepare(base)] == [v.path for v in plain]
    a_before = values(base.trainable_variables)[0]
    assert not np.array_equal(a_before, expected_a(3, 0, (6, 2)))
    # Prepared already (Keras' draw): wrapping keeps it.
    model = SubspaceModel(base, dim=4, seed=3, space="lora:2")
    np.testing.assert_array_equal(adapters_of(model)["h"][0], a_before)
    # One layer enabled by hand: it keeps its A, the other gets the seed's.
    base = mlp()
    base.get_layer("h").enable_lora(2)
    by_hand = values([base.get_layer("h").lora_kernel_a])[0]
    got = adapters_of(SubspaceModel(base, dim=4, seed=3, space="lora:2"))
    np.testing.assert_array_equal(got["h"][0], by_hand)
    np.testing.assert_array_equal(got["out"][0], expected_a(3, 1, (5, 2)))
    with pytest.raises(ValueError, match=r"`seed` should be an integer"):
        LoRA(2).prepare(mlp(), seed=-1)


def test_dim_is_checked_against_the_space():
    with pytest.raises(ValueError, match=r"at most D=8.*space 'weights\[include"):
        SubspaceModel(mlp(), dim=9, space=Weights(include=["*bias"]))
    with pytest.raises(ValueError, match=r"\(2\), one scale each"):
        SubspaceModel(
            mlp(), dim=2, space=Weights(include=["*bias"]), structure_aware=True
        )


# -- the gradient and the frozen weights ------------------------------------


def lora_forward(x, weights, alpha_over_rank):
    """mlp() with adapters, written out: weights = W, b, A, B per layer."""
    (w1, b1, a1, bb1), (w2, b2, a2, bb2) = weights
    h = tf.tanh(x @ w1 + b1 + alpha_over_rank * (x @ a1) @ bb1)
    return h @ w2 + b2 + alpha_over_rank * (h @ a2) @ bb2


@pytest.mark.parametrize("name", sorted(SPACES))
def test_one_sgd_step_moves_theta_d_by_minus_p_transpose_g(name):
    space, _ = SPACES[name]
    base = mlp()
    model = SubspaceModel(base, dim=5, projection="dense", seed=3, space=space)
    p = materialize(model.projection).astype(np.float64)
    x, y = data()
    # g over the space's tensors only, from an independent computation.
    layers = [base.get_layer("h"), base.get_layer("out")]
    if name == "biases":
        w = [[tf.constant(v) for v in values(layer.weights)] for layer in layers]
        with tf.GradientTape() as tape:
            tape.watch([w[0][1], w[1][1]])
            out = tf.tanh(x @ w[0][0] + w[0][1]) @ w[1][0] + w[1][1]
            loss = tf.reduce_mean((out - y) ** 2)
        g = tape.gradient(loss, [w[0][1], w[1][1]])
    else:
        w = [
            [tf.constant(v) for v in values([layer._kernel, layer.bias])]
            + [
                tf.constant(v)
                for v in values([layer.lora_kernel_a, layer.lora_kernel_b])
            ]
            for layer in layers
        ]
        scale = (space.alpha or space.rank) / space.rank
        watched = [w[0][2], w[0][3], w[1][2], w[1][3]]
        with tf.GradientTape() as tape:
            tape.watch(watched)
            loss = tf.reduce_mean((lora_forward(x, w, scale) - y) ** 2)
        g = tape.gradient(loss, watched)
    g = flat([t.numpy() for t in g])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(model.theta_d.numpy(), -p.T @ g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_theta_d_zero_is_the_model_and_frozen_weights_never_move(name):
    space, _ = SPACES[name]
    base = mlp()
    x, y = data()
    original = base.predict(x, verbose=0)
    model = SubspaceModel(base, dim=5, space=space, seed=1)
    np.testing.assert_allclose(model.predict(x, verbose=0), original, atol=1e-6)
    space_ids = {id(v) for v in model.base_variables}
    frozen = [v for v in base.weights if id(v) not in space_ids]
    assert frozen  # kernels (both spaces) and biases (LoRA)
    before = values(frozen)
    moved_before = values(model.base_variables)
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    for v, b in zip(frozen, before):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), b, v.path)
    assert np.abs(model.theta_d.numpy()).max() > 0
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(values(model.base_variables), moved_before)
    )


# -- saving -------------------------------------------------------------------


def trained(space, said=False):
    model = SubspaceModel(
        mlp(), dim=6, projection="dense", seed=2, space=space, structure_aware=said
    )
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    x, y = data()
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    return model


@pytest.mark.parametrize("name", sorted(SPACES))
def test_config_round_trip(name):
    space, _ = SPACES[name]
    model = SubspaceModel(mlp(), dim=6, space=space, structure_aware=True)
    config = json.loads(json.dumps(model.get_config()))
    assert config["space"] == space.get_config()
    clone = SubspaceModel.from_config(config)
    assert clone.space == space and clone.full_dim == model.full_dim
    ours, theirs = model.get_config(), clone.get_config()
    assert {**ours, "base_model": None} == {**theirs, "base_model": None}
    layers = [layer["config"] for layer in theirs["base_model"]["config"]["layers"]][1:]
    assert [layer.get("lora_rank") for layer in layers] == (
        [None, None] if name == "biases" else [2, 2]
    )


@pytest.mark.parametrize("name", sorted(SPACES))
def test_keras_file_round_trip(tmp_path, name):
    space, _ = SPACES[name]
    model = trained(space, said=name == "lora")
    x, y = data(seed=1)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.space == space
    np.testing.assert_array_equal(loaded.theta_d.numpy(), model.theta_d.numpy())
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    # Every weight of the base, frozen ones (the original W) included.
    for a, b in zip(
        values(loaded.base_model.weights), values(model.base_model.weights)
    ):
        np.testing.assert_array_equal(a, b)
    if name == "lora_alpha":
        assert loaded.base_model.get_layer("h").lora_alpha == 6
    # And they train on alike (no adapter counted twice in a kernel).
    for m in (model, loaded):
        m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        m.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_weights_file_round_trip_into_a_model_built_in_code(tmp_path):
    model = trained(LoRA(2))
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    again = SubspaceModel(
        mlp(seed=5), dim=6, projection="dense", seed=2, space="lora:2"
    )
    again.load_weights(path)
    x, _ = data(seed=1)
    np.testing.assert_array_equal(
        again.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    for a, b in zip(values(again.base_model.weights), values(model.base_model.weights)):
        np.testing.assert_array_equal(a, b)  # W itself, not W + s A B


_SERVE = """
import sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
np.save(sys.argv[3], model.serve(np.load(sys.argv[2])).numpy())
assert not any(m.startswith("keras_idim") for m in sys.modules), "imported!"
"""


@pytest.mark.parametrize("name", ["biases", "lora_alpha"])
def test_saved_model_served_without_keras_idim(tmp_path, name):
    model = trained(SPACES[name][0])
    x, _ = data(seed=1)
    path = model.export(str(tmp_path / "sm"), verbose=False)
    np.save(tmp_path / "x.npy", x)
    subprocess.run(
        [
            sys.executable,
            "-c",
            _SERVE,
            path,
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
        ],
        capture_output=True,
        timeout=300,
        check=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    served = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(served, model.predict(x, verbose=0), atol=1e-6)
    if name.startswith("lora"):  # the function of the merged kernels W + s A B
        merged = [
            layer._kernel.numpy()
            + 3 * layer.lora_kernel_a.numpy() @ layer.lora_kernel_b.numpy()
            for layer in model.base_model.layers
        ]
        plain = mlp()
        for layer, kernel in zip(plain.layers, merged):
            layer.kernel.assign(kernel)
            layer.bias.assign(model.base_model.get_layer(layer.name).bias)
        np.testing.assert_allclose(served, plain.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_compact_round_trip(tmp_path, name):
    space, _ = SPACES[name]
    model = trained(space, said=name == "biases")
    path = save_compact(model, tmp_path / "m.npz")
    with np.load(path) as npz:
        header = json.loads(npz["header"].tobytes())
    assert header["space"] == space.get_config() and header["format_version"] == 2
    assert header["seed"] == 2
    x, _ = data(seed=1)
    for base in (None, mlp(seed=7)):  # its own base, or a fresh one
        loaded = load_compact(path, base_model=base)
        assert loaded.space == space
        np.testing.assert_array_equal(loaded.theta_d.numpy(), model.theta_d.numpy())
        np.testing.assert_array_equal(
            loaded.predict(x, verbose=0), model.predict(x, verbose=0)
        )
    # Without its base (issue 21): the seed draws theta_0 again.
    path = save_compact(model, tmp_path / "n.npz", include_base=False)
    loaded = load_compact(path, base_model=mlp())
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )


def npz_of(path):
    with np.load(path) as npz:
        return json.loads(npz["header"].tobytes()), sorted(npz.files)


@pytest.mark.parametrize(
    "space", [LoRA(2), Weights(include=["*bias*"]), LoRA(2, train=["out"])]
)
@pytest.mark.parametrize("said", [False, True])
def test_compact_file_without_base_in_a_space(tmp_path, space, said):
    model = trained(space, said=said)
    path = save_compact(model, tmp_path / "m.npz", include_base=False)
    header, members = npz_of(path)
    assert header["format_version"] == 3 and header["include_base"] is False
    assert header["space"] == space.get_config() and header["seed"] == 2
    assert header["base_model"] is None and header["state_positions"] == []
    # The seed, the space and theta_d (and the lambdas): no weight of the base.
    assert members == sorted(["header", "theta_d"] + (["lambdas"] if said else []))
    d = model.theta_d.shape[0]
    assert d == (6 - model.lambdas.shape[0] if said else 6)
    # Each member: its name twice (local and central zip headers), about
    # 200 bytes of zip and .npy headers; the header member holds the JSON.
    text = len(json.dumps(header, sort_keys=True))
    bound = text + 4 * 6 + len(members) * 300 + 200
    assert os.path.getsize(path) <= bound
    x, _ = data(seed=1)
    keras.random.uniform((5,))  # another global random state: A from the seed
    loaded = load_compact(path, base_model=mlp())
    assert loaded.space == space and loaded.seed == 2
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )
    for a, b in zip(
        values(loaded.base_model.weights), values(model.base_model.weights)
    ):
        np.testing.assert_array_equal(a, b)
    # Another base (other weights): refused, naming the fingerprint.
    with pytest.raises(ValueError, match=r"does not match.*SHA-256 of its weights"):
        load_compact(path, base_model=mlp(seed=7))


@pytest.mark.parametrize(
    "field, value",
    [("state_positions", [99]), ("base_weights", "8"), ("seed", None)],
)
def test_compact_file_without_base_refuses_a_crafted_header(tmp_path, field, value):
    path = save_compact(trained(LoRA(2)), tmp_path / "m.npz", include_base=False)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["header"].tobytes())
    header[field] = value
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(tmp_path / "crafted.npz", **arrays)
    with pytest.raises(CompactFileError, match=r"crafted\.npz.*corrupt.*seed, base"):
        load_compact(tmp_path / "crafted.npz", base_model=mlp())


def test_compact_file_without_base_of_the_digits_fc_in_lora_4(tmp_path):
    import keras_idim

    def base():
        keras.utils.set_random_seed(0)
        return keras_idim.models.fc(input_shape=(8, 8, 1), num_classes=10)

    model = SubspaceModel(base(), dim=100, seed=5, space="lora:4")
    assert model.full_dim == 4 * ((64 + 200) + (200 + 200) + (200 + 10))
    model.theta_d.assign(np.linspace(-0.1, 0.1, 100).astype("float32"))
    model.sync_base_weights()
    small = save_compact(model, tmp_path / "small.npz", include_base=False)
    whole = save_compact(model, tmp_path / "whole.npz")
    header, _ = npz_of(small)
    text = len(json.dumps(header, sort_keys=True))
    # 64 x 200 + 200 x 200 + 200 x 10 weights and biases: 220 KB of base.
    assert os.path.getsize(whole) > 4 * (64 * 200 + 200 * 200 + 200 * 10)
    assert os.path.getsize(small) <= text + 4 * 100 + 2 * 300 + 200 < 4096
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
    loaded = load_compact(small, base_model=base())
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_compact_file_without_base_keeps_batchnorm_statistics(tmp_path):
    def base():
        keras.utils.set_random_seed(0)
        return keras.Sequential(
            [
                keras.Input((6,)),
                keras.layers.Dense(5, name="h"),
                keras.layers.BatchNormalization(name="bn"),
                keras.layers.Dense(3, name="out"),
            ]
        )

    model = SubspaceModel(base(), dim=6, projection="dense", seed=2, space="lora:1")
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    x, y = data()
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    path = save_compact(model, tmp_path / "m.npz", include_base=False)
    header, members = npz_of(path)
    # h: kernel, bias, A, B; bn: gamma, beta, moving mean, moving variance.
    assert header["state_positions"] == [6, 7]
    assert header["state_shapes"] == [[5], [5]]
    assert members == ["header", "state_0", "state_1", "theta_d"]
    loaded = load_compact(path, base_model=base())
    bn = loaded.base_model.get_layer("bn")
    np.testing.assert_array_equal(
        bn.moving_mean.numpy(), model.base_model.get_layer("bn").moving_mean.numpy()
    )
    assert not np.array_equal(bn.moving_mean.numpy(), np.zeros(5))
    x, _ = data(seed=1)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_compact_file_without_base_of_a_loaded_keras_file(tmp_path):
    model = trained(LoRA(2))
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    path = save_compact(again, tmp_path / "m.npz", include_base=False)
    loaded = load_compact(path, base_model=mlp())
    x, _ = data(seed=1)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


def test_compact_file_without_base_refuses_an_a_the_seed_did_not_draw(tmp_path):
    base = mlp()
    LoRA(2).prepare(base)  # Keras' own draw
    model = SubspaceModel(base, dim=4, seed=3, space="lora:2")
    with pytest.raises(ValueError, match=r"net/h/lora_kernel_a.*include_base=True"):
        save_compact(model, tmp_path / "m.npz", include_base=False)
    assert not (tmp_path / "m.npz").exists()
    save_compact(model, tmp_path / "m.npz")  # with its base: as before
    # A base given with LoRA enabled by hand keeps its A: refused too.
    path = save_compact(
        SubspaceModel(mlp(), dim=4, seed=3, space="lora:2"),
        tmp_path / "n.npz",
        include_base=False,
    )
    by_hand = mlp()
    by_hand.get_layer("h").enable_lora(2)
    with pytest.raises(ValueError, match=r"A matrices, drawn from the seed 3"):
        load_compact(path, base_model=by_hand)
    with pytest.raises(ValueError, match=r"include_base=False.*pass the base"):
        load_compact(path)


def test_compact_file_of_the_default_space_is_as_before(tmp_path):
    model = trained(None)
    with np.load(save_compact(model, tmp_path / "m.npz")) as npz:
        header = json.loads(npz["header"].tobytes())
    assert "space" not in header and header["format_version"] == 1


# -- get, spec, config ------------------------------------------------------


@pytest.mark.parametrize(
    "identifier, expected",
    [
        (None, Weights()),
        ("weights", Weights()),
        (" Weights ", Weights()),
        ("lora:4", LoRA(4)),
        ("LoRA:4", LoRA(4)),
        ({"kind": "lora", "rank": 3, "alpha": 6}, LoRA(3, alpha=6)),
        ({"kind": "weights", "include": ["*bias"]}, Weights(include=["*bias"])),
        (
            "weights[include=*bias,*gamma;exclude=*h/*]",
            Weights(["*bias", "*gamma"], ["*h/*"]),
        ),
        ("lora:2[alpha=8;targets=h,out]", LoRA(2, targets=["h", "out"], alpha=8)),
    ],
)
def test_get_accepts(identifier, expected):
    space = spaces.get(identifier)
    assert space == expected
    assert spaces.get(space) is space
    assert spaces.get(space.spec) == space  # the spec names it again
    assert spaces.get(json.loads(json.dumps(space.get_config()))) == space


def test_specs():
    assert Weights().spec == "weights"
    assert Weights(include=["*bias"]).spec == "weights[include=*bias]"
    assert Weights(exclude="*out*").spec == "weights[exclude=*out*]"
    assert LoRA(4).spec == "lora:4"
    assert LoRA(4, alpha=8, targets=["h"]).spec == "lora:4[alpha=8;targets=h]"
    assert LoRA(4) != LoRA(5) and LoRA(4) != Weights()


@pytest.mark.parametrize(
    "identifier",
    [
        "lora",
        "lora:",
        "lora:x",
        "lora:-1",
        "weights:3",
        "bitfit",
        3,
        {"kind": "x"},
        {"kind": "lora"},
        ["weights"],
        "lora:2[rank=3]",
    ],
)
def test_get_refuses(identifier):
    with pytest.raises(ValueError, match=r"`space`.*Received: `space="):
        spaces.get(identifier)


def test_get_refuses_a_rank_of_zero_naming_both():
    with pytest.raises(ValueError, match=r"`rank`.*`space='lora:0'`"):
        spaces.get("lora:0")


def test_argument_errors():
    with pytest.raises(ValueError, match=r"`include`.*Received: `include=\[3\]`"):
        Weights(include=[3])
    with pytest.raises(ValueError, match=r"`alpha`.*Received: `alpha=0`"):
        LoRA(2, alpha=0)
    with pytest.raises(ValueError, match=r"`targets`"):
        LoRA(2, targets=3)
    with pytest.raises(
        ValueError, match=r"`include` matches none.*net/h/kernel.*\['\*gamma'\]"
    ):
        Weights(include=["*gamma"]).prepare(mlp())
    with pytest.raises(ValueError, match=r"leave no weight"):
        Weights(include=["*bias"], exclude=["*"]).prepare(mlp())
    picked = LoRA(1, targets=lambda layer: layer.name == "out")
    assert picked.spec == "lora:1[targets=<lambda>]"
    with pytest.raises(ValueError, match=r"function as `targets`.*cannot be saved"):
        picked.get_config()


@pytest.mark.parametrize("spec", ["weights:2", "lora", "lora:x", "bias:2", "adapters"])
def test_a_spec_must_fit_its_kind(spec):
    assert spaces.kinds() == {"weights": spaces.Weights, "lora": spaces.LoRA}
    with pytest.raises(ValueError, match="`space` should be"):
        spaces.get(spec)
