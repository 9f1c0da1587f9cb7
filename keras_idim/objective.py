"""What a search judges a run by: a monitored value and its direction.

The one place that knows what "better" means for a metric to maximise
(accuracy) or to minimise (a loss, an error): the threshold callback, the
records, the result, the driver and the rate probes all ask an `Objective`.
Modelled on KerasTuner's `Objective(name, direction)`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from keras_idim.utils.validation import check_choice, received

#: The directions, as Keras' `mode` names them.
MODES = ("max", "min")

#: Keras' metric directions (a metric's registered `direction`) as modes.
MODE_OF_DIRECTION = {"up": "max", "down": "min"}


@dataclasses.dataclass(frozen=True)
class Objective:
    """A monitored value and the direction in which it improves.

    Args:
        monitor: str or None. The logged name (e.g. `"val_accuracy"`);
            `None` where only the direction matters.
        mode: str. `"max"` (higher is better) or `"min"` (lower is better).
            Defaults to `"max"`.

    Example:

    >>> loss = Objective("val_loss", "min")
    >>> loss.reaches(0.2, 0.25), loss.best([0.3, float("nan"), 0.2]), loss.sign
    (True, 0.2, '<=')
    """

    monitor: str | None = None
    mode: str = "max"

    def __post_init__(self) -> None:
        if self.monitor is not None and (
            not isinstance(self.monitor, str) or not self.monitor
        ):
            raise ValueError(
                "`monitor` should be the name of a metric in the logs. "
                f"{received('monitor', self.monitor)}"
            )
        check_choice("mode", self.mode, MODES)

    @property
    def minimize(self) -> bool:
        """Whether lower values are better."""
        return self.mode == "min"

    @property
    def sign(self) -> str:
        """How a value reaches a threshold: `">="` or `"<="`."""
        return "<=" if self.minimize else ">="

    @property
    def beyond(self) -> str:
        """Where a better value lies, in words: `"above"` or `"below"`."""
        return "below" if self.minimize else "above"

    def reaches(self, value: float, threshold: float) -> bool:
        """Whether `value` reaches `threshold` (ties reach it)."""
        return value <= threshold if self.minimize else value >= threshold

    def better(self, a: float, b: float) -> bool:
        """Whether `a` is strictly better than `b`."""
        return a < b if self.minimize else a > b

    def best(self, values: Iterable[float]) -> float | None:
        """The best finite value, or `None` without one."""
        finite = [float(v) for v in values if math.isfinite(v)]
        if not finite:
            return None
        return min(finite) if self.minimize else max(finite)

    def scaled(self, value: float, fraction: float) -> float:
        """`fraction` of the way to `value` by the papers' rule: `fraction *
        value` to maximise, `value / fraction` to minimise (a loss may be at
        most 1/fraction times the reference's)."""
        return value / fraction if self.minimize else fraction * value

    def rule(self) -> str:
        """How a d passes, in words: the direction and the comparison."""
        if self.minimize:
            return (
                "lower is better: passes when the mean over seeds is <= the threshold"
            )
        return "higher is better: passes when the mean over seeds is >= the threshold"
