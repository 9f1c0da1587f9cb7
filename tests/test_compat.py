"""keras_idim._compat: the private Keras and argparse APIs, and the backend."""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_idim import SubspaceModel, _compat, search
from keras_idim.cli import build_parser

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_idim"

#: Private names of Keras and argparse objects that keras_idim reads.
PRIVATE = re.compile(
    r"keras\.src\b|\._(flatten_layers|loss_tracker|trainable_variables|"
    r"non_trainable_variables|direction|fn|subparsers|group_actions|actions)\b"
    r"|getattr\([^)]*\"_(direction|fn)\""
)


def test_no_private_api_outside_compat():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "_compat.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert found == []


def test_each_helper_gives_what_keras_and_argparse_hold():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="inner")
    outer = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dense(1)])
    found = [id(layer) for layer in _compat.nested_layers(outer)]
    assert id(outer) not in found
    # The nested model's own Dense too, after the model that holds it.
    assert found.index(id(inner)) < found.index(id(inner.layers[0]))
    assert id(outer.layers[1]) in found
    assert _compat.metric_direction(keras.metrics.AUC()) == "up"
    assert _compat.metric_direction(keras.metrics.MeanAbsoluteError()) == "down"
    assert _compat.metric_direction(object()) is None

    def fn(y_true, y_pred):
        return y_pred

    assert _compat.wrapped_function(keras.metrics.MeanMetricWrapper(fn)) is fn
    assert _compat.wrapped_function(object()) is None

    parser = build_parser()
    search_parser = _compat.subcommand_parser(parser, "search")
    assert search_parser.prog.endswith("search")
    options = {
        o for a in _compat.parser_actions(search_parser) for o in a.option_strings
    }
    assert {"--dims", "--said", "--overwrite"} <= options

    model = SubspaceModel(
        keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]), dim=2
    )
    model.compile(optimizer="sgd", loss="mse")
    assert _compat.loss_tracker(model).name == "loss"
    assert _compat.unscale_loss_for_distribution(3.0) == 3.0  # one replica


@pytest.fixture
def jax_backend(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")


def test_another_backend_is_refused_by_name(jax_backend):
    with pytest.raises(RuntimeError, match=r"TensorFlow backend.*'jax'.*KERAS_BACKEND"):
        _compat.check_backend("a SubspaceModel")


def test_a_subspace_model_is_refused_under_another_backend(jax_backend):
    base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(RuntimeError, match="for a SubspaceModel; .*'jax'"):
        SubspaceModel(base, dim=2)


def test_a_search_is_refused_under_another_backend_before_any_work(jax_backend):
    def model_fn():
        raise AssertionError("no model is built")

    data = (np.zeros((4, 3), "float32"), np.zeros(4))
    with pytest.raises(RuntimeError, match="for a d-search; .*'jax'"):
        search(model_fn, data, data, dims=[1])


def test_import_keras_idim_under_another_backend(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_HOME": str(tmp_path)}
    code = "import keras_idim; print(keras_idim.__version__)"
    if importlib.util.find_spec("jax") is not None:
        code += (
            "\nimport keras\n"
            "base = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])\n"
            "try:\n"
            "    keras_idim.SubspaceModel(base, dim=2)\n"
            "except RuntimeError as e:\n"
            "    assert \"runs on 'jax'\" in str(e), e\n"
            "else:\n"
            "    raise AssertionError('not refused')\n"
        )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[0] == keras_idim_version()


def keras_idim_version() -> str:
    from keras_idim.version import __version__

    return __version__
