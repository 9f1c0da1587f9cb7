"""What differs between two searches' descriptions and fingerprints, in
words: the lines of `store`'s refusal of a results file that another search
wrote (another configuration, model or data)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

#: What the errors call the parts of a search that decide its answer.
DATA_NAMES = {"train_data": "the training data", "val_data": "the validation data"}


def _short(value: Any) -> str:
    """A description in a line: SHA-256 digests cut to 12 characters."""
    text = json.dumps(value, sort_keys=True, default=str)
    text = re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", r"\1...", text)
    return text if len(text) <= 300 else text[:300] + "..."


def data_difference(key: str, mine: Any, theirs: Any) -> str:
    """`the training data differ (...)`, naming the part that differs."""
    what = DATA_NAMES.get(key, key)
    if isinstance(mine, dict) and isinstance(theirs, dict):
        for field, words in (
            ("partial", "functools.partial of"),
            ("args", "the partial's positional arguments"),
            ("keywords", "the partial's keyword arguments"),
            ("element_spec", "element_spec"),
            ("first_batches_sha256", "SHA-256 of the first batches"),
        ):
            if field in mine and field in theirs and mine[field] != theirs[field]:
                if mine[field] is None or theirs[field] is None:
                    continue  # not recorded on one side: not compared
                return (
                    f"{what} differ ({words} {_short(mine[field])} here, "
                    f"{_short(theirs[field])} in the file)"
                )
        if set(mine) & set(theirs) <= {"not_read"}:
            return ""  # one side could not be read: nothing to compare
    return f"{what} differ ({_short(mine)} here, {_short(theirs)} in the file)"


def _model_differences(mine: Mapping, theirs: Mapping, seed: Any) -> list[str]:
    found = []
    if mine.get("D") != theirs.get("D"):
        found.append(
            f"the model differs: D = {mine.get('D'):,} here, "
            f"{theirs.get('D'):,} in the file"
            if isinstance(mine.get("D"), int) and isinstance(theirs.get("D"), int)
            else f"the model differs: D = {mine.get('D')!r} here, "
            f"{theirs.get('D')!r} in the file"
        )
    if mine.get("architecture_sha256") != theirs.get("architecture_sha256"):
        found.append(
            "the model's architecture differs (SHA-256 of its "
            f"{mine.get('architecture_from')} "
            f"{_short(mine.get('architecture_sha256'))} here, "
            f"{_short(theirs.get('architecture_sha256'))} in the file)"
        )
    if mine.get("theta0_sha256") != theirs.get("theta0_sha256"):
        found.append(
            "the model's initial weights theta_0 differ (SHA-256 of the "
            f"trainable weights of `model_fn()` built with seed {seed}: "
            f"{_short(mine.get('theta0_sha256'))} here, "
            f"{_short(theirs.get('theta0_sha256'))} in the file)"
        )
    return found


def fingerprint_differences(mine: Mapping, theirs: Mapping) -> list[str]:
    """What differs between two searches' fingerprints, in words."""
    found = _model_differences(mine["model"], theirs.get("model") or {}, mine["seed"])
    for key in ("train_data", "val_data"):
        if mine.get(key) != theirs.get(key):
            words = data_difference(key, mine.get(key), theirs.get(key))
            if words:
                found.append(words)
    return found
