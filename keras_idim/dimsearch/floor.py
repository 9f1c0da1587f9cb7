"""The chance floor: what a constant predictor scores on the monitored data.

A threshold that a constant prediction already reaches says nothing about
the model, so the search computes this floor before any run and refuses a
threshold that does not clear it.

- Accuracy-like metrics (`accuracy`, `sparse_categorical_accuracy`,
  `categorical_accuracy`, `binary_accuracy`): the model always predicts the
  most frequent class of the training labels.
- MSE/MAE-like metrics or losses (`mse`, `mae`, `root_mean_squared_error`):
  it always predicts the training labels' mean.

The value is the compiled metric itself (the search's `loss` and `metrics`,
compiled into a model that outputs the constant and evaluated on the data
that `monitor` is logged on: the validation data for a `val_` name), so that
Keras resolves a name such as `"accuracy"` as it does in the runs. Where
none of this applies (another metric, data given as a `tf.data.Dataset` or a
function, several outputs), the floor is the user's `floor=`, or `None`:
no floor is checked, and the result says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import keras
import numpy as np

from keras_idim import _compat

#: Metric (or loss) names and classes whose floor is the majority class.
MAJORITY_METRICS = frozenset(
    {
        "accuracy",
        "acc",
        "Accuracy",
        "sparse_categorical_accuracy",
        "SparseCategoricalAccuracy",
        "categorical_accuracy",
        "CategoricalAccuracy",
        "binary_accuracy",
        "BinaryAccuracy",
    }
)
#: Metric (or loss) names and classes whose floor is the training mean.
MEAN_METRICS = frozenset(
    {
        "mse",
        "mae",
        "mean_squared_error",
        "MeanSquaredError",
        "mean_absolute_error",
        "MeanAbsoluteError",
        "root_mean_squared_error",
        "RootMeanSquaredError",
    }
)


class Floor(NamedTuple):
    """The chance floor of the monitored metric.

    `value` is the floor, or `None` when none is checked; `source` says how
    it was obtained (`"given"` for the user's `floor=`), or why there is
    none.
    """

    value: float | None
    source: str


def _names(obj: Any) -> set[str]:
    """The names a metric or loss goes by: its class, function or wrapped
    function."""
    names = {type(obj).__name__}
    for candidate in (obj, getattr(obj, "fn", None), _compat.wrapped_function(obj)):
        name = getattr(candidate, "__name__", None)
        if isinstance(name, str):
            names.add(name)
    return names


def constant_kind(monitor: str, loss: Any, metrics: Sequence) -> str | None:
    """`"majority"`, `"mean"`, or `None` (no constant predictor is known
    for this metric)."""
    from keras_idim.dimsearch.metric_checks import _metric_name_and_direction

    name = monitor.removeprefix("val_")
    if name == "loss":
        try:
            obj = keras.losses.get(loss) if isinstance(loss, str) else loss
        except ValueError:
            return None
        names = _names(obj) | ({loss} if isinstance(loss, str) else set())
    else:
        specs = [m for m in metrics if _metric_name_and_direction(m)[0] == name]
        if not specs:
            return None
        spec = specs[0]
        names = {spec} if isinstance(spec, str) else set()
        try:
            names |= _names(keras.metrics.get(spec))
        except ValueError:
            pass
    if names & MAJORITY_METRICS:
        return "majority"
    if names & MEAN_METRICS:
        return "mean"
    return None


def _labels(data: Any) -> np.ndarray | None:
    """The labels of `(x, y)` or `(x, y, sample_weight)` arrays, or `None`
    for another kind of data."""
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        y = data[1]
        if isinstance(y, np.ndarray) or (
            hasattr(y, "__array__") and not isinstance(y, (dict, list, tuple))
        ):
            return np.asarray(y)
    return None


def _weights(data: Any) -> np.ndarray | None:
    """The sample weights of `(x, y, sample_weight)` arrays, or `None`."""
    if isinstance(data, (tuple, list)) and len(data) == 3:
        return np.asarray(data[2])
    return None


def _constant(kind: str, y_train: np.ndarray, width: int) -> tuple[np.ndarray, str]:
    """The constant prediction (a vector of the model's output width) and
    its description."""
    n = len(y_train)
    if kind == "mean":
        flat = y_train.reshape(n, -1).astype(np.float64)
        if flat.shape[1] != width:
            raise ValueError(f"labels of width {flat.shape[1]}, outputs {width}")
        return flat.mean(axis=0), "always predicting the training labels' mean"
    if y_train.ndim >= 2 and y_train.shape[-1] == width and width > 1:
        counts = y_train.reshape(-1, width).sum(axis=0)  # one-hot labels
        majority = int(np.argmax(counts))
    else:
        values, counts = np.unique(y_train.reshape(-1), return_counts=True)
        majority = values[int(np.argmax(counts))]
        if width == 1:  # one probability (binary)
            what = f"always predicting {majority:g}, the most frequent training label"
            return np.array([float(majority)]), what
        if float(majority) != int(majority) or not 0 <= int(majority) < width:
            raise ValueError(f"label {majority!r} is not a class of {width} outputs")
        majority = int(majority)
    return (
        np.eye(width)[majority],
        f"always predicting class {majority}, the most frequent training label",
    )


def output_shape_of(model: keras.Model) -> Any:
    """The model's output shape, or `None` where Keras cannot say (e.g. a
    subclassed model never called symbolically)."""
    try:
        return model.output_shape
    except (AttributeError, ValueError, RuntimeError):
        return None


class _Constant(keras.layers.Layer):
    """Outputs the same vector for every example."""

    def __init__(self, value: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        self.value = np.asarray(value, dtype="float32")

    def call(self, x):
        return keras.ops.zeros_like(x[:, :1]) + self.value


def chance_floor(
    *,
    train_data: Any,
    val_data: Any,
    monitor: str,
    loss: Any,
    metrics: Sequence,
    output_shape: Any,
    batch_size: int = 128,
    given: float | None = None,
) -> Floor:
    """The floor of `monitor` (see the module's text).

    Args:
        train_data: the search's training data (the labels' majority class
            or mean come from it).
        val_data: the search's validation data.
        monitor: str. The monitored name; a `val_` name is evaluated on
            `val_data`, another on `train_data`.
        loss: the search's loss.
        metrics: list. The search's metrics.
        output_shape: the model's output shape (`model.output_shape`).
        batch_size: int. The evaluation's batch size. Defaults to `128`.
        given: float or None. The user's `floor=`: used as it is.

    Returns:
        A `Floor`.
    """
    from keras_idim.dimsearch.runner import fresh_metrics

    if given is not None:
        return Floor(float(given), "given")
    kind = constant_kind(monitor, loss, metrics)
    if kind is None:
        return Floor(
            None,
            f"no constant predictor is known for `monitor={monitor!r}` (only "
            "for accuracy-like and MSE/MAE-like metrics)",
        )
    y_train = _labels(train_data)
    on_val = monitor.startswith("val_")
    y_eval = _labels(val_data if on_val else train_data)
    if y_train is None or y_eval is None:
        return Floor(
            None,
            "the data are not (x, y) arrays (a tf.data.Dataset or a function), "
            "so their labels are not read",
        )
    shape = output_shape
    if not (isinstance(shape, tuple) and len(shape) == 2 and isinstance(shape[1], int)):
        return Floor(
            None, f"the model's output shape {shape!r} is not one vector per example"
        )
    try:
        value, description = _constant(kind, y_train, shape[1])
    except ValueError as e:
        return Floor(None, f"the labels do not fit the model's outputs ({e})")
    try:  # a loss or metric that cannot take this prediction: no floor
        model = keras.Sequential([keras.Input((1,)), _Constant(value)])
        model.compile(loss=loss, metrics=fresh_metrics(metrics))
        logs = model.evaluate(
            np.zeros((len(y_eval), 1), dtype="float32"),
            y_eval,
            # weighted as the runs' logs are
            sample_weight=_weights(val_data if on_val else train_data),
            batch_size=batch_size,
            verbose=0,
            return_dict=True,
        )
    except Exception as e:
        return Floor(
            None,
            f"the constant prediction could not be evaluated "
            f"({type(e).__name__}: {str(e)[:200]})",
        )
    name = monitor.removeprefix("val_")
    if name not in logs:
        return Floor(None, f"`{name}` is not among the evaluated {sorted(logs)}")
    where = "validation" if on_val else "training"
    return Floor(float(logs[name]), f"{description}, on the {where} data")
