"""The d-search: find the intrinsic dimension d_int automatically, resumably.

One idea a module:

- `records`: `RunRecord`, `Baseline`, the run statuses, when a d passes,
  the threshold rules.
- `floor`: the chance floor, a constant predictor's score.
- `interval`: the bootstrap interval of d_int over seeds.
- `strategy`: which d comes next (pure functions, no TensorFlow).
- `store`: the results file (load, verify, atomic save).
- `file_checks`: the results file's fields checked one by one.
- `differences`: what differs between two searches, in words (for
  `store`'s refusal of another search's file).
- `runner`: the `Recipe`, one training run, the `Runner` protocol and the
  in-process runner.
- `ray_runner`: the runs as Ray tasks.
- `config`: the checks and descriptions of a search's arguments.
- `search_config`: `SearchConfig`, a search's checked settings, its stored
  description and hash, and its `Recipe`.
- `making`: the search in the making: the `SearchResult` that the
  `Driver` fills in, begun from a `SearchConfig`, and the runs it resumes.
- `driver`: the search loop, filling in its `SearchResult` as runs finish.
- `progress`: the lines a search prints as it goes.
- `result`: `SearchResult`, its summary, CSV, JSON and plot.
- `result_files`: a result's JSON read back and checked, and its CSV.
- `result_plot`: a result's plot drawn.
- `comparison`: searches side by side (subspace against LoRA), `compare`.
- `launch`: `run`, a `SearchConfig`'s search: the lock, the model's D, the
  floor and the strategy, then the `Driver`.
- `api`: `search`, the entry point (also `keras_idim.search`).

Names load on first use, so that `keras_idim.dimsearch.strategy` can be
imported without TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "search": "api",
    "SearchResult": "result",
    "Driver": "driver",
    "Recipe": "runner",
    "Runner": "runner",
    "InProcessRunner": "runner",
    "train_run": "runner",
    "RayRunner": "ray_runner",
    "SearchFileError": "store",
    "SearchBusyError": "store",
    "compare": "comparison",
    "CompareError": "comparison",
    "RunError": "driver",
    "FloorError": "driver",
    "RunRecord": "records",
    "Baseline": "records",
    "STATUSES": "records",
    "auto_next_dim": "strategy",
    "sweep_next_dim": "strategy",
    "follow": "strategy",
    "plan_dims": "strategy",
    "smallest_passing": "strategy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
