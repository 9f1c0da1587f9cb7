"""Callbacks: stop a run at the threshold, and watch a run for divergence."""

from __future__ import annotations

import math
import warnings
from typing import Any

import keras

from keras_idim.objective import MODES, Objective
from keras_idim.utils.exports import keras_idim_export
from keras_idim.utils.validation import check_choice, is_number, received


@keras_idim_export("keras_idim.callbacks.ThresholdStop")
class ThresholdStop(keras.callbacks.Callback):
    """Stops training as soon as a monitored metric reaches a target.

    In a d-search, a run that reaches the threshold (e.g. 90 % of the
    baseline accuracy) has answered its question: stopping it there makes
    passing runs cheap. The metric is read at the end of each epoch (where
    validation metrics exist). State resets in `on_train_begin`, so one
    instance serves several `fit` calls.

    Attributes set by training: `reached` (bool), `stopped_epoch` (the
    0-based epoch that reached the target, or `None`) and `best` (the best
    value seen, or `None`).

    Args:
        monitor: str. The metric to watch, as in the `fit` logs. Defaults to
            `"val_accuracy"`.
        target: float. The value to reach (required).
        mode: str. `"max"`: reached when `value >= target`; `"min"`: when
            `value <= target`. Defaults to `"max"`.

    Example:

    >>> stop = ThresholdStop(monitor="val_accuracy", target=0.88)
    >>> # model.fit(x, y, validation_data=(xv, yv), callbacks=[stop])
    """

    def __init__(
        self,
        monitor: str = "val_accuracy",
        target: float | None = None,
        mode: str = "max",
    ):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(
                "`monitor` should be the name of a metric in the logs. "
                f"{received('monitor', monitor)}"
            )
        if not is_number(target):
            raise ValueError(
                f"`target` should be a finite number. {received('target', target)}"
            )
        self.monitor = monitor
        self.target = float(target)
        self.mode = check_choice("mode", mode, MODES)
        self.objective = Objective(monitor, self.mode)
        """`Objective(monitor, mode)`: which way the metric improves."""
        self._reset()

    def _reset(self) -> None:
        self.reached = False
        self.stopped_epoch: int | None = None
        self.best: float | None = None
        self._warned = False

    def _better(self, a: float, b: float) -> bool:
        return self.objective.reaches(a, b)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            if not self._warned:
                warnings.warn(
                    f"ThresholdStop: the metric {self.monitor!r} is not in the "
                    f"logs. Available keys: {sorted(logs)}. Pass validation "
                    "data to `fit`, or set `monitor` to one of those.",
                    stacklevel=2,
                )
                self._warned = True
            return
        value = float(value)
        if math.isfinite(value) and (
            self.best is None or self._better(value, self.best)
        ):
            self.best = value
        if math.isfinite(value) and self._better(value, self.target):
            self.reached = True
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def get_config(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "target": self.target, "mode": self.mode}


class DivergenceStop(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite.

    Unlike `keras.callbacks.TerminateOnNaN`, it records what happened:
    `diverged` (bool) and `diverged_at` (`(epoch, batch)` or `None`), reset
    in `on_train_begin`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.diverged = False
        self.diverged_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.diverged = False
        self.diverged_at = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = True
            self.diverged_at = (self._epoch, batch)
            self.model.stop_training = True
