"""A `SearchResult`'s files: its JSON read back, the top-level fields a
finished result needs checked, and its CSV, one row per run."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from typing import TYPE_CHECKING, Any

from keras_idim.dimsearch import store
from keras_idim.dimsearch.records import Baseline, RunRecord
from keras_idim.objective import Objective
from keras_idim.utils.io import atomic_write

if TYPE_CHECKING:
    from keras_idim.dimsearch.result import SearchResult


def _finite_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def check_result_fields(data: dict, source: Any) -> None:
    """The top-level fields a finished result needs, in one line naming the
    file, the field and its value (a hand-edited file would otherwise fail
    with a traceback deep in `compare` or `summary`)."""
    baseline = data.get("baseline")
    tried = {r.dim for r in data["runs"]}
    checks = {
        "baseline": isinstance(baseline, dict)
        and _finite_number(baseline.get("value"))
        and baseline.get("kind") in ("local", "global", "absolute"),
        "fraction": _finite_number(data.get("fraction")) and 0 < data["fraction"] <= 1,
        "threshold": _finite_number(data.get("threshold")),
        "monitor": isinstance(data.get("monitor", "val_accuracy"), str),
        "d_int": data.get("d_int") is None
        or (
            isinstance(data["d_int"], int)
            and not isinstance(data["d_int"], bool)
            and data["d_int"] in tried
        ),
    }
    wanted = {
        "baseline": 'an object {"value": a number, "kind": "local", "global" '
        'or "absolute"}',
        "fraction": "a number in (0, 1]",
        "threshold": "a finite number",
        "monitor": "a string",
        "d_int": f"null or one of the tried d {sorted(tried)}",
    }
    for key, ok in checks.items():
        if not ok:
            found = repr(data[key])[:200] if key in data else "it is missing"
            raise store.SearchFileError(
                f"The results file {source!s} has a bad `{key}`: {found} "
                f"(it should be {wanted[key]})."
            )


def result_fields(source: str | os.PathLike) -> dict:
    """The fields of a `SearchResult` read from a JSON file path or a JSON
    string (see `SearchResult.from_json`), checked."""
    text = source
    is_text = (
        isinstance(source, str)
        and source.lstrip().startswith("{")
        and not os.path.exists(source)
    )
    if not is_text:
        text = store.read_text(source)
    data = store.parse(text, source)
    baseline = data.get("baseline") or {}
    if isinstance(baseline, dict) and baseline.get("value") is None:
        raise store.SearchFileError(
            f"The results file {source!s} holds no baseline yet: the "
            "search that wrote it did not get past its baseline."
        )
    check_result_fields(data, "(JSON text)" if is_text else source)
    return dict(
        d_int=data.get("d_int"),
        fraction=data["fraction"],
        threshold=data["threshold"],
        baseline=Baseline(baseline["value"], baseline["kind"]),
        runs=data["runs"],
        baseline_runs=data["baseline_runs"],
        config=data["config"],
        monitor=data.get("monitor", "val_accuracy"),
        speculative_runs=data["speculative_runs"],
        mode=data.get("mode", "max"),
        threshold_rule=data.get("threshold_rule", "baseline"),
        floor=data.get("floor"),
        floor_source=data.get("floor_source"),
        d_int_ci=None if data.get("d_int_ci") is None else tuple(data["d_int_ci"]),
        ci_level=data.get("ci_level", 0.9),
        baseline_from=data.get("baseline_from"),
        path=None if is_text else os.fspath(source),
        fingerprints=data.get("fingerprints"),
    )


def csv_text(result: SearchResult, path: str | os.PathLike | None = None) -> str:
    """One row per run: the baseline's, then the path's; written to `path`
    (see `SearchResult.to_csv`)."""
    fields = [
        f.name
        for f in dataclasses.fields(RunRecord)
        if f.name not in ("history", "found")
    ]
    sign = Objective(mode=result.mode).sign
    ci = result.d_int_ci
    rule_columns = {  # the floor and interval first: the rule ends a row
        "floor": "" if result.floor is None else result.floor,
        "ci_level": result.ci_level,
        "d_int_ci_low": "" if ci is None else ci[0],
        "d_int_ci_high": "" if ci is None else ci[1],
        "monitor": result.monitor,
        "mode": result.mode,
        "passes_when": f"{sign} {result.threshold:.6g}",
    }
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=fields + list(rule_columns), lineterminator="\n"
    )
    writer.writeheader()
    for r in result.baseline_runs + result.runs:
        row = r.to_dict()
        writer.writerow(
            {k: ("" if row.get(k) is None else row[k]) for k in fields} | rule_columns
        )
    if path is not None:
        atomic_write(path, out.getvalue())
    return out.getvalue()
