"""The checks of a search's data, made before any run trains: each refuses
what would make every run fail or learn nothing (an endless or empty
dataset, NaN in the arrays, an unbatched dataset, labels that are not class
indices), naming the argument and echoing the value."""

from __future__ import annotations

from typing import Any

import keras


def as_dataset(
    data: Any, batch_size: int, *, shuffle: bool, arg: str = "data", seed: int = 0
):
    """A batched dataset from arrays, a dataset, or a callable returning one.

    A callable is called here, so that a TFDS or tokenising pipeline is
    built where the run trains (also in a Ray worker).

    A dataset whose cardinality says it never ends (`.repeat()`) or holds
    nothing (`.take(0)`) is refused: an epoch over it would never end, or
    train nothing. An unknown cardinality is accepted.
    """
    from keras_idim.data.arrays import fit_dataset

    if callable(data):
        built = data()
        if not hasattr(built, "element_spec"):
            raise ValueError(
                f"`{arg}` is a callable, so it should return a tf.data.Dataset. "
                f"It returned: {type(built).__name__}"
            )
        check_cardinality(arg, built, " (returned by the callable)")
        return built
    try:
        dataset = fit_dataset(data, batch_size, shuffle=shuffle, seed=seed)
    except ValueError as e:
        raise ValueError(str(e).replace("`data`", f"`{arg}`")) from None
    check_cardinality(arg, dataset)
    return dataset


def check_cardinality(arg: str, dataset: Any, where: str = "") -> None:
    """Refuses a `tf.data.Dataset` that is infinite or empty (known from its
    cardinality: `tf.data.INFINITE_CARDINALITY`, or 0)."""
    import tensorflow as tf

    cardinality = int(dataset.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            f"`{arg}` is an infinite tf.data.Dataset{where} (cardinality "
            "tf.data.INFINITE_CARDINALITY, e.g. from `.repeat()`): an epoch "
            "over it would never end. Pass a finite one, e.g. `ds.take(n)` for "
            f"n batches an epoch. Received: `{arg}={dataset!r}`"
        )
    if cardinality == 0:
        raise ValueError(
            f"`{arg}` is empty{where}: a tf.data.Dataset of cardinality 0 "
            f"(e.g. from `.take(0)`) has nothing to train or validate on. "
            f"Received: `{arg}={dataset!r}`"
        )


def named_arrays(data: Any) -> list[tuple[str, Any]]:
    """The arrays of `(x, y)` or `(x, y, sample_weight)` data with their
    names (`x`, `x['ids']`, `x[1]`, `y`, `sample_weight`), for messages."""
    if not isinstance(data, (tuple, list)):
        return []
    named = []
    for name, part in zip(("x", "y", "sample_weight"), data):
        if isinstance(part, dict):
            named += [(f"{name}[{k!r}]", v) for k, v in part.items()]
        elif isinstance(part, (list, tuple)):
            named += [(f"{name}[{i}]", v) for i, v in enumerate(part)]
        else:
            named.append((name, part))
    return named


def check_finite(arg: str, data: Any) -> None:
    """Refuses arrays with a NaN or an infinity in them: in `x` (each
    input of a dict or list), `y` or the sample weights.

    One NaN pixel would otherwise pass unseen through a ReLU into a baseline
    at chance and make every subspace run diverge. Only numeric arrays are
    checked (strings or objects are left to the model).
    """
    import numpy as np

    for name, array in named_arrays(data):
        if not isinstance(array, np.ndarray) or not (
            np.issubdtype(array.dtype, np.floating)
            or np.issubdtype(array.dtype, np.complexfloating)
        ):
            continue  # integers and bools are always finite
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise ValueError(
                f"`{arg}` holds {bad} non-finite value{'s' if bad > 1 else ''} "
                f"(NaN or infinity) in its {name} array (shape {array.shape}): "
                "a run on it would diverge or learn nothing. Clean or impute "
                f"them first. Received: `{arg}` with {name}.dtype={array.dtype}"
            )


def check_batched(arg: str, data: Any, model: keras.Model) -> None:
    """Refuses a `tf.data.Dataset` whose elements have no batch dimension
    (`Dataset.from_tensor_slices((x, y))` without `.batch`).

    Keras would take each example's first axis as the batch and fail deep
    in the model. It is decided only where it is sure: every input of the
    elements' `x` (one tensor, or a dict or tuple matched to the model's
    inputs by name or order) has a known rank exactly one less than the
    model's input it feeds, whose first axis is the batch. Anything else
    (a model without symbolic inputs, an unknown rank, inputs that do not
    match) is left to Keras.
    """
    import tensorflow as tf

    if not isinstance(data, tf.data.Dataset):
        return
    spec = data.element_spec
    x_spec = spec[0] if isinstance(spec, tuple) and spec else spec
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return
    if not inputs:
        return
    if isinstance(x_spec, dict):
        names = [getattr(t, "name", None) for t in inputs]
        pairs = [(x_spec.get(n), t) for n, t in zip(names, inputs)]
    elif isinstance(x_spec, tuple):
        if len(x_spec) != len(inputs):
            return
        pairs = list(zip(x_spec, inputs))
    else:
        pairs = [(x_spec, inputs[0])] if len(inputs) == 1 else []
    ranks = []
    for element, tensor in pairs:
        shape = getattr(element, "shape", None)
        if shape is None or shape.rank is None or tensor.shape is None:
            return
        ranks.append((shape.rank, len(tensor.shape)))
    if ranks and all(rank == wanted - 1 for rank, wanted in ranks):
        shape = getattr(pairs[0][0], "shape", None)
        raise ValueError(
            f"`{arg}` is an unbatched tf.data.Dataset: its elements' x has "
            f"shape {tuple(shape)}, the model's input {tuple(inputs[0].shape)} "
            "(with the batch axis first). Batch it, e.g. `ds.batch(128)`. "
            f"Received: `{arg}={data!r}`"
        )


def is_sparse_categorical(loss: Any) -> bool:
    """Whether `loss` takes integer class labels (sparse cross-entropy)."""
    if isinstance(loss, str):
        return loss == "sparse_categorical_crossentropy"
    return isinstance(loss, keras.losses.SparseCategoricalCrossentropy)


def check_class_labels(arg: str, data: Any, loss: Any) -> None:
    """Refuses float `y` arrays that are not class indices (a fractional
    part, or negative) under a sparse categorical loss, which would
    truncate them silently. Arrays only: a dataset is not scanned."""
    import numpy as np

    if not (isinstance(data, (tuple, list)) and len(data) >= 2):
        return
    y = data[1]
    if not is_sparse_categorical(loss) or not isinstance(y, np.ndarray):
        return
    if not np.issubdtype(y.dtype, np.number):
        return
    bad = (y < 0) | (np.floor(y) != y) if np.issubdtype(y.dtype, np.floating) else y < 0
    if np.any(bad):
        example = y[bad].flat[0].item()
        raise ValueError(
            f"`{arg}`'s y array holds values that are not class indices "
            f"(e.g. {example!r}), and the loss, sparse categorical "
            "cross-entropy, would truncate them silently. Give integer labels "
            f"0, 1, 2, ... Received: `{arg}` with y.dtype={y.dtype}, "
            f"a value {example!r}"
        )
