"""Input pipelines: scikit-learn's `digits` and `diabetes`, TFDS, arrays.

`load("digits")` and `load("diabetes")` run offline (the data ship with
scikit-learn); `load("tfds:NAME")` reads a supervised TFDS image dataset
such as `tfds:mnist` or `tfds:cifar10`, downloading it unless a prepared
copy is in `data_dir`. Images come as float32 in [0, 1] with int64 labels,
ready for `loss="sparse_categorical_crossentropy"`; `diabetes` comes as
standardised float32 features and targets, for `loss="mse"`.

`tensorflow_datasets` is imported only when TFDS data are asked for (by
`load("tfds:NAME")` or by using `tfds_dataset`), never by importing this
package. `tfds_splits` loads any TFDS dataset (text too) with the same
offline checks.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from keras_idim.data.arrays import ARRAY_SPECS, diabetes, digits, load_arrays
from keras_idim.data.info import DataInfo
from keras_idim.data.pipeline import to_dataset
from keras_idim.utils.validation import check_bool, check_positive_int, received

#: The dataset specs that `load` accepts, for error messages.
SPECS = (
    "'digits'",
    "'diabetes'",
    "'tfds:NAME' (e.g. 'tfds:mnist', 'tfds:cifar10')",
)


#: The names that import tensorflow_datasets, loaded on first use: name ->
#: its module. Each is decorated with `keras_idim_export` where it is
#: defined; tests/test_exports.py checks that this table and the decorator
#: agree.
_EXPORTS = {
    "tfds_dataset": "keras_idim.data.tfds",
    "tfds_splits": "keras_idim.data.tfds",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(
    spec: str,
    *,
    batch_size: int = 128,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    arrays: bool = False,
    download: bool = True,
) -> tuple[Any, Any, DataInfo]:
    """Training and validation datasets from a dataset spec.

    Args:
        spec: str. `"digits"` (scikit-learn's 8 x 8 digits, offline, a
            stratified 80/20 split fixed by `seed`), `"diabetes"`
            (scikit-learn's diabetes regression data, offline, a random
            80/20 split fixed by `seed`, standardised on the training part)
            or `"tfds:NAME"` (a supervised TFDS image dataset, its `train`
            and `test` splits, see `tfds_dataset`).
        batch_size: int. Examples per batch. Defaults to `128`.
        seed: int. Seed of the split (in-memory data) and of the training
            shuffle, in [0, 2**32). Defaults to `0`.
        data_dir: str or None. TFDS data directory, for `"tfds:NAME"` (not
            used by in-memory data). Defaults to `None`.
        arrays: bool. Return in-memory data (`"digits"`, `"diabetes"`) as
            `(x, y)` NumPy arrays instead of datasets, e.g. for
            `keras_idim.search`, which then shuffles each run from its own
            seed. TFDS data always come as datasets. Defaults to `False`.
        download: bool. For `"tfds:NAME"`: download and prepare the data
            when they are not in `data_dir`; `False` uses prepared data
            only. Defaults to `True`.

    Returns:
        `(train, val, info)`: the training set shuffled each epoch, both
        batched `tf.data.Dataset`s (or arrays, see `arrays`) of `(x, y)`,
        and a `DataInfo` (its `task` says classification or regression).

    Example:

    >>> train_ds, val_ds, info = load("digits", batch_size=32)
    >>> info.input_shape, info.train_size, info.val_size
    ((8, 8, 1), 1437, 360)
    """
    name = spec.strip() if isinstance(spec, str) else None
    if name in ARRAY_SPECS:
        batch_size = check_positive_int("batch_size", batch_size)
        arrays = check_bool("arrays", arrays)
        train, val, info = load_arrays(name, seed=seed)
        if arrays:
            return train, val, info
        return (
            to_dataset(train, batch_size, shuffle=True, seed=seed),
            to_dataset(val, batch_size),
            info,
        )
    if name is not None and name.startswith("tfds:"):
        tfds_name = name[len("tfds:") :].strip()
        if tfds_name:
            from keras_idim.data.tfds import tfds_dataset

            return tfds_dataset(
                tfds_name,
                batch_size=batch_size,
                seed=seed,
                data_dir=data_dir,
                download=download,
            )
    raise ValueError(
        f"`dataset` should be one of {', '.join(SPECS)}. {received('dataset', spec)}"
    )


__all__ = [
    "DataInfo",
    "diabetes",
    "digits",
    "load",
    "tfds_dataset",
    "to_dataset",
]
