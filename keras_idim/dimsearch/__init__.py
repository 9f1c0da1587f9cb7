"""The d-search: find the intrinsic dimension d_int automatically, resumably.

One idea a module:

- `records`: `RunRecord`, `Baseline`, the run statuses, when a d passes,
  the threshold rules.
- `floor`: the chance floor, a constant predictor's score.
- `interval`: the bootstrap interval of d_int over seeds.
- `strategy`: which d comes next (pure functions, no TensorFlow).
- `store`: the results file (load, verify, atomic save).
- `methods`: the method as a type: `Subspace` (d) or `LoRA` (a rank r),
  what a run of size k trains and the largest useful k.
- `recipe`: the `Recipe`, everything a run needs besides its d and seed.
- `runner`: one training run, the `Runner` protocol and the in-process
  runner.
- `file_checks`: the results file's fields checked one by one.
- `differences`: what differs between two searches, in words (for
  `store`'s refusal of another search's file).
- `ray_runner`: the runs as Ray tasks.
- `config`: the checks of a search's arguments (model, dims, seeds, space,
  method, optimizer).
- `metric_checks`: the metrics, the monitor and its direction (`mode`).
- `data_checks`: the data, refused before any run if no run could use it.
- `describe`: the JSON descriptions a results file stores of the data,
  loss, metrics and functions.
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

The namespace holds what a user needs: `search`, `SearchConfig`,
`SearchResult`, `compare`, the records (`RunRecord`, `Baseline`,
`STATUSES`), the runners (`Runner`, `InProcessRunner`, `RayRunner`) and the
errors (`SearchFileError`, `SearchBusyError`, `RunError`, `FloorError`,
`CompareError`). The internals are imported from their modules:
`keras_idim.dimsearch.driver.Driver`, `keras_idim.dimsearch.runner.Recipe`
and `train_run`, and `keras_idim.dimsearch.strategy`'s `auto_next_dim`,
`sweep_next_dim`, `follow`, `plan_dims` and `smallest_passing`.

Names load on first use, so that `keras_idim.dimsearch.strategy` can be
imported without TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> its module in this package. Each name is decorated with
#: `keras_idim_export("keras_idim.dimsearch.NAME")` where it is defined;
#: tests/test_exports.py checks that this table and the decorator agree.
_EXPORTS = {
    "search": "api",
    "SearchConfig": "search_config",
    "SearchResult": "result",
    "compare": "comparison",
    "CompareError": "comparison",
    "RunRecord": "records",
    "Baseline": "records",
    "STATUSES": "records",
    "Runner": "runner",
    "InProcessRunner": "runner",
    "RayRunner": "ray_runner",
    "SearchFileError": "store",
    "SearchBusyError": "store",
    "RunError": "driver",
    "FloorError": "driver",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
