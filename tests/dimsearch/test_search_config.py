"""`SearchConfig`: the checked settings of a search, its stored description
(the same dict, in the same order, as `search` stored before it existed) and
its hash, and the `Recipe` it builds."""

import dataclasses
import functools
import json

import keras
import numpy as np
import pytest

from keras_idim.dimsearch import config as cfg
from keras_idim.dimsearch import describe, metric_checks, store
from keras_idim.dimsearch.runner import InProcessRunner
from keras_idim.dimsearch.search_config import SearchConfig


def _model(width=16):
    inp = keras.Input((8,))
    h = keras.layers.Dense(width, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(3, activation="softmax", name="head")(h)
    return keras.Model(inp, out)


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype("float32")
    y = rng.integers(0, 3, size=40)
    return (x, y), (x[:20], y[:20])


def _built_data():
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(_data()[0]).batch(8)


def _stored_config(model_fn, train, val, **kw):
    """The configuration as `search` built it by hand before `SearchConfig`
    (the same keys, order and values), from the same arguments."""
    get = {
        "name": None,
        "projection": "fastfood",
        "structure_aware": False,
        "space": None,
        "fraction": 0.9,
        "baseline": None,
        "dims": "auto",
        "seeds": (0,),
        "epochs": 10,
        "batch_size": 32,
        "optimizer": "adam",
        "learning_rate": "auto",
        "baseline_learning_rate": "auto",
        "said_learning_rate": None,
        "loss": "sparse_categorical_crossentropy",
        "metrics": None,
        "monitor": "val_accuracy",
        "mode": "auto",
        "threshold": None,
        "callbacks": None,
        "method": "subspace",
        "lora_targets": None,
        "lora_train": None,
        "tolerance": 0.1,
        "start_dim": 10,
        "max_dim": None,
        "threshold_rule": "baseline",
        "floor": None,
        **kw,
    }
    metrics = metric_checks.check_metrics(get["metrics"])
    callbacks = cfg.check_callbacks(get["callbacks"])
    floor, threshold = get["floor"], get["threshold"]
    config = {
        "name": get["name"],
        "model_fn": describe.describe_object(model_fn),
        "train_data": describe.describe_data(train),
        "val_data": describe.describe_data(val),
        "projection": get["projection"],
        "structure_aware": get["structure_aware"],
        "space": cfg.check_space(get["space"], get["method"]).spec,
        "fraction": float(get["fraction"]),
        "baseline": None if get["baseline"] is None else float(get["baseline"]),
        "dims": get["dims"],
        "seeds": list(get["seeds"]),
        "epochs": get["epochs"],
        "batch_size": get["batch_size"],
        "optimizer": cfg.optimizer_factory(get["optimizer"], get["learning_rate"])[1],
        "baseline_optimizer": cfg.optimizer_factory(
            get["optimizer"], get["baseline_learning_rate"]
        )[1],
        "said_learning_rate": get["said_learning_rate"],
        "loss": describe.describe_object(get["loss"]),
        "metrics": [describe.describe_object(m) for m in metrics],
        "monitor": get["monitor"],
        "mode": metric_checks.resolve_mode(
            get["mode"], get["monitor"], metrics, callbacks
        ),
        "threshold": None if threshold is None else float(threshold),
        "callbacks": describe.describe_callbacks(callbacks),
        "method": get["method"],
        "lora_targets": describe.describe_selector(get["lora_targets"]),
        "lora_train": describe.describe_selector(get["lora_train"]),
        "tolerance": float(get["tolerance"]),
        "start_dim": get["start_dim"],
        "max_dim": get["max_dim"],
        "threshold_rule": get["threshold_rule"],
        "floor": None if floor is None else float(floor),
    }
    return json.loads(json.dumps(config, default=str))


ARGUMENT_SETS = {
    "defaults": {},
    "lora space": dict(
        space="lora:2",
        projection="dense",
        seeds=(0, 1),
        dims=[10, 20],
        learning_rate=0.01,
        optimizer="sgd",
        name="tiny",
        callbacks=[keras.callbacks.TerminateOnNaN()],
        metrics=["accuracy"],
    ),
    "method lora": dict(
        method="lora",
        lora_targets=["hidden"],
        lora_train=["head"],
        start_dim=1,
        baseline_learning_rate=None,
    ),
    "threshold": dict(
        threshold=0.5, mode="max", floor=0.1, tolerance=0.2, max_dim=100, epochs=3
    ),
    "above floor": dict(
        threshold_rule="above_floor", fraction=0.8, baseline=0.95, projection="sparse"
    ),
    "val_loss": dict(
        monitor="val_loss", metrics=[keras.metrics.SparseCategoricalAccuracy()]
    ),
    "said": dict(
        structure_aware=True,
        said_learning_rate=0.1,
        dims=[50, 100],
        callbacks=lambda dim, seed: [],
    ),
}


@pytest.mark.parametrize("key", sorted(ARGUMENT_SETS))
def test_description_is_the_dict_search_stored(key):
    train, val = _data()
    kw = ARGUMENT_SETS[key]
    config = SearchConfig.from_arguments(_model, train, val, **kw)
    old = _stored_config(_model, train, val, **kw)
    # Same keys in the same order (the results file keeps it), same values.
    assert json.dumps(config.description()) == json.dumps(old)
    assert config.hash() == store.config_hash(old)


def test_description_of_callables():
    model_fn = functools.partial(_model, 12)
    config = SearchConfig.from_arguments(model_fn, _built_data, _built_data)
    old = _stored_config(model_fn, _built_data, _built_data)
    assert json.dumps(config.description(), sort_keys=True) == json.dumps(
        old, sort_keys=True
    )
    assert config.description()["train_data"] == {"built_by": f"{__name__}._built_data"}
    assert config.hash() == store.config_hash(old)


def test_checked_values_and_recipe():
    train, val = _data()
    config = SearchConfig.from_arguments(
        _model, train, val, seeds=[2, 1], monitor="val_loss", verbose=2, workers=1
    )
    assert config.seeds == (2, 1) and config.mode == "min"
    assert config.projection == "fastfood" and config.space.spec == "weights"
    assert isinstance(config.runner, InProcessRunner)
    recipe = config.recipe()
    assert recipe.model_fn is _model and recipe.train_data is train
    assert recipe.fit_verbose == 2 and recipe.mode == "min"
    assert recipe.learning_rate == "auto" and recipe.space is config.space
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3


def test_refusals_keep_searchs_messages():
    train, val = _data()
    with pytest.raises(TypeError):
        SearchConfig.from_arguments(_model, train, val, epoch=3)
    with pytest.raises(ValueError, match="`threshold` or `baseline`, not both"):
        SearchConfig.from_arguments(_model, train, val, threshold=0.5, baseline=0.9)
    with pytest.raises(ValueError, match="`model_fn` should be a function"):
        SearchConfig.from_arguments(_model(), train, val)
