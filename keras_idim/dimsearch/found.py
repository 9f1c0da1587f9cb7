"""The models a d-search found: each finished subspace run's theta_d.

A subspace run is its seed (which draws theta_0 through `model_fn` and the
projection P) plus the d numbers of theta_d. So each finished subspace run
keeps, from its best epoch (the one whose monitored value is the run's
`metric`), theta_d, SAID's lambdas and the base model's other state
(BatchNorm moving statistics; none for most models). With a results file
they are written beside it, one small `.npz` file per run
(`RESULTS-runs/d160-seed0.npz` for `RESULTS.json`), and
`SearchResult.model` rebuilds the run's `SubspaceModel` from `model_fn`,
the seed and that file (or the run's record, in memory), with no training
(`rebuild_kept`).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from keras_idim.dimsearch.records import ERROR, RunRecord
from keras_idim.dimsearch.store import config_hash
from keras_idim.objective import Objective
from keras_idim.utils.io import atomic_write, header_npz, read_header_npz
from keras_idim.version import __version__

if TYPE_CHECKING:
    from keras_idim.dimsearch.result import SearchResult

#: Format tag and version of a run's file (version 1: written by keras_idim
#: 0.1.0, without `keras_idim_version`, and 0.2.0).
RUN_FORMAT = "keras_idim.search_run"
RUN_VERSION = 1


def runs_folder(results_path: str | os.PathLike) -> str:
    """The folder of a results file's run files: `runs/fc/results-runs`
    for `runs/fc/results.json`."""
    results_path = os.fspath(results_path)
    stem = os.path.splitext(os.path.basename(results_path))[0]
    return os.path.join(os.path.dirname(results_path), f"{stem}-runs")


def run_file(results_path: str | os.PathLike, dim: int, seed: int) -> str:
    """The file of one run: `RESULTS-runs/d160-seed0.npz`."""
    return os.path.join(runs_folder(results_path), f"d{dim}-seed{seed}.npz")


def theta_0_sha256(model: Any) -> str:
    """SHA-256 of a SubspaceModel's theta_0 (little-endian float32 bytes);
    refused for one that holds none (`keep_theta_0=False`)."""
    if model.theta_0 is None:
        raise ValueError(
            "A search run keeps theta_0's fingerprint, and this SubspaceModel "
            "holds no theta_0 (`keep_theta_0=False`): build the run's models "
            "with `keep_theta_0=True`, the default."
        )
    array = np.asarray(keras.ops.convert_to_numpy(model.theta_0), dtype="<f4")
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def snapshot(model: Any, theta_0_hash: str | None = None) -> dict:
    """What rebuilds a SubspaceModel from its seed: copies of theta_d, the
    lambdas (SAID) and the other base state, and theta_0's fingerprint
    (`theta_0_hash` when it is known already: theta_0 never trains)."""
    arrays = {"theta_d": np.array(keras.ops.convert_to_numpy(model.theta_d))}
    if model.structure_aware:
        arrays["lambdas"] = np.array(keras.ops.convert_to_numpy(model.lambdas))
    for i, v in enumerate(model.state_variables):
        arrays[f"state_{i}"] = np.array(keras.ops.convert_to_numpy(v))
    return {
        "arrays": arrays,
        "theta_0_sha256": theta_0_hash or theta_0_sha256(model),
    }


class KeepBest(keras.callbacks.Callback):
    """Keeps a snapshot of the subspace model at its best epoch (by
    `monitor`, finite values only; the first of equal ones), as the run's
    record `metric` is that epoch's value."""

    def __init__(self, monitor: str, mode: str = "max"):
        super().__init__()
        self.monitor = monitor
        self.mode = mode
        self.objective = Objective(monitor, mode)
        self.best: float | None = None
        self.kept: dict | None = None

    def on_epoch_end(self, epoch: int, logs: Mapping | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        value = float(value)
        if self.best is None or self.objective.better(value, self.best):
            self.best = value
            known = None if self.kept is None else self.kept["theta_0_sha256"]
            self.kept = {**snapshot(self.model, known), "epoch": epoch + 1}


def write(
    results_path: str | os.PathLike,
    record: Any,
    config: Mapping,
    config_hash: str,
) -> str:
    """Writes one finished run's file beside the results file (atomically)."""
    found = record.found
    header = {
        "format": RUN_FORMAT,
        "format_version": RUN_VERSION,
        "keras_idim_version": __version__,
        "dim": record.dim,
        "seed": record.seed,
        "projection": config.get("projection"),
        "structure_aware": bool(config.get("structure_aware")),
        "config_hash": config_hash,
        "theta_0_sha256": found["theta_0_sha256"],
        "epoch": found["epoch"],
        "metric": record.metric,
    }
    path = run_file(results_path, record.dim, record.seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, header_npz(header, found["arrays"]))
    return path


def read(path: str) -> dict:
    """A run's file as `{**header, "arrays": {...}}`; a `ValueError` naming
    it when it is not one."""
    try:
        with open(path, "rb") as f:
            header, arrays = read_header_npz(f.read())
    except OSError as e:
        raise ValueError(
            f"The run file {path!r} is corrupt or truncated ({type(e).__name__}: {e})."
        ) from None
    except ValueError as e:
        raise ValueError(
            f"The run file {path!r} is corrupt or truncated ({e})."
        ) from None
    if not isinstance(header, dict) or header.get("format") != RUN_FORMAT:
        raise ValueError(f"{path!r} is not a keras_idim search run file.")
    if header.get("format_version") != RUN_VERSION:
        raise ValueError(
            f"The run file {path!r} has format version "
            f"{header.get('format_version')!r}; this keras_idim reads version "
            f"{RUN_VERSION}."
        )
    return {**header, "arrays": arrays}


def rebuild(
    model_fn: Callable[[], keras.Model],
    dim: int,
    seed: int,
    projection: str,
    structure_aware: bool,
    kept: Mapping,
    where: str,
    space: Any = None,
) -> keras.Model:
    """The SubspaceModel of a finished run, exactly: theta_0 from
    `model_fn()` after `keras.utils.set_random_seed(seed)` (as the run built
    it), P from the seed, theta_d (and the lambdas, and the other base
    state) from `kept`, the base weights set to `theta_0 + P theta_d`;
    `space` is the run's parameter set (`keras_idim.spaces.get` reads it;
    `None`: every trainable weight)."""
    from keras_idim.subspace import SubspaceModel

    keras.utils.set_random_seed(seed)  # as train_run did before model_fn
    base = model_fn()
    if not isinstance(base, keras.Model):
        raise ValueError(
            "`model_fn` should return a keras.Model. It returned: "
            f"{type(base).__name__}"
        )
    model = SubspaceModel(
        base,
        dim,
        projection=projection,
        seed=seed,
        structure_aware=structure_aware,
        space=space,
    )
    if theta_0_sha256(model) != kept["theta_0_sha256"]:
        raise ValueError(
            f"`model_fn` does not rebuild the run's theta_0 (d={dim}, seed "
            f"{seed}, {where}): the SHA-256 of its initial weights differs from "
            "the one recorded. Pass the search's own model_fn, seeded by "
            "`keras.utils.set_random_seed` alone (on the same machine and "
            "versions)."
        )
    arrays = kept["arrays"]
    model.theta_d.assign(arrays["theta_d"])
    if structure_aware:
        model.lambdas.assign(arrays["lambdas"])
    for i, v in enumerate(model.state_variables):
        v.assign(arrays[f"state_{i}"])
    model.sync_base_weights()
    return model


def kept_runs(result: SearchResult, seed: int) -> list[tuple[int, RunRecord]]:
    """`(d, record)` for each finished subspace run of `result` with `seed`
    whose model is kept: in memory, or in its file beside the results file."""
    kept = []
    for record in [*result.runs, *result.speculative_runs]:
        if record.dim is None or record.seed != seed or record.status == ERROR:
            continue
        if record.found is not None or (
            result.path is not None
            and os.path.isfile(run_file(result.path, record.dim, seed))
        ):
            kept.append((record.dim, record))
    return kept


def rebuild_kept(
    result: SearchResult, model_fn: Callable | None, d: int | None, seed: int
) -> keras.Model:
    """The SubspaceModel that `result`'s run `(d, seed)` found, rebuilt with
    no training (see `SearchResult.model`); `d=None` means `d_int`."""
    model_fn = result.model_fn if model_fn is None else model_fn
    if not callable(model_fn):
        raise ValueError(
            "`model_fn` should be the search's model function (a results "
            "file cannot hold one): pass "
            "`result.model(model_fn=make_model, d=..., seed=...)`. "
            f"Received: `model_fn={model_fn!r}`"
        )
    if d is None:
        if result.d_int is None:
            raise ValueError(
                "`d=None` means d_int, and no d passed: pass a finished d "
                f"(with seed {seed}: {result.finished_dims(seed)})."
            )
        d = result.d_int
    kept = dict(kept_runs(result, seed))
    if isinstance(d, bool) or not isinstance(d, int) or d not in kept:
        raise ValueError(
            f"`d` should be a d whose run with seed {seed} finished and kept "
            f"its model: {sorted(kept) or 'none'}. Received: `d={d!r}`"
        )
    record = kept[d]
    if record.found is not None:
        state, where = record.found, "kept in memory"
    else:
        where = run_file(result.path, d, seed)
        state = read(where)
        if state.get("config_hash") != config_hash(result.config):
            raise ValueError(
                f"The run file {where!r} belongs to another search (its "
                "configuration hash differs from the results file's)."
            )
    return rebuild(
        model_fn,
        d,
        seed,
        result.config["projection"],
        bool(result.config.get("structure_aware")),
        state,
        where,
        space=result.config.get("space"),
    )
