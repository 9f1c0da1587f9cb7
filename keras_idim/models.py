"""The networks of Li et al. (2018): a fully connected net, LeNet, a convnet.

Each builder returns a built `keras.Model` (it starts from a `keras.Input`)
whose last layer is a softmax over `num_classes`: the outputs are
probabilities, to train with `loss="sparse_categorical_crossentropy"`.
`fc(..., output_activation=None)` has linear outputs instead, for
regression. `from_spec` turns a command line's `--model` into a builder.

Parameter counts D of the paper, 10 classes: `fc` 784-200-200-10 on MNIST
199,210 and on CIFAR-10 656,810; `lenet` on MNIST 44,426 and on CIFAR-10
62,006.
"""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import keras

from keras_idim.utils.validation import (
    check_int_tuple,
    check_positive_int,
    is_int,
    received,
)

#: Smallest height and width that `lenet` accepts: two 5x5 valid
#: convolutions, each followed by a 2x2 pooling, leave 1 x 1 at 16 x 16.
LENET_MIN_SIZE = 16
#: What `fc`'s `output_activation` accepts: class probabilities, or linear.
OUTPUT_ACTIVATIONS = ("softmax", None)


def _check_image_shape(input_shape: Any) -> tuple[int, int, int]:
    return check_int_tuple("input_shape", input_shape, length=3)


def _check_num_classes(num_classes: Any) -> int:
    if not is_int(num_classes) or num_classes < 2:
        raise ValueError(
            "`num_classes` should be an integer >= 2. "
            f"{received('num_classes', num_classes)}"
        )
    return int(num_classes)


def fc(
    input_shape: Sequence[int],
    num_classes: int,
    hidden: Sequence[int] = (200, 200),
    output_activation: str | None = "softmax",
) -> keras.Model:
    """The fully connected network of Li et al. (2018).

    Flatten, then one `Dense(h, "relu")` per entry of `hidden`, then
    `Dense(num_classes, output_activation)`. With the defaults on MNIST this
    is the paper's 784-200-200-10 network, D = 199,210 parameters (656,810
    on CIFAR-10). With `output_activation=None` the outputs are linear: a
    regression network with `num_classes` outputs (1 for one target), to
    train with `loss="mse"`.

    Args:
        input_shape: tuple. Shape of one example, without the batch axis:
            positive ints, e.g. `(28, 28, 1)`.
        num_classes: int. Units of the output layer: the number of classes,
            at least 2, for `"softmax"`; any positive number of outputs for
            `output_activation=None`.
        hidden: tuple. Width of each hidden layer, positive ints; `()` gives
            a softmax (or linear) regression. Defaults to `(200, 200)`.
        output_activation: str or None. `"softmax"` (class probabilities)
            or `None` (linear outputs). Defaults to `"softmax"`.

    Returns:
        A built `keras.Model` mapping a batch of inputs to class
        probabilities of shape (batch, num_classes), or to linear outputs
        of that shape when `output_activation` is `None`.

    Example:

    >>> model = fc(input_shape=(28, 28, 1), num_classes=10)
    >>> model.count_params()
    199210
    >>> fc((10,), 1, hidden=(8,), output_activation=None).output_shape
    (None, 1)
    """
    input_shape = check_int_tuple("input_shape", input_shape, allow_empty=False)
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(
            "`output_activation` should be 'softmax' or None. "
            f"{received('output_activation', output_activation)}"
        )
    if output_activation is None:
        num_classes = check_positive_int("num_classes", num_classes)
    else:
        num_classes = _check_num_classes(num_classes)
    hidden = check_int_tuple("hidden", hidden)
    layers = [keras.Input(shape=input_shape), keras.layers.Flatten()]
    layers += [keras.layers.Dense(h, activation="relu") for h in hidden]
    layers.append(keras.layers.Dense(num_classes, activation=output_activation))
    return keras.Sequential(layers, name="fc")


def lenet(input_shape: Sequence[int], num_classes: int) -> keras.Model:
    """LeNet as in Li et al. (2018).

    `Conv2D(6, 5, "relu")`, 2x2 max pooling, `Conv2D(16, 5, "relu")`, 2x2 max
    pooling (valid padding throughout), Flatten, `Dense(120, "relu")`,
    `Dense(84, "relu")`, `Dense(num_classes, "softmax")`. On MNIST it has
    D = 44,426 parameters, on CIFAR-10 62,006.

    Args:
        input_shape: tuple. `(height, width, channels)`, positive ints,
            height and width at least 16.
        num_classes: int. Number of classes, at least 2.

    Returns:
        A built `keras.Model` mapping a batch of images to class
        probabilities of shape (batch, num_classes).

    Example:

    >>> model = lenet(input_shape=(28, 28, 1), num_classes=10)
    >>> model.count_params()
    44426
    """
    input_shape = _check_image_shape(input_shape)
    num_classes = _check_num_classes(num_classes)
    if min(input_shape[:2]) < LENET_MIN_SIZE:
        raise ValueError(
            "`input_shape` should be at least 16 x 16 (height x width) for "
            "`lenet`: its two 5x5 valid convolutions and 2x2 poolings leave "
            "nothing of a smaller image. Use `convnet` for small images. "
            f"Received: `input_shape={input_shape!r}`"
        )
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Conv2D(6, 5, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 5, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(120, activation="relu"),
            keras.layers.Dense(84, activation="relu"),
            keras.layers.Dense(num_classes, activation="softmax"),
        ],
        name="lenet",
    )


def convnet(
    input_shape: Sequence[int],
    num_classes: int,
    filters: Sequence[int] = (16, 32),
) -> keras.Model:
    """A small convnet that also fits 8 x 8 images (e.g. `digits`).

    Per entry `f` of `filters`, `Conv2D(f, 3, padding="same", "relu")` then
    2x2 max pooling; then Flatten and `Dense(num_classes, "softmax")`. Each
    pooling halves the height and width, so they must be at least
    `2 ** len(filters)`.

    Args:
        input_shape: tuple. `(height, width, channels)`, positive ints.
        num_classes: int. Number of classes, at least 2.
        filters: tuple. Filters of each convolution, positive ints, at least
            one. Defaults to `(16, 32)`.

    Returns:
        A built `keras.Model` mapping a batch of images to class
        probabilities of shape (batch, num_classes).

    Example:

    >>> model = convnet(input_shape=(8, 8, 1), num_classes=10)
    >>> model.output_shape
    (None, 10)
    """
    input_shape = _check_image_shape(input_shape)
    num_classes = _check_num_classes(num_classes)
    filters = check_int_tuple("filters", filters, allow_empty=False)
    min_size = 2 ** len(filters)
    if min(input_shape[:2]) < min_size:
        raise ValueError(
            f"`input_shape` should be at least {min_size} x {min_size} "
            f"(height x width) for a `convnet` with {len(filters)} 2x2 "
            f"poolings (`filters={filters!r}`). Use fewer filters or larger "
            f"images. Received: `input_shape={input_shape!r}`"
        )
    layers = [keras.Input(shape=input_shape)]
    for f in filters:
        layers.append(keras.layers.Conv2D(f, 3, padding="same", activation="relu"))
        layers.append(keras.layers.MaxPooling2D(2))
    layers.append(keras.layers.Flatten())
    layers.append(keras.layers.Dense(num_classes, activation="softmax"))
    return keras.Sequential(layers, name="convnet")


#: The model builders by name.
ALL: dict[str, Callable[..., keras.Model]] = {
    "fc": fc,
    "lenet": lenet,
    "convnet": convnet,
}


def get(name: str) -> Callable[..., keras.Model]:
    """Returns the model builder for a name.

    Args:
        name: str. `"fc"`, `"lenet"` or `"convnet"` (case-insensitive).

    Returns:
        The builder, called as `builder(input_shape, num_classes, ...)`.

    Example:

    >>> get("lenet")(input_shape=(32, 32, 3), num_classes=10).count_params()
    62006
    """
    if isinstance(name, str) and name.lower() in ALL:
        return ALL[name.lower()]
    raise ValueError(
        f"Unknown `model`. Expected one of {sorted(ALL)}. {received('model', name)}"
    )


def _load_saved(path: str) -> keras.Model:
    """A saved model, uncompiled; a file Keras cannot read says why."""
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:
        raise ValueError(
            f"The saved model {path!r} could not be loaded: {type(e).__name__}: {e}"
        ) from None


def from_spec(spec: str, info: Any) -> Callable[[], keras.Model]:
    """A builder of fresh base models from a command line's `--model`.

    Args:
        spec: str. `"fc"`, `"lenet"` or `"convnet"` (case-insensitive),
            built for `info`'s inputs and outputs; or the path of a saved
            Keras model (`PATH.keras`), loaded anew (uncompiled) by each
            call: its weights become theta_0, to measure fine-tuning.
        info: DataInfo. What the model needs to know about the data: any
            object with `input_shape`, `num_classes` and, for a regression
            dataset, `task="regression"` and `num_outputs` (a
            `keras_idim.data.DataInfo`). Not used for a saved model.

    Returns:
        A function of no arguments that returns a new built `keras.Model`
        each call: a softmax classifier over `info.num_classes` classes, or
        for regression an `fc` with `info.num_outputs` linear outputs. It is
        picklable (a `functools.partial`), so Ray workers can call it.

    Raises:
        ValueError: for an unknown spec, a `.keras` file that does not
            exist, or `"lenet"`/`"convnet"` on a regression dataset.

    Example:

    >>> info = keras_idim.data.load("diabetes", arrays=True)[2]
    >>> from_spec("fc", info)().output_shape
    (None, 1)
    """
    if isinstance(spec, str) and spec.endswith(".keras"):
        if not os.path.isfile(spec):
            raise ValueError(
                f"The saved model file {spec!r} does not exist. "
                f"{received('model', spec)}"
            )
        if not zipfile.is_zipfile(spec):
            raise ValueError(
                f"The file {spec!r} is not a saved Keras model: a `.keras` file "
                "is a zip archive written by `model.save`, and this one is not "
                f"(empty, truncated, or another format). {received('model', spec)}"
            )
        return functools.partial(_load_saved, spec)
    build = get(spec)
    task = getattr(info, "task", "classification")
    if task == "classification":
        return functools.partial(build, tuple(info.input_shape), info.num_classes)
    if build is not fc:
        raise ValueError(
            f"`{spec}` builds classifiers only; for the {task} dataset "
            f"{getattr(info, 'name', '')!r} use 'fc' (linear outputs) or a "
            f"saved model. {received('model', spec)}"
        )
    return functools.partial(
        fc, tuple(info.input_shape), info.num_outputs, output_activation=None
    )


__all__ = [
    "ALL",
    "OUTPUT_ACTIVATIONS",
    "convnet",
    "fc",
    "from_spec",
    "get",
    "lenet",
]
