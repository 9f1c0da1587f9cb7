"""`SubspaceModel(..., keep_theta_0=False)`: no theta_0, the base weights
written in place by increments (see `keras_idim.subspace_in_place`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import materialize
from piece_products import largest_made

from keras_idim import SubspaceModel
from keras_idim.dimsearch import found
from keras_idim.export import load_compact, save_compact
from keras_idim.projections import fastfood, kernel

X = np.random.default_rng(0).standard_normal((16, 6)).astype(np.float32)
Y = np.random.default_rng(1).standard_normal((16, 3)).astype(np.float32)

# (projection, Fastfood's kernel wanted): the kernel's case is skipped
# where it does not load.
PROJECTIONS = [
    ("dense", "0"),
    ("sparse", "0"),
    ("fastfood", "0"),
    ("fastfood", "1"),
    ("unilora", "0"),
]


def mlp(layers=(8,)):
    keras.utils.set_random_seed(4)
    inner = [keras.layers.Dense(n, activation="tanh") for n in layers]
    return keras.Sequential([keras.Input((6,)), *inner, keras.layers.Dense(3)])


def flat(model) -> np.ndarray:
    return np.concatenate([v.numpy().ravel() for v in model.base_variables])


def wrap(base, projection="fastfood", kernel_on="0", monkeypatch=None, **kwargs):
    if monkeypatch is not None:
        monkeypatch.setenv(kernel.ENV, kernel_on)
        if kernel_on == "1" and kernel.load() is None:
            pytest.skip(f"Fastfood's kernel: {kernel.unavailable_reason()}")
    kwargs.setdefault("dim", 12)
    kwargs.setdefault("seed", 3)
    return SubspaceModel(base, projection=projection, keep_theta_0=False, **kwargs)


def exact(model, theta_0) -> np.ndarray:
    """theta_0 + (lambda *) P theta_d in float64."""
    u = materialize(model.projection).astype(np.float64) @ model.theta_d.numpy()
    if model.structure_aware:
        u = u * np.repeat(model.lambdas.numpy().astype(np.float64), model._map.sizes)
    return theta_0.astype(np.float64) + u


def ulp(x: float) -> float:
    return float(np.spacing(np.float32(x)))


def test_no_theta_0_and_d_trainable_numbers():
    model = wrap(mlp(), dim=12, structure_aware=True)
    assert model.theta_0 is None and not model.keep_theta_0
    assert [v.shape for v in model.trainable_variables] == [(8,), (4,)]
    names = sorted(v.name for v in model.non_trainable_variables)
    assert "theta_0" not in names
    assert {"theta_d_written", "said_lambdas_written"} <= set(names)
    # Nothing of D floats among the model's own variables.
    assert max(int(np.prod(v.shape)) for v in model._trainable_variables) < 59


@pytest.mark.parametrize("said", [False, True])
def test_theta_d_zero_is_the_base_model_bit_for_bit(said):
    base = mlp()
    before = [v.numpy().copy() for v in base.trainable_variables]
    model = wrap(base, structure_aware=said)
    after = [v.numpy() for v in model.base_variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    model.sync_base_weights()  # an increment of zero
    assert all(
        np.array_equal(a, v.numpy()) for a, v in zip(before, model.base_variables)
    )


@pytest.mark.parametrize("said", [False, True])
@pytest.mark.parametrize("projection,kernel_on", PROJECTIONS)
def test_one_sgd_step_and_then_more(projection, kernel_on, said, monkeypatch):
    base = mlp()
    theta_0 = flat_of(base)
    with tf.GradientTape() as tape:
        loss = keras.losses.MeanSquaredError()(Y, base(X))
    g = np.concatenate(
        [t.numpy().ravel() for t in tape.gradient(loss, base.trainable_variables)]
    )
    model = wrap(
        base,
        projection,
        kernel_on,
        monkeypatch,
        structure_aware=said,
        said_learning_rate=1.0 if said else None,
    )
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    model.train_on_batch(X, Y)
    p = materialize(model.projection).astype(np.float64)
    np.testing.assert_allclose(model.theta_d.numpy(), -p.T @ g, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(flat(model), exact(model, theta_0), rtol=0, atol=1e-6)
    # (With SAID the scales move from the second step: P theta_d was 0.)
    for _ in range(3):
        model.train_on_batch(X, Y)
    if said:
        assert not np.allclose(model.lambdas.numpy(), 1.0)
    np.testing.assert_allclose(flat(model), exact(model, theta_0), rtol=0, atol=2e-6)
    np.testing.assert_array_equal(model.written_theta_d.numpy(), model.theta_d.numpy())


def flat_of(base) -> np.ndarray:
    return np.concatenate([v.numpy().ravel() for v in base.trainable_variables])


@pytest.mark.parametrize("said", [False, True])
def test_sync_by_hand_writes_the_change_since_the_last_write(said):
    base = mlp()
    theta_0 = flat_of(base)
    model = wrap(base, "dense", structure_aware=said)
    rng = np.random.default_rng(5)
    for _ in range(2):
        model.theta_d.assign(rng.standard_normal(model.theta_d.shape))
        if said:
            model.lambdas.assign(rng.uniform(0.5, 1.5, model.lambdas.shape))
        model.sync_base_weights()
        np.testing.assert_allclose(flat(model), exact(model, theta_0), atol=1e-6)


@pytest.mark.parametrize("said", [False, True])
def test_drift_over_1000_sgd_steps_is_within_one_rounding_a_step(said, monkeypatch):
    # Fastfood in TensorFlow ops; W's distance from theta_0 + (lambda *)
    # P theta_d (float64) after 1,000 steps: at most half an ulp of max|W|
    # per add (one a step, two with SAID), worst case; about sqrt(N) typical.
    steps = 1000
    base = mlp()
    theta_0 = flat_of(base)
    model = wrap(
        base,
        "fastfood",
        "0",
        monkeypatch,
        structure_aware=said,
        said_learning_rate=0.01 if said else None,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    data = tf.data.Dataset.from_tensors((X, Y)).repeat()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    drift = np.abs(flat(model) - exact(model, theta_0)).max()
    biggest = float(np.abs(flat(model)).max())
    adds = steps * (2 if said else 1)
    assert drift <= adds * ulp(biggest) / 2
    assert drift <= 4 * np.sqrt(adds) * ulp(biggest)  # the typical size, with room
    print(
        f"drift {drift:.3g} = {drift / ulp(biggest):.3g} ulp(max|W|), "
        f"{drift / biggest:.3g} of max|W|"
    )


def test_bad_values_are_refused_naming_the_option():
    base = mlp()
    with pytest.raises(ValueError, match=r"`keep_theta_0`.*'no'"):
        SubspaceModel(base, dim=4, keep_theta_0="no")
    assert base.trainable_variables  # checked before wrapping
    half = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(3, dtype="bfloat16")]
    )
    with pytest.raises(ValueError, match="keep_theta_0=False.*float32"):
        SubspaceModel(half, dim=4, keep_theta_0=False)


# -- saving -------------------------------------------------------------------


@pytest.mark.parametrize("said", [False, True])
def test_config_round_trip_and_version(said):
    model = wrap(mlp(), "sparse", structure_aware=said)
    config = model.get_config()
    assert config["keep_theta_0"] is False and config["format_version"] == 3
    clone = SubspaceModel.from_config(config)
    assert not clone.keep_theta_0 and clone.theta_0 is None
    kept = SubspaceModel(mlp(), dim=12, projection="sparse")
    assert "keep_theta_0" not in kept.get_config()  # as files before it
    assert SubspaceModel.from_config(kept.get_config()).keep_theta_0
    with pytest.raises(ValueError, match="format version 4; this keras_idim"):
        SubspaceModel.from_config({**config, "format_version": 4})
    with pytest.raises(ValueError, match="format version 3; this keras_idim"):
        SubspaceModel.from_config({**kept.get_config(), "format_version": 3})


@pytest.mark.parametrize("space,said", [(None, False), (None, True), ("lora:2", False)])
def test_keras_file_round_trip_and_training_goes_on(tmp_path, space, said):
    model = wrap(mlp(), "fastfood", space=space, structure_aware=said, dim=14)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(X, Y, epochs=3, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert not loaded.keep_theta_0
    for a, b in zip(model.base_model.weights, loaded.base_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(model.weights[-2:], loaded.weights[-2:]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(
        model.predict(X, verbose=0), loaded.predict(X, verbose=0)
    )
    model.train_on_batch(X, Y)
    loaded.train_on_batch(X, Y)
    np.testing.assert_allclose(flat(model), flat(loaded), rtol=0, atol=1e-7)


def test_export_serves_the_trained_weights(tmp_path):
    model = wrap(mlp(), "fastfood")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(X, Y, epochs=2, verbose=0)
    path = model.export(str(tmp_path / "sm"), verbose=False)
    reloaded = tf.saved_model.load(path)
    served = reloaded.serve(X).numpy()
    np.testing.assert_allclose(served, model.predict(X, verbose=0), atol=1e-6)


@pytest.mark.parametrize("said", [False, True])
def test_compact_holds_the_recovered_theta_0(tmp_path, said):
    base = mlp()
    theta_0 = flat_of(base)
    model = wrap(base, "fastfood", structure_aware=said, dim=14)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(X, Y, epochs=3, verbose=0)
    save_compact(model, tmp_path / "c.npz")
    loaded = load_compact(tmp_path / "c.npz")
    np.testing.assert_allclose(loaded.theta_0.numpy(), theta_0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(flat(loaded), flat(model), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="keep_theta_0=False"):
        save_compact(model, tmp_path / "d.npz", include_base=False)


# -- the write path's peak ----------------------------------------------------


@pytest.mark.parametrize("said", [False, True])
@pytest.mark.parametrize("projection", ["fastfood", "unilora"])
def test_the_write_makes_no_tensor_of_d_floats(projection, said, monkeypatch):
    monkeypatch.setenv(kernel.ENV, "0")
    monkeypatch.setattr(fastfood, "PASS_CHUNK", 64)  # groups of 64 rows
    model = wrap(mlp((8, 8, 8, 8)), projection, structure_aware=said, dim=20)
    sizes = model._map.sizes
    assert model.full_dim == 299 and max(sizes) == 64

    def write():
        model.sync_base_weights()

    graph = tf.function(write).get_concrete_function().graph
    assert largest_made(graph) <= 64  # a piece, or a group of rows
    kept = SubspaceModel(
        mlp((8, 8, 8, 8)), dim=20, projection=projection, structure_aware=said
    )
    kept_graph = tf.function(lambda: kept.sync_base_weights()).get_concrete_function()
    assert largest_made(kept_graph.graph) == 299  # theta_0, read


def test_a_search_fingerprint_is_refused_naming_the_option():
    with pytest.raises(ValueError, match="keep_theta_0=False"):
        found.theta_0_sha256(wrap(mlp()))
