"""The checks of a search's metrics and monitor: what the runs will log,
and which way `monitor` goes (`mode`), decided as Keras' own callbacks
decide it, before any run trains."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import keras

from keras_idim import _compat
from keras_idim.objective import MODE_OF_DIRECTION, Objective
from keras_idim.utils.validation import received

#: What `mode` accepts.
MODE_CHOICES = ("auto", "max", "min")


def check_metrics(metrics: Any) -> list:
    """The metrics to compile: names, Metric objects or functions."""
    if metrics is None:
        return ["accuracy"]
    if isinstance(metrics, (str, keras.metrics.Metric)) or (
        callable(metrics) and not isinstance(metrics, (list, tuple))
    ):
        metrics = [metrics]
    ok = isinstance(metrics, (list, tuple)) and all(
        isinstance(m, (str, keras.metrics.Metric)) or callable(m) for m in metrics
    )
    if not ok:
        raise ValueError(
            "`metrics` should be a list of Keras metrics: names such as "
            "'accuracy' or 'mae', keras.metrics.Metric objects, or functions "
            f"`(y_true, y_pred) -> values`. {received('metrics', metrics)}"
        )
    return list(metrics)


def _metric_name_and_direction(spec: Any) -> tuple[str, str | None]:
    """The logged name of a compiled metric and its direction ("up"/"down"),
    found as Keras' own compile and monitor callbacks find them."""
    if isinstance(spec, str) and spec.lower() in ("accuracy", "acc"):
        return spec, "up"  # Keras picks a binary/categorical accuracy
    try:
        metric = keras.metrics.get(spec)
    except ValueError:
        return (spec if isinstance(spec, str) else str(spec)), None
    if isinstance(spec, str):
        name = spec
    elif isinstance(metric, keras.metrics.Metric):
        name = metric.name
    else:
        name = getattr(metric, "__name__", str(metric))
    if not isinstance(metric, keras.metrics.Metric):
        metric = keras.metrics.MeanMetricWrapper(metric)
    return name, _compat.metric_direction(metric)


def resolve_mode(
    mode: Any, monitor: str, metrics: Sequence, callbacks: Any = None
) -> str:
    """`"max"` or `"min"`: `mode` itself, or for `"auto"` the direction that
    Keras' own callbacks (e.g. EarlyStopping) would give `monitor`.

    A loss is minimised; a metric takes the direction Keras registers for
    it (accuracy, AUC, F1 up; MAE, MSE, cross-entropy down).

    Raises:
        ValueError: `mode` is not one of `MODE_CHOICES`, or `"auto"` cannot
            tell for this `monitor`.
    """
    if mode not in MODE_CHOICES:
        raise ValueError(
            f"`mode` should be one of 'auto', 'max', 'min'. {received('mode', mode)}"
        )
    if mode != "auto":
        return mode
    known = keras_mode(monitor, metrics)
    if known is not None:
        return known
    refuse_unlogged(
        monitor, metrics, callbacks, "; so `mode='auto'` cannot tell its direction"
    )
    raise ValueError(
        f"`mode='auto'` cannot tell whether `monitor={monitor!r}` should be "
        "maximised or minimised (it is not the loss, nor a compiled metric with "
        "a known direction). Pass `mode='max'` or `mode='min'`."
    )


def keras_mode(monitor: str, metrics: Sequence) -> str | None:
    """The direction Keras gives `monitor` (`"max"` or `"min"`), as its own
    callbacks read it: the loss is minimised, a compiled metric goes the
    way it registers; `None` where that is not known."""
    name = monitor.removeprefix("val_")
    if name == "loss":
        return "min"
    for spec in metrics:
        metric_name, direction = _metric_name_and_direction(spec)
        if metric_name == name and direction in MODE_OF_DIRECTION:
            return MODE_OF_DIRECTION[direction]
    return None


def _logged_metric_name(spec: Any) -> str | None:
    """The name Keras logs a compiled metric under, or None where it cannot
    be told for sure before training (the search then does not refuse)."""
    if isinstance(spec, str):
        if spec.lower() in ("accuracy", "acc"):
            return spec
        try:
            keras.metrics.get(spec)
        except ValueError:
            return None  # compile itself will say what is wrong
        return spec
    if isinstance(spec, keras.metrics.Metric):
        return spec.name
    name = getattr(spec, "__name__", None)
    if (
        not hasattr(spec, "name")
        and isinstance(name, str)
        and re.fullmatch(r"[a-z_][a-z0-9_]*", name)
    ):
        return name  # a plain function; Keras snake-cases a camel-case name
    return None


def logged_names(metrics: Sequence) -> list[str] | None:
    """Every name a run's training logs hold (the loss and each compiled
    metric, and each with `val_`), sorted; None if one metric's name cannot
    be told, or two share one (Keras would number the second)."""
    names = [_logged_metric_name(m) for m in metrics]
    if None in names or len(set(names)) != len(names) or "loss" in names:
        return None
    base = ["loss", *names]
    return sorted(base + ["val_" + n for n in base])


def refuse_unlogged(
    monitor: str, metrics: Sequence, callbacks: Any = None, why: str = ""
) -> None:
    """Refuses a `monitor` that the runs will not log (see `logged_names`;
    nothing is refused where the names cannot be known, or where user
    callbacks may add logs), listing the names; `why` is added after them."""
    names = logged_names(metrics)
    if names is not None and not callbacks and monitor not in names:
        raise ValueError(
            f"`monitor={monitor!r}` is not among the names the runs will log "
            f"(the loss and each compiled metric, also with 'val_'): {names}"
            f"{why}. Pass one of them, or add the metric to `metrics`. "
            f"Received: `monitor={monitor!r}`"
        )


def check_monitor(
    monitor: str, mode: str, metrics: Sequence, callbacks: Any = None
) -> None:
    """Refuses, before any training, a `monitor` that the runs will not log,
    and a `mode` that contradicts the direction Keras gives `monitor`.

    The logged names are the loss and the compiled metrics, each also with
    `val_`. Nothing is refused where they cannot be known: a metric whose
    logged name cannot be told, or user callbacks (which may add logs).
    `mode` is `"max"` or `"min"` (after `resolve_mode`, or the user's).
    """
    refuse_unlogged(monitor, metrics, callbacks)
    known = keras_mode(monitor, metrics)
    if known is not None and mode != known:
        way = "minimised" if Objective(monitor, known).minimize else "maximised"
        direction = "down" if known == "min" else "up"
        raise ValueError(
            f"`mode={mode!r}` contradicts `monitor={monitor!r}`: Keras registers "
            f"it as {way} (its direction is {direction!r}), so the search would "
            "judge every run backwards. Pass `mode='auto'` or "
            f"`mode={known!r}`. "
            f"Received: `monitor={monitor!r}`, `mode={mode!r}`"
        )
