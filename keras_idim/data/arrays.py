"""In-memory datasets that ship with scikit-learn, and arrays to `tf.data`.

`digits` (classification) and `diabetes` (regression) need no download, so
tests, examples and `keras-idim search`'s default run offline. `DataInfo`
says what a model builder needs to know about any dataset.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import tensorflow as tf

from keras_idim.utils.validation import (
    check_bool,
    check_choice,
    check_positive_int,
    check_seed,
    is_number,
    received,
)

#: The kinds of task a `DataInfo` describes.
TASKS = ("classification", "regression")
#: The in-memory datasets that `load_arrays` (and `keras_idim.data.load`) know.
ARRAY_SPECS = ("digits", "diabetes")

Arrays = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a dataset.

    The first five fields keep their positions, so `DataInfo(name,
    input_shape, num_classes, train_size, val_size)` describes a
    classification dataset as before.

    Args:
        name: str. The dataset spec, as `load` accepts it (`"digits"`,
            `"tfds:mnist"`).
        input_shape: tuple. Shape of one input, e.g. `(28, 28, 1)`.
        num_classes: int or None. Number of classes of a classification
            dataset; `None` for regression.
        train_size: int or None. Examples in the training split, `None` when
            unknown.
        val_size: int or None. Examples in the validation split, `None` when
            unknown.
        task: str. `"classification"` (integer labels, one probability per
            class) or `"regression"` (float targets). Defaults to
            `"classification"`.
        num_outputs: int or None. Units of the model's last layer: always
            `num_classes` for classification, the number of targets for
            regression. Defaults to `None`: `num_classes`, or 1 for
            regression.

    Example:

    >>> DataInfo("digits", (8, 8, 1), 10, 1437, 360).num_outputs
    10
    >>> DataInfo("diabetes", (10,), None, 353, 89, task="regression").num_outputs
    1
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int | None
    train_size: int | None
    val_size: int | None
    task: str = "classification"
    num_outputs: int | None = None

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        if self.task == "classification":
            if self.num_outputs not in (None, self.num_classes):
                raise ValueError(
                    "`num_outputs` should be `None` or `num_classes` for "
                    f"classification. {received('num_outputs', self.num_outputs)}"
                )
            outputs = self.num_classes
        else:
            if self.num_classes is not None:
                raise ValueError(
                    "`num_classes` should be `None` for regression. "
                    f"{received('num_classes', self.num_classes)}"
                )
            outputs = (
                1
                if self.num_outputs is None
                else check_positive_int("num_outputs", self.num_outputs)
            )
        object.__setattr__(self, "num_outputs", outputs)


def _check_val_fraction(val_fraction: Any) -> float:
    if not is_number(val_fraction) or not 0 < val_fraction < 1:
        raise ValueError(
            "`val_fraction` should be a number in (0, 1). "
            f"{received('val_fraction', val_fraction)}"
        )
    return float(val_fraction)


def digits(seed: int = 0, val_fraction: float = 0.2) -> tuple[Arrays, Arrays]:
    """scikit-learn's bundled 8 x 8 digits, split into train and validation.

    1,797 grey-level images of the digits 0-9 that ship with scikit-learn (no
    download), scaled from [0, 16] to [0, 1]. The split is stratified (each
    class keeps its proportion in both parts) and fixed by `seed`.

    Args:
        seed: int. `random_state` of the split, in [0, 2**32). Defaults to
            `0`.
        val_fraction: float. Fraction of the examples held out for
            validation, in (0, 1), leaving at least one example per class in
            each part. Defaults to `0.2`.

    Returns:
        `((x_train, y_train), (x_val, y_val))`: float32 images of shape
        (N, 8, 8, 1) in [0, 1] and int64 labels of shape (N,).

    Example:

    >>> (x_train, y_train), (x_val, y_val) = digits(seed=0)
    >>> x_train.shape, x_val.shape
    ((1437, 8, 8, 1), (360, 8, 8, 1))
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    seed = check_seed(seed)
    val_fraction = _check_val_fraction(val_fraction)
    features, labels = load_digits(return_X_y=True)
    num_classes = len(np.unique(labels))
    num_val = math.ceil(val_fraction * len(labels))
    if min(num_val, len(labels) - num_val) < num_classes:
        raise ValueError(
            f"`val_fraction` should leave at least {num_classes} examples "
            f"(one per class) in each part of the {len(labels)} digits; it "
            f"leaves {num_val} for validation and {len(labels) - num_val} for "
            f"training. {received('val_fraction', val_fraction)}"
        )
    x = (features / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    y = labels.astype(np.int64)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=val_fraction, stratify=y, random_state=seed
    )
    return (x_train, y_train), (x_val, y_val)


def diabetes(seed: int = 0, val_fraction: float = 0.2) -> tuple[Arrays, Arrays]:
    """scikit-learn's bundled diabetes data: a small regression problem.

    442 patients, 10 features each (age, sex, body mass index, blood
    pressure, six blood serum measurements), and a measure of disease
    progression one year later; shipped with scikit-learn (no download). The
    split is random and fixed by `seed`. Features and targets are both
    standardised with the mean and standard deviation of the training split
    only (nothing of the validation split leaks into them): the training
    targets have mean 0 and standard deviation 1, so predicting 0 gives a
    training mean squared error of 1, and `1 - mse` is the R^2 score.

    Args:
        seed: int. `random_state` of the split, in [0, 2**32). Defaults to
            `0`.
        val_fraction: float. Fraction of the examples held out for
            validation, in (0, 1), leaving at least two examples in each
            part. Defaults to `0.2`.

    Returns:
        `((x_train, y_train), (x_val, y_val))`: float32 features of shape
        (N, 10) and float32 targets of shape (N,), for `loss="mse"`.

    Example:

    >>> (x_train, y_train), (x_val, y_val) = diabetes(seed=0)
    >>> x_train.shape, x_val.shape
    ((353, 10), (89, 10))
    """
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    seed = check_seed(seed)
    val_fraction = _check_val_fraction(val_fraction)
    features, targets = load_diabetes(return_X_y=True, scaled=False)
    num_val = math.ceil(val_fraction * len(targets))
    if min(num_val, len(targets) - num_val) < 2:
        raise ValueError(
            "`val_fraction` should leave at least 2 examples in each part of "
            f"the {len(targets)} diabetes examples; it leaves {num_val} for "
            f"validation and {len(targets) - num_val} for training. "
            f"{received('val_fraction', val_fraction)}"
        )
    x_train, x_val, y_train, y_val = train_test_split(
        features, targets, test_size=val_fraction, random_state=seed
    )
    x_mean, x_std = x_train.mean(axis=0), x_train.std(axis=0)
    y_mean, y_std = y_train.mean(), y_train.std()

    def scaled(a: np.ndarray, mean: Any, std: Any) -> np.ndarray:
        return ((a - mean) / std).astype(np.float32)

    return (
        (scaled(x_train, x_mean, x_std), scaled(y_train, y_mean, y_std)),
        (scaled(x_val, x_mean, x_std), scaled(y_val, y_mean, y_std)),
    )


def load_arrays(name: str, seed: int = 0) -> tuple[Arrays, Arrays, DataInfo]:
    """An in-memory dataset by name, as arrays, with its `DataInfo`.

    Args:
        name: str. `"digits"` (classification, see `digits`) or `"diabetes"`
            (regression, see `diabetes`), with the default 80/20 split.
        seed: int. Seed of the split, in [0, 2**32). Defaults to `0`.

    Returns:
        `((x_train, y_train), (x_val, y_val), info)`.

    Example:

    >>> _, _, info = load_arrays("diabetes")
    >>> info.task, info.input_shape, info.num_outputs
    ('regression', (10,), 1)
    """
    name = check_choice("name", name, ARRAY_SPECS)
    if name == "digits":
        train, val = digits(seed=seed)
        info = DataInfo("digits", (8, 8, 1), 10, len(train[0]), len(val[0]))
    else:
        train, val = diabetes(seed=seed)
        info = DataInfo(
            "diabetes", (10,), None, len(train[0]), len(val[0]), task="regression"
        )
    return train, val, info


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


__all__ = [
    "ARRAY_SPECS",
    "DataInfo",
    "diabetes",
    "digits",
    "fit_dataset",
    "load_arrays",
    "to_dataset",
]
