"""The lines a search prints as it goes: one a run, and one of progress
(the runs done, the d still open, the runs and the time left at most)."""

from __future__ import annotations

import time
from collections.abc import Container, Sequence

from keras_idim.dimsearch.records import RunRecord
from keras_idim.dimsearch.strategy import Strategy, most_dims_left


def _fmt(value: float | None) -> str:
    return "  --  " if value is None else f"{value:.4f}"


def _duration(seconds: float) -> str:
    """`45s`, `3m20s`, `2h05m`."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def open_range(path: dict[int, bool], letter: str = "d") -> str:
    """The values still open after a strategy's outcomes, in words: above
    the largest failing d below the smallest passing one, up to that one."""
    passing = [d for d, ok in path.items() if ok]
    hi = min(passing) if passing else None
    failing = [d for d, ok in path.items() if not ok and (hi is None or d < hi)]
    lo = max(failing) if failing else None
    if hi is None and lo is None:
        return f"no {letter} tried yet"
    if hi is None:
        return f"{letter} > {lo} open (none passed yet)"
    if lo is None:
        return f"{letter} <= {hi} open (none failed below it yet)"
    return f"{letter} in ({lo}, {hi}] open"


def run_line(record: RunRecord, monitor: str, letter: str = "d") -> str:
    """One finished run, in a line: its d (`letter`: `r` for a LoRA rank)
    or baseline, seed, metric, epochs, learning rate, seconds and status."""
    head = "baseline " if record.dim is None else f"{letter} {record.dim:>8}"
    return (
        f"{head}  seed {record.seed}  {monitor} {_fmt(record.metric)}  "
        f"epochs {record.epochs}"
        + ("" if record.learning_rate is None else f"  lr {record.learning_rate:g}")
        + f"  {record.seconds:6.1f}s  {record.status}"
        f"{'  (reached threshold)' if record.stopped_early else ''}"
        f"{'  ' + record.message if record.message else ''}"
    )


def runs_left(
    strategy: Strategy,
    path: dict[int, bool],
    frontier: int | None,
    seeds: Sequence[int],
    done: Container,
    baseline_known: bool,
) -> int | None:
    """The most runs a search may still train, or `None` if the strategy
    gives no bound (see `strategy.most_dims_left`): the baseline's runs not
    `done` (none when the baseline is known), and one run per seed for each
    d the strategy may still try, less the seeds of the next d (`frontier`)
    already done; `done` holds the finished `(dim, seed)`."""
    dims = most_dims_left(strategy, path)
    if dims is None:
        return None
    left = dims * len(seeds)
    if frontier is not None:
        left -= sum((frontier, s) in done for s in seeds)
    if not baseline_known:
        left += sum((None, s) not in done for s in seeds)
    return left


def progress_line(
    *,
    fresh: int,
    resumed: int,
    open_values: str | None,
    left: int | None,
    clock: float | None,
) -> str:
    """The progress line (see `Driver.progress`).

    Args:
        fresh: int. Runs finished by this call.
        resumed: int. Runs read from the results file.
        open_values: str or None. The values still open (see `open_range`);
            `None` while the baseline trains.
        left: int or None. The most runs left; `None`: no bound.
        clock: float or None. `time.perf_counter()` when this call's first
            run started.
    """
    line = f"progress: {fresh} runs done" + (
        f" (and {resumed} resumed)" if resumed else ""
    )
    line += "; baseline training" if open_values is None else "; " + open_values
    if left == 0:
        return line + "; no runs left"
    if left is not None and fresh and clock is not None:
        each = (time.perf_counter() - clock) / fresh
        line += (
            f"; at most {left} runs left, about {_duration(each * left)} "
            f"at most ({each:.1f}s a run)"
        )
    return line
