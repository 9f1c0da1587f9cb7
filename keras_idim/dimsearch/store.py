"""The results file of a d-search: load, verify, save atomically.

Its format is a contract: a file written by an earlier keras_idim resumes.
It is a JSON object with `format` (`RESULTS_FORMAT`), `version` (the
format's version, `RESULTS_VERSION`), `keras_idim_version` (the keras_idim
that wrote it; absent from files of keras_idim 0.1.0, whose format version
is the same), the search's `config` and its `config_hash`, `monitor`,
`mode`, `fraction`, `threshold`, `baseline` (`{"value", "kind"}` or null
while the baseline still trains), the runs (`baseline_runs`, `runs` on the
sequential path, `speculative_runs`) as `RunRecord` dicts, and `d_int`.
A file of version 1 may lack these (read as their defaults): `floor`
(the chance floor, or null when none was checked) and `floor_source`,
`threshold_rule` (`"baseline"`), `d_int_ci` (`[low, high]` or null),
`ci_level`, and `baseline_from` (null, or `{"path", "config_hash"}`: the
search whose local baseline was reused, see `search(baseline=...)`), and
`fingerprints` (null, or `{"model", "train_data", "val_data", "seed"}`
taken at the search's start, see `keras_idim.dimsearch.fingerprint` and
`check_fingerprints`).

Each field is checked as it is read (`file_checks`); a file that another
search wrote is refused with what differs, in words (`differences`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from keras_idim.dimsearch.differences import (
    DATA_NAMES,
    data_difference,
    fingerprint_differences,
)
from keras_idim.dimsearch.file_checks import added_problem, record_problem
from keras_idim.dimsearch.records import (
    MODES,
    Baseline,
    RunRecord,
    threshold_of,
)
from keras_idim.utils.exports import keras_idim_export
from keras_idim.utils.io import atomic_write
from keras_idim.version import __version__

#: Format tag and version of the results file (version 1: written by
#: keras_idim 0.1.0 and 0.2.0).
RESULTS_FORMAT = "keras_idim.search"
RESULTS_VERSION = 1

#: Configuration keys added after version 1 was first written, with the
#: value that a search before them had. A key at that value is left out of
#: the hash, so that an older file's hash still matches and it resumes.
ADDED_KEYS: dict[str, Any] = {
    "metrics": ["accuracy"],
    "mode": "max",
    "threshold": None,
    "callbacks": None,
    "method": "subspace",
    "lora_targets": None,
    "lora_train": None,
    "threshold_rule": "baseline",
    "floor": None,
    "baseline_from": None,
    "said_learning_rate": None,
    "space": "weights",
}

_RUN_LISTS = ("baseline_runs", "runs", "speculative_runs")


@keras_idim_export("keras_idim.dimsearch.SearchFileError")
class SearchFileError(ValueError):
    """A results file that cannot be used: corrupt, foreign, or mismatched."""


@keras_idim_export("keras_idim.dimsearch.SearchBusyError")
class SearchBusyError(SearchFileError):
    """A results file that another search, still running, writes."""


def _owner(owner_path: str) -> str:
    """Who holds a lock, from its sidecar file: "process 123 on host h"."""
    try:
        with open(owner_path, encoding="utf-8") as f:
            owner = json.load(f)
        return f"process {int(owner['pid'])} on host {owner['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its id is not recorded yet)"


@contextlib.contextmanager
def lock(path: str | os.PathLike) -> Iterator[None]:
    """Holds the results file for one search, or refuses at once.

    The lock is the operating system's (`filelock.FileLock` on
    `PATH.lock`, an `flock` on Unix): the kernel lets it go when its
    process ends, also by `kill -9`, so a dead search never blocks the
    next. While it is held, `PATH.lock.owner` says which process holds it
    (its id and host), for the error that another search gets.

    Raises:
        SearchBusyError: another search holds the file; the error names its
            process id and host.
    """
    from filelock import FileLock, Timeout

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    owner_path = path + ".lock.owner"
    held = FileLock(path + ".lock", timeout=0)
    try:
        held.acquire()
    except Timeout:
        raise SearchBusyError(
            f"The results file {path} is in use by another search: "
            f"{_owner(owner_path)}. Two searches on one file would each keep "
            "only their own runs. Wait for it to end (or stop it), or use "
            "another `results_path`."
        ) from None
    try:
        owner = {"pid": os.getpid(), "host": socket.gethostname()}
        atomic_write(owner_path, json.dumps(owner))
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(owner_path)
        held.release()


def config_hash(config: Mapping) -> str:
    """SHA-256 of the canonical JSON of a configuration (see `ADDED_KEYS`)."""
    kept = {
        k: v for k, v in config.items() if not (k in ADDED_KEYS and v == ADDED_KEYS[k])
    }
    canonical = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def state_dict(
    config: Mapping,
    *,
    monitor: str,
    mode: str,
    fraction: float,
    baseline: Baseline | None,
    baseline_runs: Sequence[RunRecord],
    runs: Sequence[RunRecord],
    speculative_runs: Sequence[RunRecord] = (),
    d_int: int | None = None,
    threshold_rule: str = "baseline",
    floor: float | None = None,
    floor_source: str | None = None,
    d_int_ci: Sequence | None = None,
    ci_level: float = 0.9,
    baseline_from: Mapping | None = None,
    fingerprints: Mapping | None = None,
) -> dict:
    """The content of a results file (also of a search still under way)."""
    return {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "keras_idim_version": __version__,
        "config": dict(config),
        "config_hash": config_hash(config),
        "monitor": monitor,
        "mode": mode,
        "fraction": fraction,
        "threshold": None
        if baseline is None
        else threshold_of(baseline, fraction, mode, threshold_rule, floor),
        "baseline": None
        if baseline is None
        else {"value": baseline.value, "kind": baseline.kind},
        "baseline_runs": [r.to_dict() for r in baseline_runs],
        "runs": [r.to_dict() for r in runs],
        "speculative_runs": [r.to_dict() for r in speculative_runs],
        "d_int": d_int,
        "threshold_rule": threshold_rule,
        "floor": floor,
        "floor_source": floor_source,
        "d_int_ci": None if d_int_ci is None else list(d_int_ci),
        "ci_level": ci_level,
        "baseline_from": None if baseline_from is None else dict(baseline_from),
        "fingerprints": None if fingerprints is None else dict(fingerprints),
    }


def save(path: str | os.PathLike, state: Mapping) -> None:
    """Writes a state atomically: a crash leaves the old file or the new one."""
    atomic_write(path, json.dumps(state, indent=1))


def read_text(path: str | os.PathLike) -> str:
    """The text of a results file, or a `SearchFileError` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise SearchFileError(
            f"The results file {os.fspath(path)} is not text (it is binary or "
            "corrupt). Move it away or delete it to start the search afresh."
        ) from None


def _corrupt(source: Any, what: str) -> SearchFileError:
    return SearchFileError(
        f"The results file {source!s} is corrupt ({what}). Move it away or "
        "delete it to start the search afresh."
    )


def _check_record(data: Any, source: Any, where: str) -> RunRecord:
    """A record from the file, every field checked; the error names it."""
    problem = record_problem(data)
    if problem is not None:
        raise _corrupt(source, where + problem)
    return RunRecord.from_dict(data)


def parse(text: str, source: Any) -> dict:
    """The checked content of a results file; `SearchFileError` if unusable.

    Args:
        text: str. The file's text.
        source: Any. What to call it in errors (its path).

    Returns:
        The state, with its run lists turned into `RunRecord`s.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _corrupt(source, f"not valid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise SearchFileError(
            f"The file {source!s} is not a keras_idim search results file. "
            "Use another `results_path`."
        )
    if data.get("version") != RESULTS_VERSION:
        raise SearchFileError(
            f"The results file {source!s} has format version "
            f"{data.get('version')!r}; this keras_idim reads version "
            f"{RESULTS_VERSION}."
        )
    for key in ("config", "config_hash", "runs"):
        if key not in data:
            raise _corrupt(source, f"missing or malformed '{key}'")
    if not isinstance(data["config"], dict):
        raise _corrupt(source, "`config` is not an object")
    if data.get("mode", "max") not in MODES:
        raise _corrupt(source, f"bad `mode`={data.get('mode')!r}")
    problem = added_problem(data)
    if problem is not None:
        raise _corrupt(source, problem)
    for key in _RUN_LISTS:
        records = data.get(key, [])
        if not isinstance(records, list):
            raise _corrupt(source, f"`{key}` is not a list")
        data[key] = [
            _check_record(r, source, f"{key}[{i}]") for i, r in enumerate(records)
        ]
    return data


def load(path: str | os.PathLike) -> dict:
    """Reads and checks a results file (see `parse`)."""
    return parse(read_text(path), os.fspath(path))


#: How to start over, in every refusal of a file written by another search.
_START_OVER = (
    "Nothing was overwritten: pass `overwrite=True` (CLI: `--overwrite`) to "
    "start over (the old file is then kept as {path}.bak), use another "
    "`results_path`, or delete the file."
)


def check_fingerprints(
    path: str | os.PathLike, previous: Mapping, mine: Mapping
) -> str | None:
    """Refuses a results file written for another model or other data.

    Returns:
        None when the file's fingerprints match; one line to print when the
        file has none (written before they were recorded): it resumes
        unchecked.

    Raises:
        SearchFileError: the file was written for another model or other
            data; the error names what differs.
    """
    path = os.fspath(path)
    theirs = previous.get("fingerprints")
    if theirs is None:
        return (
            f"{path} was written before keras_idim recorded the model's and "
            "the data's fingerprints: it could not be checked against this "
            "model and data, and resumes as it is (pass `overwrite=True` to "
            "start over)."
        )
    found = fingerprint_differences(mine, theirs)
    if found:
        raise SearchFileError(
            f"The results file {path} was written by a search of another "
            f"problem: {'; '.join(found)}. " + _START_OVER.format(path=path)
        )
    return None


def load_previous(
    path: str | os.PathLike, config: Mapping, fingerprints: Mapping | None = None
) -> dict | None:
    """The stored state of an earlier search with this config, if any
    (its error, for another configuration, also names what differs in the
    `fingerprints`, where the file has them).

    Raises:
        SearchFileError: the file is unusable, or was written by a search
            with another configuration (it is never overwritten).
    """
    if not os.path.exists(path):
        return None
    data = load(path)
    if data["config_hash"] != config_hash(config):
        theirs = data["config"]
        differ = sorted(
            k
            for k in set(config) | set(theirs)
            if config.get(k, ADDED_KEYS.get(k)) != theirs.get(k, ADDED_KEYS.get(k))
        )
        details = [
            data_difference(k, config.get(k), theirs.get(k))
            for k in differ
            if k in DATA_NAMES
        ]
        if fingerprints is not None and data.get("fingerprints") is not None:
            details += fingerprint_differences(fingerprints, data["fingerprints"])
        raise SearchFileError(
            f"The results file {os.fspath(path)} was written by a search with "
            "another configuration (differing in: "
            f"{', '.join(differ) or 'its hash'}). "
            + "".join(f"{d[0].upper()}{d[1:]}. " for d in details if d)
            + _START_OVER.format(path=os.fspath(path))
        )
    return data
