"""In-memory datasets that ship with scikit-learn.

`digits` (classification) and `diabetes` (regression) need no download, so
tests, examples and `keras-idim search`'s default run offline. `DataInfo`
(`keras_idim.data.info`) says what a model builder needs to know about them;
`to_dataset` and `fit_dataset` (`keras_idim.data.pipeline`) turn arrays into
`tf.data` and stay importable from here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from keras_idim.data.info import TASKS, DataInfo
from keras_idim.data.pipeline import Arrays, fit_dataset, to_dataset
from keras_idim.utils.validation import (
    check_choice,
    check_seed,
    is_number,
    received,
)

#: The in-memory datasets that `load_arrays` (and `keras_idim.data.load`) know.
ARRAY_SPECS = ("digits", "diabetes")


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


__all__ = [
    "ARRAY_SPECS",
    "TASKS",
    "Arrays",
    "DataInfo",
    "diabetes",
    "digits",
    "fit_dataset",
    "load_arrays",
    "to_dataset",
]
