"""The search in the making: the `SearchResult` that a `Driver` fills in,
begun from a `SearchConfig`, and the runs that its results file holds."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from keras_idim.dimsearch import store
from keras_idim.dimsearch.floor import Floor
from keras_idim.dimsearch.records import ERROR, Baseline, RunRecord
from keras_idim.dimsearch.result import SearchResult
from keras_idim.dimsearch.runner import Task

if TYPE_CHECKING:
    from keras_idim.dimsearch.search_config import SearchConfig


def begin(
    config: SearchConfig, floor: Floor, fingerprints: dict | None
) -> SearchResult:
    """A search before its first run: its settings, and its baseline when
    one is known before any run.

    Args:
        config: SearchConfig. The search's checked settings.
        floor: Floor. The chance floor (its `value` `None`: none checked).
        fingerprints: dict or None. The model's and the data's fingerprints
            (see `fingerprint.fingerprints`), saved with the runs.

    Returns:
        A `SearchResult` with no runs and no `d_int` yet. Its `baseline` is
        the absolute threshold, the global baseline, the local baseline
        reused from another search (`config.reuse`; its `baseline_runs`
        are that search's runs of this one's seeds), or `None`: a local
        baseline still to train.
    """
    baseline, baseline_runs = None, []
    if config.threshold is not None:
        baseline = Baseline(float(config.threshold), "absolute")
    elif config.baseline is not None:
        baseline = Baseline(float(config.baseline), "global")
    if config.reuse is not None:  # its baseline, in place of one trained here
        baseline = Baseline(config.reuse.baseline.value, "local")
        baseline_runs = [
            r for r in config.reuse.baseline_runs if r.seed in config.seeds
        ]
    return SearchResult(
        d_int=None,
        fraction=config.fraction,
        threshold=None,
        baseline=baseline,
        runs=[],
        baseline_runs=baseline_runs,
        config=config.description(),
        monitor=config.monitor,
        mode=config.mode,
        threshold_rule=config.threshold_rule,
        floor=floor.value,
        floor_source=floor.source,
        ci_level=config.ci_level,
        baseline_from=config.baseline_from,
        path=os.fspath(config.results_path) if config.results_path else None,
        model_fn=config.model_fn,
        fingerprints=fingerprints,
    )


def resumed_runs(
    result: SearchResult, say: Callable[[str], None]
) -> dict[Task, RunRecord]:
    """The finished runs that the results file `result.path` holds, by
    their `(dim, seed)`: none without a file; a run that raised is left
    out, to run again.

    Raises:
        SearchFileError: the file is unusable, or another search's: another
            configuration (`store.load_previous`), or another model or
            other data (`store.check_fingerprints`).
    """
    path, fingerprints = result.path, result.fingerprints
    previous = store.load_previous(path, result.config, fingerprints) if path else None
    if previous and fingerprints is not None:
        unchecked = store.check_fingerprints(path, previous, fingerprints)
        if unchecked:
            say(unchecked)
    done: dict[Task, RunRecord] = {}
    if previous:
        retried = 0
        for key in ("baseline_runs", "runs", "speculative_runs"):
            for record in previous[key]:
                if record.status == ERROR:  # no result: run it again
                    retried += 1
                    continue
                done[(record.dim, record.seed)] = record
        if done or retried:
            say(
                f"resuming from {path}: {len(done)} finished "
                "runs" + (f", {retried} that raised run again" if retried else "")
            )
    return done
