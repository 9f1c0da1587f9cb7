import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import KINDS, materialize
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from keras_idim import SubspaceModel, subspace
from keras_idim.projections import DenseProjection, FastfoodProjection


def mlp(inputs=6, hidden=5, outputs=3):
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(hidden, activation="tanh"),
            keras.layers.Dense(outputs),
        ]
    )


def conv_bn_dropout():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10)(x)
    return keras.Model(inputs, outputs)


class SubclassedNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.out = keras.layers.Dense(3)

    def call(self, x):
        return self.out(self.hidden(x))


def flat_weights(variables) -> np.ndarray:
    return np.concatenate([np.ravel(v.numpy()) for v in variables])


def full_gradient(base, x, y, loss_fn, sample_weight=None) -> np.ndarray:
    """dL/dtheta from a plain GradientTape on an independent copy of `base`."""
    copy = keras.models.clone_model(base)
    for v in copy.weights:
        v.trainable = True
    copy.set_weights(base.get_weights())
    with tf.GradientTape() as tape:
        loss = loss_fn(y, copy(x, training=True), sample_weight=sample_weight)
    variables = [v for v in copy.weights if "moving" not in v.path]
    return flat_weights(tape.gradient(loss, variables)).astype(np.float64)


def data(n=32, inputs=6, outputs=3, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, inputs)).astype(np.float32),
        rng.standard_normal((n, outputs)).astype(np.float32),
    )


@pytest.mark.parametrize("kind", KINDS)
def test_theta_d_zero_gives_exactly_the_base_model(kind):
    base = conv_bn_dropout()
    x = np.random.default_rng(0).random((16, 8, 8, 1)).astype(np.float32)
    before = base.predict(x, verbose=0)
    model = SubspaceModel(base, dim=20, projection=kind, seed=0)
    model.sync_base_weights()  # writes theta_0 + P @ 0 into the base
    np.testing.assert_array_equal(model.predict(x, verbose=0), before)
    # A step of zero learning rate still runs the whole update.
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(True),
    )
    model.fit(x, np.zeros(16), epochs=1, verbose=0)
    base.get_layer(index=2).moving_mean.assign(np.zeros(4))  # undo BN stats
    base.get_layer(index=2).moving_variance.assign(np.ones(4))
    np.testing.assert_array_equal(model.theta_d.numpy(), 0)
    np.testing.assert_array_equal(base(x, training=False).numpy(), before)


@pytest.mark.parametrize("kind", KINDS)
def test_one_sgd_step_moves_theta_d_by_minus_p_transpose_gradient(kind):
    base = mlp()
    x, y = data()
    loss_fn = keras.losses.MeanSquaredError()
    g = full_gradient(base, x, y, loss_fn)
    theta_0 = flat_weights(base.trainable_variables)
    model = SubspaceModel(base, dim=7, projection=kind, seed=5)
    p = materialize(model.projection).astype(np.float64)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss=loss_fn)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(model.theta_d.numpy(), -p.T @ g, rtol=1e-4, atol=1e-6)
    # The base model's weights now equal theta_0 + P theta_d.
    np.testing.assert_allclose(
        flat_weights(model.base_variables),
        theta_0 + p @ model.theta_d.numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_said_step_matches_the_chain_rule(kind):
    base = mlp()
    x, y = data(seed=1)
    theta_0 = flat_weights(base.trainable_variables)
    sizes = [int(np.prod(v.shape)) for v in base.trainable_variables]
    # The scales at theta_d's rate too, so that one SGD step of 1.0 is the
    # chain rule for both (by default they have their own, smaller rate).
    model = SubspaceModel(
        base,
        dim=9,
        projection=kind,
        seed=2,
        structure_aware=True,
        said_learning_rate=1.0,
    )
    assert [tuple(v.shape) for v in model.trainable_variables] == [(5,), (4,)]
    rng = np.random.default_rng(3)
    theta_d = rng.standard_normal(5).astype(np.float32)
    lambdas = rng.uniform(0.5, 1.5, 4).astype(np.float32)
    model.theta_d.assign(theta_d)
    model.lambdas.assign(lambdas)
    model.sync_base_weights()
    p = materialize(model.projection).astype(np.float64)
    u = p @ theta_d
    scales = np.repeat(lambdas, sizes)
    np.testing.assert_allclose(
        flat_weights(model.base_variables), theta_0 + scales * u, rtol=1e-5, atol=1e-6
    )
    loss_fn = keras.losses.MeanSquaredError()
    g = full_gradient(base, x, y, loss_fn)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss_fn)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(
        model.theta_d.numpy(), theta_d - p.T @ (scales * g), rtol=1e-4, atol=1e-5
    )
    per_tensor = np.add.reduceat(g * u, np.cumsum([0] + sizes[:-1]))
    np.testing.assert_allclose(
        model.lambdas.numpy(), lambdas - per_tensor, rtol=1e-4, atol=1e-5
    )


def test_sample_weights_reach_the_gradient():
    base = mlp()
    x, y = data(seed=4)
    w = np.random.default_rng(5).uniform(0, 2, 32).astype(np.float32)
    loss_fn = keras.losses.MeanSquaredError()
    g = full_gradient(base, x, y, loss_fn, sample_weight=w)
    model = SubspaceModel(base, dim=6, projection="dense")
    p = materialize(model.projection).astype(np.float64)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss_fn)
    model.fit(x, y, sample_weight=w, batch_size=32, shuffle=False, verbose=0)
    np.testing.assert_allclose(model.theta_d.numpy(), -p.T @ g, rtol=1e-4, atol=1e-6)


def test_only_theta_d_trains_and_the_optimizer_holds_d_numbers():
    base = conv_bn_dropout()
    model = SubspaceModel(base, dim=30, projection="fastfood")
    assert [v.path for v in model.trainable_variables] == [model.theta_d.path]
    assert base.trainable_variables == []
    assert all(layer.trainable for layer in base.layers)
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True)
    )
    x = np.random.default_rng(0).random((40, 8, 8, 1)).astype(np.float32)
    model.fit(x, np.arange(40) % 10, batch_size=8, epochs=1, verbose=0)
    shapes = [tuple(v.shape) for v in model.optimizer.variables]
    assert sorted(s for s in shapes if s) == [(30,), (30,)]


def test_batchnorm_statistics_update_and_weights_follow_the_subspace():
    base = conv_bn_dropout()
    bn = base.get_layer(index=2)
    theta_0 = flat_weights(base.trainable_variables)
    model = SubspaceModel(base, dim=25, projection="sparse", seed=1)
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(True),
    )
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype(np.float32)
    model.fit(x, np.arange(64) % 10, batch_size=16, epochs=2, verbose=0)
    assert not np.allclose(bn.moving_mean.numpy(), 0)
    assert not np.allclose(bn.moving_variance.numpy(), 1)
    assert np.abs(model.theta_d.numpy()).max() > 0
    p = materialize(model.projection).astype(np.float64)
    np.testing.assert_allclose(
        flat_weights(model.base_variables),
        theta_0 + p @ model.theta_d.numpy(),
        rtol=1e-5,
        atol=1e-5,
    )


def test_subclassed_model_trains():
    base = SubclassedNet()
    x, y = data(n=64, inputs=4)
    base(x[:1])
    model = SubspaceModel(base, dim=10, projection="dense")
    assert model.full_dim == 4 * 8 + 8 + 8 * 3 + 3
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    history = model.fit(x, y, epochs=5, verbose=0, validation_data=(x, y))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert "val_loss" in history.history


def digits():
    features, labels = load_digits(return_X_y=True)
    features = (features / 16.0).astype(np.float32)
    return train_test_split(
        features, labels, test_size=0.2, stratify=labels, random_state=0
    )


@pytest.mark.parametrize("kind", KINDS)
def test_learns_digits_at_d_200(kind):
    x_train, x_val, y_train, y_val = digits()
    base = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(200, activation="relu"),
            keras.layers.Dense(200, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model = SubspaceModel(base, dim=200, projection=kind, seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=32, epochs=8, verbose=0)
    _, accuracy = model.evaluate(x_val, y_val, verbose=0)
    assert accuracy > 0.8  # chance is 0.1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"projection": "fastfood", "structure_aware": True},
        {"projection": "sparse"},
        {"projection": "dense", "projection_kwargs": {"memory_budget": 0}},
        {"projection": DenseProjection(1498, 12, seed=7)},
    ],
)
def test_keras_file_round_trip_keeps_predictions(tmp_path, kwargs):
    base = conv_bn_dropout()
    assert sum(int(np.prod(v.shape)) for v in base.trainable_variables) == 1498
    model = SubspaceModel(base, dim=12, seed=3, **kwargs)
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(True),
    )
    x = np.random.default_rng(0).random((32, 8, 8, 1)).astype(np.float32)
    model.fit(x, np.arange(32) % 10, epochs=2, batch_size=8, verbose=0)
    before = model.predict(x, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, SubspaceModel)
    assert loaded.projection.get_config() == model.projection.get_config()
    np.testing.assert_array_equal(loaded.theta_d.numpy(), model.theta_d.numpy())
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)
    np.testing.assert_array_equal(
        materialize(loaded.projection), materialize(model.projection)
    )
    # P is regenerated, so syncing again changes nothing.
    loaded.sync_base_weights()
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), before, rtol=1e-6, atol=1e-6
    )
    loaded.fit(x, np.arange(32) % 10, epochs=1, batch_size=8, verbose=0)


def test_get_config_round_trip():
    model = SubspaceModel(mlp(), dim=4, projection="sparse", seed=9, name="sub")
    clone = SubspaceModel.from_config(model.get_config())
    assert (clone.dim, clone.seed, clone.full_dim, clone.name) == (4, 9, 53, "sub")
    assert type(clone.projection) is type(model.projection)


def test_config_says_its_format_version_and_a_newer_one_is_refused():
    model = SubspaceModel(mlp(), dim=4, projection="sparse", seed=9)
    config = model.get_config()
    assert config["format_version"] == subspace.FORMAT_VERSION == 2
    # Without it, a config of keras_idim 0.1.0 (version 1).
    old = {k: v for k, v in config.items() if k != "format_version"}
    assert SubspaceModel.from_config(old).get_config() == config
    with pytest.raises(ValueError, match="format version 3; this keras_idim reads"):
        SubspaceModel.from_config({**config, "format_version": 3})


def test_a_version_2_model_takes_no_fourth_said_variable():
    # Only version 1 (and weights files, which carry no version) may hold
    # SAID's P theta_d as a fourth variable.
    model = SubspaceModel(
        mlp(), dim=9, projection="dense", seed=2, structure_aware=True
    )
    loaded = SubspaceModel.from_config(model.get_config())
    own = {
        "0": model.theta_d.numpy(),
        "1": model.lambdas.numpy(),
        "2": model.theta_0.numpy(),
    }
    loaded.load_own_variables(own)
    with pytest.raises(ValueError, match="expected 3 variables"):
        loaded.load_own_variables({**own, "3": np.zeros(53, np.float32)})
    old = SubspaceModel.from_config(
        {k: v for k, v in model.get_config().items() if k != "format_version"}
    )
    old.load_own_variables({**own, "3": np.zeros(53, np.float32)})


# -- bad input ----------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 3.0, "8", None])
def test_bad_dim(bad):
    with pytest.raises(
        ValueError,
        match=r"`dim` should be a positive integer. "
        r"Received: `dim=",
    ):
        SubspaceModel(mlp(), dim=bad)


def test_unknown_projection_lists_the_valid_ones():
    with pytest.raises(
        ValueError,
        match=r"\['dense', 'fastfood', 'sparse', 'unilora'\].*"
        r"Received: `projection='orthogonal'`",
    ):
        SubspaceModel(mlp(), dim=4, projection="orthogonal")


def test_base_model_not_a_model():
    with pytest.raises(
        ValueError,
        match=r"`base_model` should be a "
        r"`keras.Model`. Received: .*Dense",
    ):
        SubspaceModel(keras.layers.Dense(3), dim=4)


def test_base_model_not_built():
    with pytest.raises(ValueError, match=r"is not built.*build"):
        SubspaceModel(SubclassedNet(), dim=4)


def test_base_model_without_trainable_weights():
    base = mlp()
    SubspaceModel(base, dim=4)
    with pytest.raises(ValueError, match="no trainable weights"):
        SubspaceModel(base, dim=4)  # already wrapped
    frozen = keras.Sequential([keras.Input((3,)), keras.layers.Flatten()])
    with pytest.raises(ValueError, match="no trainable weights"):
        SubspaceModel(frozen, dim=4)


def test_dense_over_budget_with_refusal():
    with pytest.raises(
        ValueError,
        match=r"`memory_budget=100`.*'sparse'.*"
        r"'fastfood'",
    ):
        SubspaceModel(
            mlp(),
            dim=4,
            projection="dense",
            projection_kwargs={"memory_budget": 100, "over_budget": "raise"},
        )


def test_bad_projection_kwargs():
    with pytest.raises(ValueError, match=r"`projection_kwargs=\{'budget': 1\}`"):
        SubspaceModel(mlp(), dim=4, projection="dense", projection_kwargs={"budget": 1})


def test_structure_aware_needs_dim_above_tensor_count():
    with pytest.raises(
        ValueError,
        match=r"number of trainable weight tensors "
        r"of the base model \(4\).*Received: `dim=4`",
    ):
        SubspaceModel(mlp(), dim=4, structure_aware=True)


def test_projection_instance_of_wrong_shape():
    with pytest.raises(ValueError, match=r"R\^4 to R\^53"):
        SubspaceModel(mlp(), dim=4, projection=FastfoodProjection(50, 4))


def test_bad_seed_and_structure_aware():
    with pytest.raises(ValueError, match=r"Received: `seed=1.5`"):
        SubspaceModel(mlp(), dim=4, seed=1.5)
    with pytest.raises(ValueError, match=r"Received: `structure_aware='yes'`"):
        SubspaceModel(mlp(), dim=4, structure_aware="yes")


def test_wrapping_a_subspace_model_again_is_refused():
    # Before: it trained nothing (the loss stayed constant, theta_d at 0).
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    inner = SubspaceModel(base, 5)
    with pytest.raises(ValueError, match=r"already a SubspaceModel.*model\.base_model"):
        SubspaceModel(inner, 3)


@pytest.mark.parametrize("projection", ["dense", "sparse", "fastfood", "unilora"])
def test_dim_above_D_is_refused_naming_D(projection):
    # Before: fastfood grew to 6.8 GB at d = 10**8 and dense ran silently.
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])  # D = 15
    with pytest.raises(ValueError, match=r"`dim` should be at most D=15.*`dim=16`"):
        SubspaceModel(base, 16, projection=projection)
    assert SubspaceModel(base, 15, projection=projection).dim == 15


def test_said_model_loads_variables_saved_with_its_offset_by_0_1_0():
    # keras_idim 0.1.0 saved SAID's P theta_d as a fourth variable (after
    # theta_d, the lambdas and theta_0); it is now made again from theta_d.
    model = SubspaceModel(
        mlp(), dim=9, projection="dense", seed=2, structure_aware=True
    )
    assert len(model.weights) - len(model.base_model.weights) == 3
    rng = np.random.default_rng(0)
    theta_d = rng.standard_normal(5).astype(np.float32)
    lambdas = rng.uniform(0.5, 1.5, 4).astype(np.float32)
    theta_0 = model.theta_0.numpy()
    old_file = {"0": theta_d, "1": lambdas, "2": theta_0, "3": np.full(53, 7.0)}
    model.load_own_variables(old_file)
    np.testing.assert_array_equal(model.theta_d.numpy(), theta_d)
    np.testing.assert_array_equal(model.lambdas.numpy(), lambdas)
    # The lambdas' gradient uses P theta_d, not the file's stale numbers.
    grads = [tf.ones(v.shape) for v in model.base_variables]
    _, grad_lambdas = model.subspace_gradients(grads)
    u = materialize(model.projection).astype(np.float64) @ theta_d
    sizes = [int(np.prod(v.shape)) for v in model.base_variables]
    np.testing.assert_allclose(
        grad_lambdas.numpy(), np.add.reduceat(u, np.cumsum([0] + sizes[:-1])), rtol=1e-5
    )
    # A file of this version (three variables) loads as it was saved.
    model.load_own_variables({"0": theta_d * 2, "1": lambdas, "2": theta_0})
    np.testing.assert_array_equal(model.theta_d.numpy(), theta_d * 2)
