"""Input pipelines: scikit-learn's `digits`, any TFDS image dataset, arrays.

`load("digits")` runs offline (the data ship with scikit-learn);
`load("tfds:NAME")` reads a supervised TFDS image dataset such as
`tfds:mnist` or `tfds:cifar10`, downloading it unless a prepared copy is in
`data_dir`. Both give batched `tf.data.Dataset`s of float32 images in
[0, 1] and int64 labels, ready for `loss="sparse_categorical_crossentropy"`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_idim.projections.base import check_positive_int

#: Largest shuffle buffer of a TFDS training set, in examples (the whole
#: training set of MNIST and CIFAR-10 fits, so they are shuffled uniformly).
SHUFFLE_BUFFER = 2**16
#: The dataset specs that `load` accepts, for error messages.
SPECS = ("'digits'", "'tfds:NAME' (e.g. 'tfds:mnist', 'tfds:cifar10')")


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a dataset.

    Args:
        name: str. The dataset spec, as `load` accepts it (`"digits"`,
            `"tfds:mnist"`).
        input_shape: tuple. Shape of one input, e.g. `(28, 28, 1)`.
        num_classes: int. Number of classes.
        train_size: int or None. Examples in the training split, `None` when
            unknown.
        val_size: int or None. Examples in the validation split, `None` when
            unknown.

    Example:

    >>> DataInfo("digits", (8, 8, 1), 10, 1437, 360).input_shape
    (8, 8, 1)
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    train_size: int | None
    val_size: int | None


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(
            f"`seed` should be an integer in [0, 2**32). Received: `seed={seed!r}`"
        )
    return seed


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` should be a bool. Received: `{name}={value!r}`")
    return value


def _check_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"`{name}` should be a non-empty string. Received: `{name}={value!r}`"
        )
    return value.strip()


def digits(
    seed: int = 0, val_fraction: float = 0.2
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
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

    seed = _check_seed(seed)
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not 0 < val_fraction < 1
    ):
        raise ValueError(
            "`val_fraction` should be a number in (0, 1). "
            f"Received: `val_fraction={val_fraction!r}`"
        )
    features, labels = load_digits(return_X_y=True)
    num_classes = len(np.unique(labels))
    num_val = math.ceil(val_fraction * len(labels))
    if min(num_val, len(labels) - num_val) < num_classes:
        raise ValueError(
            f"`val_fraction` should leave at least {num_classes} examples "
            f"(one per class) in each part of the {len(labels)} digits; it "
            f"leaves {num_val} for validation and {len(labels) - num_val} for "
            f"training. Received: `val_fraction={val_fraction!r}`"
        )
    x = (features / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    y = labels.astype(np.int64)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=val_fraction, stratify=y, random_state=seed
    )
    return (x_train, y_train), (x_val, y_val)


def to_dataset(
    data: tuple[np.ndarray, np.ndarray] | tf.data.Dataset,
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
    shuffle = _check_bool("shuffle", shuffle)
    seed = _check_seed(seed)
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


def _split_size(info: Any, split: str) -> int | None:
    """Examples in a split from the TFDS info, `None` when unknown."""
    try:
        return int(info.splits[split].num_examples)
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def _download_error(
    name: str, data_dir: str | None, download: bool, err: Exception
) -> RuntimeError:
    if data_dir is None:
        where = "the default TFDS data_dir (`~/tensorflow_datasets` or "
        where += "`$TFDS_DATA_DIR`)"
    else:
        where = f"`data_dir={data_dir!r}`"
    if download:
        what = f"and the download failed: {type(err).__name__}: {err}"
    else:
        what = f"and `download=False`: {type(err).__name__}: {err}"
    return RuntimeError(
        f"Could not load the TFDS dataset {name!r}: it is not prepared in "
        f"{where}, {what}\n"
        "To use it without internet access, prepare it on a machine with "
        f"internet access, with `tfds.load({name!r}, data_dir='/some/dir')` "
        f"or `tfds build {name} --data_dir=/some/dir`; copy that folder to "
        "this machine, and pass `data_dir='/copied/dir'` (`--data-dir "
        "/copied/dir` on the command line)."
    )


def tfds_dataset(
    name: str,
    *,
    batch_size: int = 128,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    train_split: str = "train",
    val_split: str = "test",
    download: bool = True,
) -> tuple[tf.data.Dataset, tf.data.Dataset, DataInfo]:
    """A supervised TFDS image classification dataset, ready to train on.

    Loads `name` with `tfds.load(..., as_supervised=True)`; it needs the
    supervised keys `("image", "label")` and images of a fixed shape. The
    training split is cached (as stored, e.g. uint8, to save memory),
    shuffled anew each epoch from `seed`, batched and prefetched; the
    validation split is cached, batched and prefetched. Each batch's images
    are cast to float32 and scaled to [0, 1] (integer images are divided by
    their dtype's maximum, 255 for uint8), its labels cast to int64.

    Without internet access, prepare the dataset on a machine that has it
    (`tfds.load(name, data_dir=...)` or `tfds build`), copy the folder and
    pass it as `data_dir`.

    Args:
        name: str. TFDS name, e.g. `"mnist"`, `"cifar10"`,
            `"fashion_mnist"`, optionally with a config or version
            (`"mnist:3.*.*"`).
        batch_size: int. Examples per batch. Defaults to `128`.
        seed: int. Seed of the training shuffle, in [0, 2**32). Defaults to
            `0`.
        data_dir: str or None. Where prepared TFDS datasets are (and
            downloads go). Defaults to `None`: TFDS's default,
            `~/tensorflow_datasets` or `$TFDS_DATA_DIR`.
        train_split: str. TFDS split to train on, e.g. `"train[:90%]"`.
            Defaults to `"train"`.
        val_split: str. TFDS split to validate on. Defaults to `"test"`.
        download: bool. Download and prepare the dataset when it is not in
            `data_dir`. Defaults to `True`.

    Returns:
        `(train_ds, val_ds, info)`: two batched `tf.data.Dataset`s of
        `(images, labels)` and a `DataInfo` named `"tfds:<name>"`, with the
        input shape and number of classes from the TFDS features and the
        split sizes from the TFDS info (`None` when unknown).

    Raises:
        ValueError: for bad arguments, a name that TFDS does not know, an
            unknown split, or a dataset that is not a supervised
            `(image, label)` dataset of fixed-shape images.
        RuntimeError: when the dataset is not in `data_dir` and cannot be
            downloaded or prepared.

    Example:

    >>> train_ds, val_ds, info = tfds_dataset("mnist", batch_size=64)
    >>> info.input_shape, info.num_classes
    ((28, 28, 1), 10)
    """
    name = _check_name("name", name)
    batch_size = check_positive_int("batch_size", batch_size)
    seed = _check_seed(seed)
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)):
            raise ValueError(
                "`data_dir` should be a path (str) or `None`. "
                f"Received: `data_dir={data_dir!r}`"
            )
        data_dir = os.fspath(data_dir)
    train_split = _check_name("train_split", train_split)
    val_split = _check_name("val_split", val_split)
    download = _check_bool("download", download)

    try:
        (train, val), info = tfds.load(
            name,
            split=[train_split, val_split],
            as_supervised=True,
            with_info=True,
            data_dir=data_dir,
            download=download,
        )
    except tfds.core.DatasetNotFoundError as err:
        lines = str(err).splitlines()
        hint = " ".join([lines[0]] + [s for s in lines if s.startswith("Did you")])
        raise ValueError(
            f"Unknown TFDS dataset {name!r} ({hint}). `dataset` should be "
            "'tfds:NAME' with NAME a TFDS dataset (see "
            f"`tfds.list_builders()`). Received: `dataset='tfds:{name}'`"
        ) from err
    except ValueError as err:
        if "split" not in str(err).lower():
            raise _download_error(name, data_dir, download, err) from err
        raise ValueError(
            f"Unknown or malformed split of the TFDS dataset {name!r}: {err} "
            f"Received: `train_split={train_split!r}`, "
            f"`val_split={val_split!r}`"
        ) from err
    except Exception as err:
        raise _download_error(name, data_dir, download, err) from err

    features = info.features
    keys = tuple(info.supervised_keys or ())
    if (
        keys != ("image", "label")
        or "image" not in features
        or "label" not in features
        or not hasattr(features["label"], "num_classes")
    ):
        raise ValueError(
            "`dataset` should be a supervised image classification dataset "
            "whose supervised keys are ('image', 'label'), with a class "
            f"label. The TFDS dataset {name!r} has supervised keys "
            f"{keys or None}. Received: `dataset='tfds:{name}'`"
        )
    input_shape = tuple(features["image"].shape)
    if not all(isinstance(s, int) and s > 0 for s in input_shape):
        raise ValueError(
            f"The images of the TFDS dataset {name!r} have no fixed shape "
            f"({input_shape}), so they cannot be batched as they are: resize "
            f"them first. Received: `dataset='tfds:{name}'`"
        )
    data_info = DataInfo(
        name=f"tfds:{name}",
        input_shape=input_shape,
        num_classes=int(features["label"].num_classes),
        train_size=_split_size(info, train_split),
        val_size=_split_size(info, val_split),
    )

    image_dtype = train.element_spec[0].dtype

    def prepare(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.cast(images, tf.float32)
        if image_dtype.is_integer:
            images = images / float(image_dtype.max)
        return images, tf.cast(labels, tf.int64)

    buffer = min(data_info.train_size or SHUFFLE_BUFFER, SHUFFLE_BUFFER)
    train = (
        train.cache()
        .shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    val = (
        val.cache()
        .batch(batch_size)
        .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    return train, val, data_info


def load(
    spec: str,
    *,
    batch_size: int = 128,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    arrays: bool = False,
) -> tuple[Any, Any, DataInfo]:
    """Training and validation datasets from a dataset spec.

    Args:
        spec: str. `"digits"` (scikit-learn's 8 x 8 digits, offline, a
            stratified 80/20 split fixed by `seed`) or `"tfds:NAME"` (a
            supervised TFDS image dataset, its `train` and `test` splits,
            see `tfds_dataset`).
        batch_size: int. Examples per batch. Defaults to `128`.
        seed: int. Seed of the split (digits) and of the training shuffle,
            in [0, 2**32). Defaults to `0`.
        data_dir: str or None. TFDS data directory, for `"tfds:NAME"` (not
            used by `"digits"`). Defaults to `None`.
        arrays: bool. Return in-memory data (`"digits"`) as `(x, y)` NumPy
            arrays instead of datasets, e.g. for `keras_idim.search`, which
            then shuffles each run from its own seed. TFDS data always come
            as datasets. Defaults to `False`.

    Returns:
        `(train, val, info)`: the training set shuffled each epoch, both
        batched `tf.data.Dataset`s (or arrays, see `arrays`) of float32
        inputs in [0, 1] and int64 labels, and a `DataInfo`.

    Example:

    >>> train_ds, val_ds, info = load("digits", batch_size=32)
    >>> info.input_shape, info.train_size, info.val_size
    ((8, 8, 1), 1437, 360)
    """
    if isinstance(spec, str) and spec.strip() == "digits":
        batch_size = check_positive_int("batch_size", batch_size)
        (x_train, y_train), (x_val, y_val) = digits(seed=seed)
        info = DataInfo("digits", (8, 8, 1), 10, len(x_train), len(x_val))
        if _check_bool("arrays", arrays):
            return (x_train, y_train), (x_val, y_val), info
        return (
            to_dataset((x_train, y_train), batch_size, shuffle=True, seed=seed),
            to_dataset((x_val, y_val), batch_size),
            info,
        )
    if isinstance(spec, str) and spec.strip().startswith("tfds:"):
        name = spec.strip()[len("tfds:") :].strip()
        if name:
            return tfds_dataset(
                name, batch_size=batch_size, seed=seed, data_dir=data_dir
            )
    accepted = ", ".join(SPECS)
    raise ValueError(
        f"`dataset` should be one of {accepted}. Received: `dataset={spec!r}`"
    )


__all__ = ["DataInfo", "digits", "load", "tfds_dataset", "to_dataset"]
