"""The results file's fields, checked one by one: a run record's, and
those added to the file after its first version (see `store`). Each check
says what is wrong in words, and `store` names the file in its error."""

from __future__ import annotations

import math
from typing import Any

from keras_idim.dimsearch.records import STATUSES, THRESHOLD_RULES


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def record_problem(data: Any) -> str | None:
    """What is wrong with a run record of the file, in words that follow
    its place (`" has no `seed`"`, `": bad `dim`=0"`); `None`: nothing."""
    if not isinstance(data, dict):
        return " is not an object"
    for key in ("dim", "seed", "projection", "metric", "epochs", "status"):
        if key not in data:
            return f" has no `{key}`"
    checks = {
        "dim": data["dim"] is None
        or (isinstance(data["dim"], int) and data["dim"] > 0),
        "seed": isinstance(data["seed"], int) and not isinstance(data["seed"], bool),
        "projection": isinstance(data["projection"], str),
        "metric": data["metric"] is None
        or (_is_number(data["metric"]) and math.isfinite(data["metric"])),
        "epochs": isinstance(data["epochs"], int) and data["epochs"] >= 0,
        "status": data["status"] in STATUSES,
        "stopped_early": isinstance(data.get("stopped_early", False), bool),
        "seconds": _is_number(data.get("seconds", 0.0)),
        "message": data.get("message") is None or isinstance(data["message"], str),
        "trainable_params": data.get("trainable_params") is None
        or (
            isinstance(data["trainable_params"], int)
            and not isinstance(data["trainable_params"], bool)
            and data["trainable_params"] >= 0
        ),
        "history": isinstance(data.get("history", []), list)
        and all(_is_number(v) for v in data.get("history", [])),
        "learning_rate": data.get("learning_rate") is None
        or (_is_number(data["learning_rate"]) and data["learning_rate"] >= 0),
        "space": data.get("space") is None or isinstance(data["space"], str),
        "space_dim": data.get("space_dim") is None
        or (
            isinstance(data["space_dim"], int)
            and not isinstance(data["space_dim"], bool)
            and data["space_dim"] > 0
        ),
        "rate_probes": data.get("rate_probes") is None
        or isinstance(data["rate_probes"], list)
        and all(
            isinstance(p, list)
            and len(p) == 2
            and _is_number(p[0])
            and (p[1] is None or _is_number(p[1]))
            for p in data["rate_probes"]
        ),
    }
    for key, ok in checks.items():
        if not ok:
            return f": bad `{key}`={data.get(key)!r}"
    return None


def added_problem(data: dict) -> str | None:
    """What is wrong with the fields added after the first files (each
    absent, or well formed), in words (`"bad `floor`='x'"`); `None`:
    nothing."""
    ci = data.get("d_int_ci")
    checks = {
        "threshold_rule": data.get("threshold_rule", "baseline") in THRESHOLD_RULES,
        "floor": data.get("floor") is None
        or (_is_number(data["floor"]) and math.isfinite(data["floor"])),
        "floor_source": data.get("floor_source") is None
        or isinstance(data["floor_source"], str),
        "d_int_ci": ci is None
        or (
            isinstance(ci, list)
            and len(ci) == 2
            and all(
                v is None or (isinstance(v, int) and not isinstance(v, bool))
                for v in ci
            )
        ),
        "ci_level": _is_number(data.get("ci_level", 0.9))
        and 0 < data.get("ci_level", 0.9) < 1,
        "baseline_from": data.get("baseline_from") is None
        or (
            isinstance(data["baseline_from"], dict)
            and isinstance(data["baseline_from"].get("config_hash"), str)
            and (
                data["baseline_from"].get("path") is None
                or isinstance(data["baseline_from"]["path"], str)
            )
        ),
        "fingerprints": data.get("fingerprints") is None
        or (
            isinstance(data["fingerprints"], dict)
            and isinstance(data["fingerprints"].get("model"), dict)
        ),
    }
    for key, ok in checks.items():
        if not ok:
            return f"bad `{key}`={data.get(key)!r}"
    return None
