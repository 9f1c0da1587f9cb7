"""What a d-search records: one `RunRecord` per training run, the `Baseline`,
the run statuses, and the rule by which a d passes.

Pure Python: no TensorFlow import, so the strategy and the results file can
be used (and tested) without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from keras_idim import objective
from keras_idim.objective import Objective
from keras_idim.utils.exports import keras_idim_export

#: A run that trained to its end or to the threshold.
OK = "ok"
#: A run whose loss became NaN or infinite: a result (the d is too hard at
#: this learning rate), kept on resume.
DIVERGED = "diverged"
#: A run that raised: no result, run again on resume.
ERROR = "error"
STATUSES = keras_idim_export("keras_idim.dimsearch.STATUSES")((OK, DIVERGED, ERROR))

#: The directions a monitored metric can have.
MODES = objective.MODES


@keras_idim_export("keras_idim.dimsearch.Baseline")
class Baseline(NamedTuple):
    """The metric that the threshold is derived from.

    `kind` is `"local"` (the same network trained in all D dimensions with
    the same recipe; `value` is the mean over seeds of its best metric),
    `"global"` (a number the user gave, e.g. 1.0), or `"absolute"` (no
    baseline: the user gave the threshold itself, which is then `value`).
    """

    value: float
    kind: str

    def __float__(self) -> float:
        return float(self.value)


@keras_idim_export("keras_idim.dimsearch.RunRecord")
@dataclasses.dataclass
class RunRecord:
    """One training run of the search (a subspace run, or a baseline run).

    Attributes:
        dim: int or None. d, or `None` for a baseline run (all D weights).
        seed: int. Seed of the initialisation and of the projection.
        projection: str. The projection kind, or `"none"` for a baseline.
        metric: float or None. Best monitored value over the run's epochs
            (the largest, or the smallest with `mode="min"`; finite values
            only), `None` if there was none.
        epochs: int. Epochs run.
        stopped_early: bool. Whether the threshold stopped the run.
        seconds: float. Wall time of the run.
        status: str. `"ok"`, `"diverged"` (NaN or infinite loss) or
            `"error"` (an exception; see `message`).
        message: str or None. What went wrong, if anything.
        history: list of float. The monitored value at each epoch.
        trainable_params: int or None. How many numbers the run trained:
            exactly d for a subspace run, the LoRA matrices (plus anything
            else left trainable) for a LoRA run, D for a baseline run.
            `None` in files written before it was recorded.
        found: dict or None. A finished subspace run's model at its best
            epoch (theta_d, SAID's lambdas, the base model's other state,
            theta_0's fingerprint; see `keras_idim.dimsearch.found`), in
            memory only: the results file does not hold it (the search
            writes it to its own small file beside the results file).
        learning_rate: float or None. The rate the run's optimizer had at
            its end (as set, chosen by the probes, or changed by a
            callback). `None` where it could not be read, and in files
            written before it was recorded.
        rate_probes: list or None. With an automatic rate, the probes:
            `[[rate, value], ...]` in the order tried, `value` the
            monitored value after the probe (`None`: it diverged or
            failed). `None` for a run with a rate given.
        space: str or None. The parameter set a subspace run moved
            (`keras_idim.spaces`: `"weights"`, `"lora:4"`, ...). `None`
            for a baseline or LoRA run, and in files written before it was
            recorded (those moved all weights).
        space_dim: int or None. D of that space: how many numbers theta_d
            moves. `None` where `space` is.
    """

    dim: int | None
    seed: int
    projection: str
    metric: float | None
    epochs: int
    stopped_early: bool
    seconds: float
    status: str
    message: str | None = None
    history: list = dataclasses.field(default_factory=list)
    trainable_params: int | None = None
    found: dict | None = dataclasses.field(default=None, repr=False, compare=False)
    learning_rate: float | None = None
    rate_probes: list | None = None
    space: str | None = None
    space_dim: int | None = None

    def to_dict(self) -> dict:
        data = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "found"  # kept in its own file, not in the JSON
        }
        data["history"] = list(data["history"])
        for optional in (
            "trainable_params",
            "learning_rate",
            "rate_probes",
            "space",
            "space_dim",
        ):
            if data[optional] is None:  # as files before it had it
                del data[optional]
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> RunRecord:
        return cls(
            **{
                f.name: data[f.name]
                for f in dataclasses.fields(cls)
                if f.name in data and f.name != "found"
            }
        )

    @classmethod
    def error(
        cls, dim: int | None, seed: int, projection: str, seconds: float, message: str
    ) -> RunRecord:
        """A run that ended in an error: no metric, no epoch."""
        return cls(dim, seed, projection, None, 0, False, seconds, ERROR, message)


def mean(values: Sequence[float]) -> float:
    """The mean, as NumPy computes it (as results files store it)."""
    return float(np.mean(values))


def best(values: Sequence[float], mode: str = "max") -> float | None:
    """The best finite value (largest, or smallest with `mode="min"`)."""
    return Objective(mode=mode).best(values)


def reaches(value: float, threshold: float, mode: str = "max") -> bool:
    """Whether `value` reaches `threshold` in the direction `mode`."""
    return Objective(mode=mode).reaches(value, threshold)


def ok_metrics(records: Sequence[RunRecord]) -> list[float]:
    """The metrics of the runs that finished well."""
    return [r.metric for r in records if r.status == OK and r.metric is not None]


def passes(records: Sequence[RunRecord], threshold: float, mode: str = "max") -> bool:
    """A d passes when every run of it is ok and their mean metric reaches it."""
    values = ok_metrics(records)
    return (
        bool(values)
        and len(values) == len(records)
        and reaches(mean(values), threshold, mode)
    )


#: How the threshold is derived from a baseline (`threshold_rule`).
THRESHOLD_RULES = ("baseline", "above_floor")


def threshold_of(
    baseline: Baseline,
    fraction: float,
    mode: str = "max",
    threshold_rule: str = "baseline",
    floor: float | None = None,
) -> float:
    """The threshold from a baseline.

    With `threshold_rule="baseline"` (the papers' rule): `fraction * value`
    for a metric to maximise, `value / fraction` for one to minimise (a loss
    or an error may be at most 1/fraction times the baseline's). With
    `"above_floor"`: `floor + fraction * (value - floor)`, the same share of
    the way from the chance floor to the baseline in either direction. An
    absolute baseline is the threshold itself.
    """
    if baseline.kind == "absolute":
        return float(baseline.value)
    if threshold_rule == "above_floor":
        if floor is None:
            raise ValueError(
                "`threshold_rule='above_floor'` needs a chance floor, and there "
                "is none: pass `floor=`."
            )
        return float(floor + fraction * (baseline.value - floor))
    return Objective(mode=mode).scaled(baseline.value, fraction)


def clears_floor(threshold: float, floor: float | None, mode: str = "max") -> bool:
    """Whether a threshold is strictly better than the chance floor (`True`
    when there is no floor to check)."""
    return floor is None or Objective(mode=mode).better(threshold, floor)


def rule(mode: str) -> str:
    """How a d passes, in words: the direction and the comparison."""
    return Objective(mode=mode).rule()
