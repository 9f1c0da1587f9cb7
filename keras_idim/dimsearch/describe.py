"""The descriptions a results file stores of a search's parts (its data,
loss, metrics, functions and callbacks): JSON, the same in every process,
so that a resumed search can refuse a changed one."""

from __future__ import annotations

import hashlib
from typing import Any

import keras
import numpy as np


def describe_data(data: Any) -> Any:
    """A JSON description of a dataset, to detect a changed one on resume."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        return {
            "tf.data": str(data.element_spec),
            "cardinality": int(data.cardinality()),
        }
    if isinstance(data, (tuple, list)):
        return [describe_data(a) for a in data]
    if isinstance(data, dict):  # named inputs: by key, in sorted order
        return {"dict": {str(k): describe_data(data[k]) for k in sorted(data)}}
    if isinstance(data, np.ndarray) or hasattr(data, "__array__"):
        array = np.ascontiguousarray(np.asarray(data))
        return {
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
        }
    if callable(data):
        return {"built_by": describe_object(data)}
    return repr(data)


def describe_object(obj: Any) -> Any:
    """A description of a loss, metric or function, stable across processes."""
    if isinstance(obj, str):
        return obj
    if hasattr(obj, "get_config"):
        return keras.saving.serialize_keras_object(obj)
    return (
        getattr(obj, "__module__", "")
        + "."
        + getattr(obj, "__qualname__", type(obj).__qualname__)
    )


def describe_callbacks(callbacks: Any) -> Any:
    """The callbacks as stored in the configuration (None when there are none)."""
    if not callbacks:
        return None
    if callable(callbacks) and not isinstance(callbacks, list):
        return describe_object(callbacks)
    return [type(c).__module__ + "." + type(c).__qualname__ for c in callbacks]


def describe_selector(selector: Any) -> Any:
    """Layer names as they are, a predicate by its name, None as None."""
    if selector is None or isinstance(selector, list | tuple):
        return None if selector is None else list(selector)
    return describe_object(selector)
