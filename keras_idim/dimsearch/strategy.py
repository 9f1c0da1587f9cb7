"""Which d comes next: the search strategies, as pure functions.

A strategy is a function from the outcomes so far (d -> passed) to the next
d to try, or `None` when the search is over. `follow` and `plan_dims` turn
one into a sequential or a parallel plan. No TensorFlow import: this module
is used and tested without it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence

#: A strategy: outcomes so far (d -> passed) -> the next d, or None.
Strategy = Callable[[Mapping[int, bool]], "int | None"]


def auto_next_dim(
    outcomes: Mapping[int, bool],
    *,
    start: int = 10,
    tolerance: float = 0.1,
    max_dim: int,
    min_dim: int = 1,
) -> int | None:
    """The next d to try in an automatic search, or `None` when it is done.

    A pure function of the pass/fail outcomes so far. It brackets by doubling
    from `start` (or halving, down to `min_dim`, if `start` already passes)
    until one d fails
    and a d at most twice as large passes, then bisects on a log scale (the
    geometric mean of the bracket, rounded) until `hi / lo <= 1 + tolerance`
    or no integer is left between them. The answer is then the smallest
    passing d; if `max_dim` fails, the search ends with no answer.

    Runs needed (per seed), for an answer d*: about `log2(d* / start) + 1`
    to bracket and `log2(log(2) / log(1 + tolerance))` (3 for the default
    tolerance of 0.1) to bisect: 11 runs for d* = 750 from start = 10,
    against 25 for a 25-point grid.

    Args:
        outcomes: Mapping. d -> whether it reached the threshold.
        start: int. The first d. Defaults to `10`.
        tolerance: float. Stop when the bracket's ratio is at most
            `1 + tolerance`. Defaults to `0.1`.
        max_dim: int. The largest d to try.
        min_dim: int. The smallest d to try (SAID needs more than one per
            weight tensor). Defaults to `1`.

    Returns:
        The next d, or `None`.

    Example:

    >>> auto_next_dim({}, start=10, max_dim=1000)
    10
    >>> auto_next_dim({10: False}, start=10, max_dim=1000)
    20
    >>> auto_next_dim({10: False, 20: True}, start=10, max_dim=1000)
    14
    """
    start = min(start, max_dim)
    if not outcomes:
        return start
    passing = [d for d, ok in outcomes.items() if ok]
    if not passing:
        largest = max(outcomes)
        return None if largest >= max_dim else min(2 * largest, max_dim)
    hi = min(passing)
    failing = [d for d, ok in outcomes.items() if not ok and d < hi]
    if not failing:
        return None if hi <= min_dim else max(hi // 2, min_dim)
    lo = max(failing)
    if hi / lo <= 1 + tolerance or hi - lo <= 1:
        return None
    mid = int(round(math.sqrt(lo * hi)))
    return min(max(mid, lo + 1), hi - 1)


def smallest_passing(outcomes: Mapping[int, bool]) -> int | None:
    """The smallest d that passed, or `None`."""
    passing = [d for d, ok in outcomes.items() if ok]
    return min(passing) if passing else None


def follow(
    next_dim: Callable[[Mapping[int, bool]], int | None],
    finished: Mapping[int, bool],
    path: Mapping[int, bool] | None = None,
) -> tuple[dict[int, bool], int | None]:
    """Follows a sequential strategy through the outcomes already known.

    Starting from `path`, asks `next_dim` for the next d and takes its
    outcome from `finished` for as long as it is there. This is what the
    sequential search would have done with the same runs, whatever else
    ran beside them.

    Args:
        next_dim: callable. The strategy: outcomes so far -> next d or
            `None` when it is done (e.g. `auto_next_dim` with its settings).
        finished: Mapping. d -> passed, for every d whose runs all finished.
        path: Mapping or None. Outcomes to start from. Defaults to none.

    Returns:
        `(path, next)`: the outcomes the strategy used, in the order it
        tried them, and the first d it wants that has not finished (`None`
        when the search is over).
    """
    path = dict(path or {})
    while (dim := next_dim(path)) is not None and dim in finished:
        path[dim] = finished[dim]
    return path, dim


def most_dims_left(
    next_dim: Callable[[Mapping[int, bool]], int | None],
    path: Mapping[int, bool],
    *,
    budget: int = 20_000,
) -> int | None:
    """The most values of d the strategy may still try after `path`.

    Every future is followed: after each d it would try, both outcomes
    (passes, fails), to the end of the search; the answer is the longest
    of them, so a true upper bound for a deterministic strategy. It asks
    the strategy at most `budget` times, and returns `None` (no bound)
    when that is not enough, rather than a guess.

    Args:
        next_dim: callable. The strategy, as in `follow`.
        path: Mapping. The outcomes the strategy has used so far (see
            `follow`).
        budget: int. How many calls to the strategy at most. Defaults to
            `20_000`.

    Returns:
        The number of d left at most (`0` when the search is over), or
        `None`.

    Example:

    >>> step = lambda o: sweep_next_dim(o, dims=[10, 50, 100])
    >>> most_dims_left(step, {10: False})
    2
    """
    calls = 0

    def longest(outcomes: dict[int, bool]) -> int:
        nonlocal calls
        calls += 1
        if calls > budget:
            raise OverflowError
        dim = next_dim(outcomes)
        if dim is None:
            return 0
        return 1 + max(longest({**outcomes, dim: ok}) for ok in (False, True))

    try:
        return longest(dict(path))
    except (OverflowError, RecursionError):
        return None


def plan_dims(
    next_dim: Callable[[Mapping[int, bool]], int | None],
    finished: Mapping[int, bool],
    count: int,
    *,
    lean: float = 0.75,
) -> list[int]:
    """Up to `count` values of d worth running now, the most useful first.

    The first is the d the sequential strategy needs next (see `follow`).
    The others are speculative: the d the strategy would try after each
    possible outcome of the ones still open, taken best-first by the
    probability of that future. While the path so far is all fails (or all
    passes) the same outcome is given probability `lean`, because a
    bracketing search keeps doubling (or halving) until it turns; inside a
    bracket both outcomes count as even. The choice only decides what runs
    early: the answer is always taken along the sequential path, so it is
    the sequential search's answer for the same runs.

    Args:
        next_dim: callable. The strategy, as in `follow`.
        finished: Mapping. d -> passed, for every d whose runs all finished.
        count: int. How many values of d to return at most.
        lean: float. Probability given to continuing the trend. Defaults
            to `0.75`.

    Returns:
        A list of distinct d not in `finished`, at most `count` long; empty
        when the search is over.

    Example:

    >>> step = lambda o: auto_next_dim(o, start=10, max_dim=1000)
    >>> plan_dims(step, {}, 3)  # 10, then 20 if it fails, 5 if it passes
    [10, 20, 5]
    >>> plan_dims(step, {10: False, 20: True}, 3)
    [14, 17, 12]
    """
    path, first = follow(next_dim, finished)
    if first is None or count < 1:
        return []
    heap = [(-1.0, 0, path, first)]
    planned: list[int] = []
    pushed = 1
    while heap and len(planned) < count and pushed < 8 * count + 8:
        negative_p, _, path, dim = heapq.heappop(heap)
        if dim not in planned:
            planned.append(dim)
        seen = set(path.values())
        for outcome in (False, True):
            p = -negative_p * (
                0.5 if len(seen) != 1 else lean if outcome in seen else 1 - lean
            )
            branch, following = follow(next_dim, finished, {**path, dim: outcome})
            if following is not None:
                heapq.heappush(heap, (-p, pushed, branch, following))
                pushed += 1
    return planned


def sweep_next_dim(outcomes: Mapping[int, bool], *, dims: Sequence[int]) -> int | None:
    """The next d of a list sweep: the values in increasing order, stopping
    at the first that passes.

    Example:

    >>> sweep_next_dim({10: False}, dims=[10, 50, 100])
    50
    >>> sweep_next_dim({10: False, 50: True}, dims=[10, 50, 100]) is None
    True
    """
    if any(outcomes.values()):
        return None
    return next((d for d in sorted(dims) if d not in outcomes), None)


def make_strategy(
    dims: str | Sequence[int],
    *,
    start: int = 10,
    tolerance: float = 0.1,
    max_dim: int | None = None,
    min_dim: int = 1,
) -> Strategy:
    """The strategy of a search: `"auto"` (see `auto_next_dim`, which then
    needs `max_dim`, and halves no lower than `min_dim`) or a list of d
    (see `sweep_next_dim`)."""
    if dims == "auto":
        if max_dim is None:
            raise ValueError("An automatic search needs `max_dim`.")

        def next_dim(outcomes: Mapping[int, bool]) -> int | None:
            return auto_next_dim(
                outcomes,
                start=start,
                tolerance=tolerance,
                max_dim=max_dim,
                min_dim=min_dim,
            )

    else:
        values = sorted(dims)

        def next_dim(outcomes: Mapping[int, bool]) -> int | None:
            return sweep_next_dim(outcomes, dims=values)

    return next_dim
