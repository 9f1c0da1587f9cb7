"""A `SearchResult`'s plot drawn: the metric against d, mean and spread over
seeds, with the baseline, the threshold, the chance floor and d_int."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keras_idim.dimsearch.result import SearchResult


def draw(result: SearchResult, ax: Any) -> None:
    """Draws `result` on `ax` (see `SearchResult.plot`, which labels the
    axes): its runs, their mean and spread over seeds, and `_lines`."""
    r = result
    scores = {d: s for d, s in r.dim_scores().items() if s["mean"] is not None}
    ok = [run for run in r.runs if run.metric is not None]
    ax.scatter(
        [run.dim for run in ok],
        [run.metric for run in ok],
        s=14,
        color="tab:blue",
        alpha=0.45,
        label="runs",
    )
    dims = sorted(scores)
    if dims:
        ax.plot(
            dims,
            [scores[d]["mean"] for d in dims],
            "-o",
            ms=4,
            color="tab:blue",
            label="mean over seeds",
        )
        ax.fill_between(
            dims,
            [scores[d]["min"] for d in dims],
            [scores[d]["max"] for d in dims],
            color="tab:blue",
            alpha=0.15,
        )
    _lines(r, ax)


def _lines(r: SearchResult, ax: Any) -> None:
    """The baseline, the threshold and the floor across; d_int and its
    interval over seeds along."""
    ax.axhline(
        r.baseline.value,
        color="black",
        lw=1,
        ls="--",
        label=f"{r.baseline.kind} baseline {r.baseline.value:.3f}",
    )
    ax.axhline(
        r.threshold,
        color="tab:red",
        lw=1,
        label=r.threshold_text().replace(f"{r.monitor} ", "", 1),
    )
    if r.floor is not None:
        ax.axhline(
            r.floor,
            color="tab:gray",
            lw=1,
            ls=":",
            label=f"chance floor {r.floor:.3f}",
        )
    if r.d_int_ci is not None and r.d_int_ci[0] is not None:
        low, high = r.d_int_ci  # high None: beyond every tried d
        ax.axvspan(
            low,
            max(run.dim for run in r.runs) if high is None else high,
            color="tab:green",
            alpha=0.12,
            label=f"{100 * r.ci_level:g}% interval over seeds",
        )
    if r.d_int is not None:
        ax.axvline(
            r.d_int,
            color="tab:green",
            lw=1.2,
            label=f"{r.name} = {r.d_int}",
        )
