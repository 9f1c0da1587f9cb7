"""Learning rates that train: `learning_rate="auto"`.

A run with an automatic rate first *probes*: it trains from its own start
(the same seed, so the same initialisation, P and batches) for
`PROBE_EPOCHS` epoch at a few rates on a half-decade grid
(..., 0.01, 0.0316, 0.1, 0.316, ...), judged by the monitored value after
the probe, and then trains in full one grid step below the best one
(`BACKOFF_STEPS`): a short probe favours rates that are too large for a
whole run, since it judges only the first steps (docs/search.md has the
measurements). The probed rates walk
the grid from a start (`start_rate`) up or down while the monitored value
improves (`choose`), so that a run probes 3 rates when the start is best
and one more per half decade it is off, `MAX_PROBES` at most.

Nothing here depends on other runs: a run's rate is a function of its
recipe, d and seed alone, so that runs on Ray workers, in any order, and
a resumed search all get the rates of one uninterrupted search.

No TensorFlow here: the probes themselves are trained by the caller
(`keras_idim.dimsearch.runner.train_run`, `keras-idim train`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from keras_idim.objective import Objective

#: The value of `learning_rate` (and `baseline_learning_rate`) that probes.
AUTO = "auto"

#: Epochs each probed rate trains for.
PROBE_EPOCHS = 1

#: How many rates a run probes at most.
MAX_PROBES = 6

#: Grid steps per decade: the probed rates are 10^(k / STEPS_PER_DECADE).
STEPS_PER_DECADE = 2

#: How many grid steps below the best probe the run trains.
BACKOFF_STEPS = 1

#: The probed rates stay within these bounds.
BOUNDS = (1e-6, 10.0)


def on_grid(rate: float) -> float:
    """The rate of the grid nearest to `rate` (in log scale), to 3 digits."""
    k = round(STEPS_PER_DECADE * math.log10(rate))
    return float(f"{10.0 ** (k / STEPS_PER_DECADE):.3g}")


def _step(rate: float, steps: int) -> float:
    k = round(STEPS_PER_DECADE * math.log10(rate)) + steps
    return float(f"{10.0 ** (k / STEPS_PER_DECADE):.3g}")


def start_rate(default: float, full_dim: int, trainable: int) -> float:
    """Where the probes start: the optimizer's own rate `default` (Adam's
    0.001) for full training, times `sqrt(full_dim / trainable)` for a run
    that trains `trainable` numbers that move all `full_dim` weights.

    With unit-norm columns, a step of size `r` on each of d coordinates
    moves each of the D weights by about `r * sqrt(d / D)`: the factor makes
    the weights move as far a step as full training's do. On the grid,
    within `BOUNDS`.
    """
    rate = default * math.sqrt(max(full_dim, 1) / max(trainable, 1))
    return on_grid(min(max(rate, BOUNDS[0]), 1.0))


def _better(a: float | None, b: float | None, mode: str) -> bool:
    """Whether the probe value `a` beats `b` (`None`: the probe diverged or
    failed, worse than any value)."""
    if a is None:
        return False
    if b is None:
        return True
    return Objective(mode=mode).better(a, b)


def choose(
    score: Callable[[float], float | None],
    start: float,
    mode: str,
    max_probes: int = MAX_PROBES,
    backoff: int = BACKOFF_STEPS,
) -> tuple[float, list[list]]:
    """Walks the grid from `start` to the rate whose probe scores best, and
    returns the rate `backoff` grid steps below it.

    Args:
        score: `rate -> value`: the monitored value after a probe at that
            rate, or `None` if it diverged or failed.
        start: float. The first rate probed (put on the grid).
        mode: str. `"max"` or `"min"`: which values are better.
        max_probes: int. How many rates to probe at most.
        backoff: int. Grid steps below the best probe.

    Returns:
        `(rate, probes)`: the rate to train at, and `[[rate, value], ...]`
        in the order probed. Ties keep the rate probed first. If every
        probe failed, `backoff` steps below the smallest rate probed.
    """
    probes: dict[float, float | None] = {}

    def value(rate: float) -> float | None:
        if rate not in probes:
            probes[rate] = score(rate)
        return probes[rate]

    rate = on_grid(start)
    value(rate)
    for direction in (+1, -1):
        moved = False
        while len(probes) < max_probes:
            nxt = _step(rate, direction)
            if not BOUNDS[0] <= nxt <= BOUNDS[1]:
                break
            if not _better(value(nxt), value(rate), mode):
                break
            rate, moved = nxt, True
        if moved:
            break
    if all(v is None for v in probes.values()):
        rate = min(probes)
    rate = max(_step(rate, -backoff), BOUNDS[0])
    return rate, [[r, v] for r, v in probes.items()]
