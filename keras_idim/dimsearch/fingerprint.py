"""Fingerprints of what decides a search's answer, taken at its start, so
that a results file resumes only the same problem (see `store.check_fingerprints`).

- The model: its architecture (the SHA-256 of the built model's
  `get_config()`, with the layer names Keras numbers per process replaced
  by their order; where it does not serialise, of its layer classes and
  weight shapes), D, and the SHA-256 of theta_0: the trainable weights of
  `model_fn()` built after `keras.utils.set_random_seed(seed)` with the
  first seed, as every run builds it.
- The data, beside the configuration's description (arrays are hashed
  there): a `tf.data.Dataset` by its `element_spec` and the SHA-256 of its
  first `BATCHES` batches; a callable that returns one likewise (it is
  called here, after `keras.utils.set_random_seed(seed)`); a
  `functools.partial` by its function's qualified name and its arguments
  (not called). Where two reads of the first batches differ (a dataset
  reshuffled on each iteration), or the callable cannot be called here, the
  content is not recorded and only the rest is compared.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from typing import Any

import keras
import numpy as np

from keras_idim import _compat

#: How many batches of a dataset are hashed.
BATCHES = 2


def _update_with_array(digest: Any, value: Any) -> None:
    array = np.asarray(value)
    digest.update(f"{array.dtype.str}{list(array.shape)}".encode())
    if array.dtype == object:  # strings: bytes, not pointers
        for item in array.ravel():
            digest.update(item if isinstance(item, bytes) else str(item).encode())
            digest.update(b"\0")
    else:
        digest.update(np.ascontiguousarray(array).tobytes())


def _renamed(config: Any, places: dict) -> Any:
    """A config with every string value that is a layer's name replaced."""
    if isinstance(config, dict):
        return {k: _renamed(v, places) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [_renamed(v, places) for v in config]
    if isinstance(config, str):
        return places.get(config, config)
    return config


def model_fingerprint(model: keras.Model) -> dict:
    """The architecture's SHA-256, D, and theta_0's SHA-256 of a built model."""
    layers = [model, *_compat.nested_layers(model)]
    try:
        # Keras numbers auto-generated names per process ("dense_3"); a
        # layer's place in the model is what identifies it (in values only:
        # a key such as "dropout" is no name).
        places = {layer.name: f"#layer{i}" for i, layer in enumerate(layers)}
        text = json.dumps(
            _renamed(model.get_config(), places), sort_keys=True, default=str
        )
        # An object's repr with its address ("<function f at 0x7f...>")
        # differs in every process.
        text = re.sub(r" at 0x[0-9a-fA-F]+", "", text)
        architecture = "config"
    except Exception:  # a model that does not serialise
        text = json.dumps(
            [
                [type(layer).__module__ + "." + type(layer).__qualname__]
                + [list(w.shape) for w in layer.weights]
                for layer in layers
            ]
        )
        architecture = "layer classes and weight shapes"
    theta = hashlib.sha256()
    for variable in model.trainable_variables:
        _update_with_array(theta, keras.ops.convert_to_numpy(variable))
    return {
        "architecture_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "architecture_from": architecture,
        "D": int(sum(int(np.prod(v.shape)) for v in model.trainable_variables)),
        "theta0_sha256": theta.hexdigest(),
    }


def _first_batches(dataset: Any) -> str:
    """The SHA-256 of a dataset's first `BATCHES` batches (a fresh iterator)."""
    import tensorflow as tf

    digest = hashlib.sha256()
    for batch in dataset.take(BATCHES):
        for part in tf.nest.flatten(batch, expand_composites=True):
            _update_with_array(digest, part)
    return digest.hexdigest()


def _dataset_fingerprint(read: Any) -> dict:
    """`element_spec` and the first batches' SHA-256 of `read()`'s dataset
    (None where two reads differ)."""
    first = read()
    spec = str(first.element_spec)
    content = _first_batches(first)
    if content != _first_batches(read()):
        content = None
    return {"element_spec": spec, "first_batches_sha256": content}


def _value(value: Any) -> Any:
    """A partial's argument, as JSON stable across processes."""
    import tensorflow as tf

    if value is None or isinstance(value, (bool, int, float, str)):
        return value if not isinstance(value, float) else repr(value)
    if isinstance(value, os.PathLike):
        return repr(os.fspath(value))
    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) or (
        hasattr(value, "__array__") and not isinstance(value, tf.data.Dataset)
    ):
        digest = hashlib.sha256()
        _update_with_array(digest, value)
        return {"array_sha256": digest.hexdigest()}
    if isinstance(value, tf.data.Dataset):
        return _dataset_fingerprint(lambda: value)
    if isinstance(value, functools.partial):
        return _partial(value)
    if callable(value):
        from keras_idim.dimsearch.describe import describe_object

        return describe_object(value)
    text = repr(value)
    if " at 0x" in text:  # an address, other in every process
        return type(value).__module__ + "." + type(value).__qualname__
    return text


def _partial(data: functools.partial) -> dict:
    func = data.func
    return {
        "partial": getattr(func, "__module__", "")
        + "."
        + getattr(func, "__qualname__", type(func).__qualname__),
        "args": [_value(a) for a in data.args],
        "keywords": {k: _value(v) for k, v in sorted(data.keywords.items())},
    }


def data_fingerprint(data: Any, seed: int) -> dict | None:
    """A dataset's or a data callable's fingerprint; None for arrays (the
    configuration holds their SHA-256)."""
    import tensorflow as tf

    if isinstance(data, functools.partial):
        return _partial(data)
    if isinstance(data, tf.data.Dataset):
        return _dataset_fingerprint(lambda: data)
    if callable(data):

        def read() -> Any:
            keras.utils.set_random_seed(seed)
            built = data()
            if not isinstance(built, tf.data.Dataset):
                raise TypeError(f"it returned a {type(built).__name__}")
            return built

        try:
            return _dataset_fingerprint(read)
        except Exception as e:  # e.g. data that only a worker can read
            return {"not_read": f"{type(e).__name__}: {e}"[:200]}
    return None
