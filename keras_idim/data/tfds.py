"""TFDS image classification datasets: the only module that imports TFDS.

`tensorflow_datasets` is heavy to import, so `keras_idim.data` loads this
module only when a `"tfds:NAME"` spec (or `tfds_dataset`) is asked for.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_idim.data.info import DataInfo
from keras_idim.utils.exports import keras_idim_export
from keras_idim.utils.validation import (
    check_bool,
    check_name,
    check_positive_int,
    check_seed,
    received,
)

#: Where TFDS fetches prepared data first (its mirror): before a download,
#: one connection to it, with `PROBE_TIMEOUT`, tells within seconds whether
#: the machine is online, where a download would retry for minutes.
PROBE_ADDRESS = ("storage.googleapis.com", 443)
PROBE_TIMEOUT = 5.0

#: Largest shuffle buffer of a TFDS training set, in examples (the whole
#: training set of MNIST and CIFAR-10 fits, so they are shuffled uniformly).
SHUFFLE_BUFFER = 2**16


def _would_download(name: str, data_dir: str | None) -> bool:
    """Whether `tfds.load` would download `name`: it is not prepared in
    `data_dir`, and TFDS's `download_and_prepare` is its own (under
    `tfds.testing.mock_data` it is a no-op that needs no network). An
    unknown name counts as no download: `tfds.load` then says it is
    unknown."""
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception:
        return False
    method = type(builder).download_and_prepare
    mocked = getattr(method, "__module__", "").startswith("tensorflow_datasets.testing")
    return not mocked and not builder.is_prepared()


def _split_size(info: Any, split: str) -> int | None:
    """Examples in a split from the TFDS info, `None` when unknown."""
    try:
        return int(info.splits[split].num_examples)
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def _online() -> bool:
    """Whether TFDS's mirror answers, within `PROBE_TIMEOUT` seconds."""
    try:
        socket.create_connection(PROBE_ADDRESS, timeout=PROBE_TIMEOUT).close()
    except OSError:
        return False
    return True


def _folders(root: str) -> set[str]:
    """Every folder at or under `root` (empty when it does not exist)."""
    return {path for path, _, _ in os.walk(root)}


def _remove_new_empty_folders(root: str, before: set[str]) -> None:
    """Removes folders under `root` that a failed load created and left
    empty, deepest first; folders that were there before are kept."""
    for path in sorted(_folders(root) - before, key=len, reverse=True):
        try:
            os.rmdir(path)  # only if empty
        except OSError:
            pass


def _check_data_dir(data_dir: Any) -> str | None:
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise ValueError(
            "`data_dir` should be a path (str) or `None`. "
            f"{received('data_dir', data_dir)}"
        )
    return None if data_dir is None else os.fspath(data_dir)


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
        "this machine, and pass `data_dir='/copied/dir'` and "
        "`download=False` (`--data-dir /copied/dir --no-download` on the "
        "command line)."
    )


@keras_idim_export("keras_idim.data.tfds_splits")
def tfds_splits(
    name: str,
    splits: list[str],
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    as_supervised: bool = False,
) -> tuple[list[tf.data.Dataset], Any]:
    """Splits of any TFDS dataset, as `tfds.load` gives them, or a clear error.

    `tfds.load` with the checks that a d-search needs before any work: an
    unknown name or split is a `ValueError` that says so; a dataset that is
    not prepared in `data_dir` and cannot be downloaded (offline: one probe
    of TFDS's mirror answers within seconds, where a download would retry
    for minutes) is a `RuntimeError` that says how to prepare it elsewhere
    and copy it here. Folders that a failed load created are removed.
    `tfds_dataset` builds on it; text pipelines (e.g. GLUE in
    `examples/said_glue.py`) use it directly.

    Args:
        name: str. TFDS name, e.g. `"glue/mrpc"`, optionally with a version.
        splits: list of str. The splits, e.g. `["train", "validation"]`.
        data_dir: str or None. Where prepared TFDS datasets are (and
            downloads go). Defaults to `None`: TFDS's default,
            `~/tensorflow_datasets` or `$TFDS_DATA_DIR`.
        download: bool. Download and prepare the dataset when it is not in
            `data_dir`. Defaults to `True`.
        as_supervised: bool. Give `(input, label)` pairs, as `tfds.load`.
            Defaults to `False` (feature dicts).

    Returns:
        `(datasets, info)`: one unbatched `tf.data.Dataset` per split, and
        the TFDS `DatasetInfo`.
    """
    name = check_name("name", name)
    if (
        not isinstance(splits, (list, tuple))
        or not splits
        or not all(isinstance(x, str) and x for x in splits)
    ):
        raise ValueError(
            "`splits` should be a non-empty list of TFDS split names, e.g. "
            f"['train', 'validation']. {received('splits', splits)}"
        )
    data_dir = _check_data_dir(data_dir)
    download = check_bool("download", download)
    as_supervised = check_bool("as_supervised", as_supervised)
    return _load(
        name,
        list(splits),
        data_dir,
        download,
        as_supervised,
        dataset_echo=received("name", name),
        splits_echo=received("splits", list(splits)),
    )


def _load(
    name: str,
    splits: list[str],
    data_dir: str | None,
    download: bool,
    as_supervised: bool,
    *,
    dataset_echo: str,
    splits_echo: str,
) -> tuple[list[tf.data.Dataset], Any]:
    """`tfds.load` of checked arguments; errors end with the echoes of the
    caller's own arguments."""
    root = (
        data_dir
        or os.environ.get("TFDS_DATA_DIR")
        or os.path.expanduser("~/tensorflow_datasets")
    )
    before = _folders(root)
    try:
        if download and _would_download(name, data_dir) and not _online():
            raise OSError(
                f"no network: {PROBE_ADDRESS[0]} did not answer within "
                f"{PROBE_TIMEOUT:g} s (offline?)"
            )
        datasets, info = tfds.load(
            name,
            split=list(splits),
            as_supervised=as_supervised,
            with_info=True,
            data_dir=data_dir,
            download=download,
        )
    except tfds.core.DatasetNotFoundError as err:
        lines = str(err).splitlines()
        hint = " ".join([lines[0]] + [s for s in lines if s.startswith("Did you")])
        raise ValueError(
            f"Unknown TFDS dataset {name!r} ({hint}). It should be a TFDS "
            f"dataset name (see `tfds.list_builders()`). {dataset_echo}"
        ) from err
    except ValueError as err:
        if "split" not in str(err).lower():
            _remove_new_empty_folders(root, before)
            raise _download_error(name, data_dir, download, err) from err
        raise ValueError(
            f"Unknown or malformed split of the TFDS dataset {name!r}: {err} "
            f"{splits_echo}"
        ) from err
    except Exception as err:
        _remove_new_empty_folders(root, before)
        raise _download_error(name, data_dir, download, err) from err

    return datasets, info


@keras_idim_export("keras_idim.data.tfds_dataset")
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
    name = check_name("name", name)
    batch_size = check_positive_int("batch_size", batch_size)
    seed = check_seed(seed)
    train_split = check_name("train_split", train_split)
    val_split = check_name("val_split", val_split)
    data_dir = _check_data_dir(data_dir)
    download = check_bool("download", download)
    (train, val), info = _load(
        name,
        [train_split, val_split],
        data_dir,
        download,
        True,
        dataset_echo=(
            f"`dataset` should be 'tfds:NAME'. Received: `dataset='tfds:{name}'`"
        ),
        splits_echo=(
            f"Received: `train_split={train_split!r}`, `val_split={val_split!r}`"
        ),
    )
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


__all__ = ["SHUFFLE_BUFFER", "tfds_dataset", "tfds_splits"]
