"""Arrays to `tf.data`: the batched datasets that a run trains on.

`to_dataset` turns `(x, y)` into batches; `fit_dataset` takes every form of
arrays that `keras.Model.fit` takes (named or several inputs, sample
weights). A `tf.data.Dataset` passes through both unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from keras_idim.utils.validation import check_bool, check_positive_int, check_seed

#: `(x, y)`: two NumPy arrays with the same number of examples.
Arrays = tuple[np.ndarray, np.ndarray]


def to_dataset(
    data: Arrays | tf.data.Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Turns arrays `(x, y)` into a batched, prefetched `tf.data.Dataset`.

    A `tf.data.Dataset` is returned unchanged: as with `keras.Model.fit`, it
    is taken to be batched already.

    Args:
        data: tuple or tf.data.Dataset. `(x, y)`, two NumPy arrays with the
            same number of examples (first axis), or a batched dataset.
        batch_size: int. Examples per batch.
        shuffle: bool. Shuffle the examples anew each epoch (iteration),
            from `seed`. Defaults to `False`.
        seed: int. Seed of the shuffle, in [0, 2**32). Defaults to `0`.

    Returns:
        A `tf.data.Dataset` of `(x, y)` batches.

    Example:

    >>> x, y = np.zeros((10, 8, 8, 1), np.float32), np.zeros(10, np.int64)
    >>> [int(b[0].shape[0]) for b in to_dataset((x, y), batch_size=4)]
    [4, 4, 2]
    """
    batch_size = check_positive_int("batch_size", batch_size)
    shuffle = check_bool("shuffle", shuffle)
    seed = check_seed(seed)
    if isinstance(data, tf.data.Dataset):
        return data
    if (
        not isinstance(data, (tuple, list))
        or len(data) != 2
        or not all(isinstance(a, np.ndarray) for a in data)
    ):
        raise ValueError(
            "`data` should be a tuple `(x, y)` of two NumPy arrays or a "
            f"`tf.data.Dataset`. Received: `data` of type {type(data).__name__}"
            + (
                f" holding {[type(a).__name__ for a in data]}"
                if isinstance(data, (tuple, list))
                else ""
            )
        )
    x, y = data
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y) or len(x) == 0:
        raise ValueError(
            "`data` should be `(x, y)` with the same positive number of "
            "examples (first axis) in `x` and `y`. Received: `data` with "
            f"x.shape={x.shape} and y.shape={y.shape}"
        )
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _array_leaves(part: Any) -> list[np.ndarray] | None:
    """The arrays of one part of `(x, y, sample_weight)`: a NumPy array, a
    dict of them (named inputs, string keys) or a list or tuple of them (one
    per input); `None` for anything else."""
    if isinstance(part, np.ndarray):
        return [part]
    if isinstance(part, dict) and part and all(isinstance(k, str) for k in part):
        values = list(part.values())
    elif isinstance(part, (list, tuple)) and part:
        values = list(part)
    else:
        return None
    if all(isinstance(v, np.ndarray) for v in values):
        return values
    return None


def _slices(part: Any) -> Any:
    """One part as `tf.data.Dataset.from_tensor_slices` takes it (a list of
    inputs becomes a tuple, which Keras feeds to the inputs in order)."""
    return tuple(part) if isinstance(part, list) else part


def fit_dataset(
    data: Any,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Arrays in the forms `keras.Model.fit` takes, as a batched dataset.

    `(x, y)` or `(x, y, sample_weight)`, where `x` is a NumPy array, a dict
    of arrays (a model with named inputs, e.g. keras-hub's) or a list or
    tuple of arrays (a model with several inputs, in order), and `y` an
    array (or, for several outputs, a dict or list of them). Every array
    has the same positive number of examples (first axis). Plain `(x, y)`
    arrays give exactly `to_dataset`'s batches; a `tf.data.Dataset` is
    returned unchanged.

    Args:
        data: tuple or tf.data.Dataset.
        batch_size: int. Examples per batch.
        shuffle: bool. Shuffle the examples anew each epoch, from `seed`.
            Defaults to `False`.
        seed: int. Seed of the shuffle, in [0, 2**32). Defaults to `0`.

    Returns:
        A `tf.data.Dataset` of `(x, y)` or `(x, y, sample_weight)` batches.

    Example:

    >>> x = {"a": np.zeros((10, 3)), "b": np.zeros((10, 2))}
    >>> ds = fit_dataset((x, np.zeros(10), np.ones(10)), batch_size=4)
    """
    if isinstance(data, tf.data.Dataset):
        return data
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(a, np.ndarray) for a in data)
    ):
        return to_dataset(data, batch_size, shuffle=shuffle, seed=seed)
    batch_size = check_positive_int("batch_size", batch_size)
    shuffle = check_bool("shuffle", shuffle)
    seed = check_seed(seed)
    names = ("x", "y", "sample_weight")
    leaves = (
        [_array_leaves(part) for part in data]
        if isinstance(data, (tuple, list)) and len(data) in (2, 3)
        else None
    )
    if (
        leaves is None
        or any(part is None for part in leaves)
        or (len(data) == 3 and not isinstance(data[2], np.ndarray))
    ):
        kinds = (
            [type(a).__name__ for a in data]
            if isinstance(data, (tuple, list))
            else None
        )
        raise ValueError(
            "`data` should be `(x, y)` or `(x, y, sample_weight)` of NumPy "
            "arrays (x may be a dict of arrays, for named inputs, or a list "
            "of arrays, one per input; sample_weight one array), or a "
            f"`tf.data.Dataset`. Received: `data` of type {type(data).__name__}"
            + (f" holding {kinds}" if kinds is not None else "")
        )
    sizes = {
        f"{name}{'' if len(part) == 1 else f'[{i}]'}": (a.shape[0] if a.ndim else None)
        for name, part in zip(names, leaves)
        for i, a in enumerate(part)
    }
    counts = set(sizes.values())
    if len(counts) != 1 or None in counts or 0 in counts:
        raise ValueError(
            "`data` should hold the same positive number of examples (first "
            "axis) in every array. Received: `data` with first axes "
            + ", ".join(f"{k}={v}" for k, v in sizes.items())
        )
    ds = tf.data.Dataset.from_tensor_slices(tuple(_slices(part) for part in data))
    if shuffle:
        ds = ds.shuffle(counts.pop(), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


__all__ = ["Arrays", "fit_dataset", "to_dataset"]
