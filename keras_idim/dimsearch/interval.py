"""The confidence interval of d_int over seeds: a bootstrap over the seeds.

Pure NumPy: no TensorFlow import.

Each resample draws as many seeds as the search ran, with replacement. At
every d tried with all seeds, the resample's mean curve is the mean of the
drawn seeds' metrics; the resample's d_int is the smallest such d whose
mean reaches the threshold (a run that did not finish well, diverged or
raised, makes its d fail in every resample that draws its seed, as it does
in the search). The interval is the pair of empirical quantiles of these
d_int at `(1 - level) / 2` and `(1 + level) / 2` (the smallest d whose share
of resamples at or below it reaches that probability), so both ends are
values of d that the search tried. An end is `None` when more than that
share of resamples reach the threshold at no tried d.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from keras_idim.dimsearch.records import OK, RunRecord
from keras_idim.objective import Objective

#: How many bootstrap resamples, and the fixed seed of their generator (the
#: interval of a result is the same on every call).
RESAMPLES = 10_000
RNG_SEED = 0


def metric_table(
    runs: Sequence[RunRecord], seeds: Sequence[int]
) -> tuple[list[int], np.ndarray]:
    """The d values tried with every seed, in increasing order, and their
    metrics as an array `[d, seed]` (NaN for a run that did not finish well)."""
    by_key = {(r.dim, r.seed): r for r in runs if r.dim is not None}
    dims = sorted({d for d, _ in by_key if all((d, s) in by_key for s in seeds)})
    table = np.full((len(dims), len(seeds)), np.nan)
    for i, d in enumerate(dims):
        for j, s in enumerate(seeds):
            r = by_key[(d, s)]
            if r.status == OK and r.metric is not None:
                table[i, j] = r.metric
    return dims, table


def first_reaching(
    dims: Sequence[int], means: np.ndarray, threshold: float, mode: str
) -> np.ndarray:
    """Per column of `means` (`[d, resample]`): the smallest d whose mean
    reaches the threshold, or NaN. NaN means never reach."""
    with np.errstate(invalid="ignore"):
        hit = Objective(mode=mode).reaches(means, threshold)
    hit &= ~np.isnan(means)
    first = np.argmax(hit, axis=0)
    found = hit.any(axis=0)
    values = np.asarray(dims, dtype=float)[first]
    return np.where(found, values, np.nan)


def d_int_interval(
    runs: Sequence[RunRecord],
    seeds: Sequence[int],
    threshold: float,
    mode: str = "max",
    level: float = 0.9,
    *,
    resamples: int = RESAMPLES,
    rng_seed: int = RNG_SEED,
) -> tuple[int | None, int | None] | None:
    """The bootstrap interval over seeds of d_int (see the module's text).

    Args:
        runs: list of RunRecord. The search's subspace runs.
        seeds: list of int. The search's seeds.
        threshold: float. The threshold the mean curve must reach.
        mode: str. `"max"` (reach: >=) or `"min"` (<=).
        level: float. The interval's level, in (0, 1). Defaults to `0.9`.
        resamples: int. Bootstrap resamples. Defaults to `RESAMPLES`.
        rng_seed: int. Seed of the resampling. Defaults to `RNG_SEED`.

    Returns:
        `(low, high)`, each a tried d or `None` (beyond every tried d); or
        `None` with fewer than two seeds, or no d tried with all of them.
    """
    seeds = list(seeds)
    dims, table = metric_table(runs, seeds)
    if len(seeds) < 2 or not dims:
        return None
    rng = np.random.default_rng(rng_seed)
    picks = rng.integers(0, len(seeds), size=(resamples, len(seeds)))
    # NaN (a failed run) in a resample makes its mean NaN: that d fails there.
    means = table[:, picks].mean(axis=2)  # [d, resample]
    found = first_reaching(dims, means, threshold, mode)
    ordered = np.sort(np.where(np.isnan(found), np.inf, found))
    ends = []
    for q in ((1 - level) / 2, (1 + level) / 2):
        # The smallest value whose empirical CDF reaches q.
        # (the small margin keeps 0.95 * 10000 = 9500.000000000002 at 9500).
        index = max(int(np.ceil(q * resamples - 1e-9)) - 1, 0)
        value = ordered[index]
        ends.append(None if np.isinf(value) else int(value))
    return ends[0], ends[1]
