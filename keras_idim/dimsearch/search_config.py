"""`SearchConfig`: one search's settings, checked, described and hashed.

`SearchConfig.from_arguments` takes `keras_idim.search`'s arguments (its
defaults for those left out), checks every one before any work, and keeps
the checked values. `description()` is the configuration that the results
file stores, `hash()` its hash, and `recipe()` the runner's `Recipe`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from collections.abc import Callable
from typing import Any

import keras

from keras_idim import _compat
from keras_idim import projections as projections_module
from keras_idim.dimsearch import config as cfg
from keras_idim.dimsearch import describe, methods, metric_checks, store
from keras_idim.dimsearch.comparison import reusable_baseline
from keras_idim.dimsearch.data_checks import (
    as_dataset,
    check_class_labels,
    check_finite,
)
from keras_idim.dimsearch.recipe import Recipe
from keras_idim.dimsearch.records import THRESHOLD_RULES
from keras_idim.dimsearch.result import SearchResult
from keras_idim.dimsearch.runner import InProcessRunner, Runner
from keras_idim.utils.exports import keras_idim_export
from keras_idim.utils.validation import (
    check_choice,
    check_fraction,
    check_name,
    check_positive_int,
    check_positive_number,
    is_number,
    received,
)


@keras_idim_export("keras_idim.dimsearch.SearchConfig")
@dataclasses.dataclass(frozen=True, eq=False)
class SearchConfig:
    """One d-search's settings, checked (see `keras_idim.search` for each).

    Build it with `from_arguments`. Its attributes are the checked values
    of `keras_idim.search`'s arguments of the same names, with these
    differences: `projection` is the projection's name; `space` a
    `keras_idim.spaces.Space`; `method` a `keras_idim.dimsearch.methods.Method`
    (from `method` and the settings it reads: `Subspace` or `LoRA`);
    `metrics` a list; `seeds` a tuple; `baseline` a global baseline's
    value only (a search to reuse is `reuse`, with
    `baseline_from`, what the results file records of it); `runner` the
    runner that carries out the runs (from `runner`, `workers` and
    `ray_address`); and `optimizers` the factories of the subspace runs'
    and the baseline's optimizers with their descriptions.
    """

    model_fn: Callable[[], keras.Model]
    train_data: Any
    val_data: Any
    name: str | None
    projection: str
    structure_aware: bool
    space: Any
    fraction: float
    baseline: float | None
    dims: Any
    seeds: tuple[int, ...]
    epochs: int
    batch_size: int
    optimizer: Any
    learning_rate: float | str | None
    baseline_learning_rate: float | str | None
    said_learning_rate: float | None
    loss: Any
    metrics: list
    monitor: str
    mode: str
    threshold: float | None
    callbacks: Any
    tensorboard: str | None
    method: methods.Method
    lora_targets: Any
    lora_train: Any
    tolerance: float
    start_dim: int
    max_dim: int | None
    threshold_rule: str
    floor: float | None
    ci_level: float
    overwrite: bool
    verbose: int
    results_path: str | None
    runner: Runner
    optimizers: dict = dataclasses.field(repr=False)
    reuse: SearchResult | None = dataclasses.field(default=None, repr=False)
    baseline_from: dict | None = None

    @classmethod
    def from_arguments(
        cls, model_fn: Any, train_data: Any, val_data: Any, **arguments: Any
    ) -> SearchConfig:
        """Checks `keras_idim.search`'s arguments, before any work.

        Args:
            model_fn: callable. As `keras_idim.search` takes it.
            train_data: tuple, tf.data.Dataset or callable. Likewise.
            val_data: tuple, tf.data.Dataset or callable. Likewise.
            **arguments: the other arguments of `keras_idim.search`, by
                name; one left out takes `search`'s default.

        Returns:
            A `SearchConfig`.

        Raises:
            TypeError: an argument that `keras_idim.search` does not take.
            ValueError: an argument's value, in one line naming it.
            RuntimeError: Keras' backend is not TensorFlow.
        """
        from keras_idim.dimsearch.api import search

        bound = inspect.signature(search).bind(
            model_fn, train_data, val_data, **arguments
        )
        bound.apply_defaults()
        a = dict(bound.arguments)
        _compat.check_backend("a d-search")
        if not callable(model_fn) or isinstance(model_fn, keras.Model):
            raise ValueError(
                "`model_fn` should be a function that builds and returns a fresh, "
                f"built keras.Model on each call. {received('model_fn', model_fn)}"
            )
        a["projection"] = projections_module.get(a["projection"]).name
        reuse_source = _check_target(a)
        _check_run_settings(a)
        _check_recipe(a)
        a["runner"] = _choose_runner(
            a["runner"], a.pop("workers"), a.pop("ray_address"), train_data, val_data
        )
        a["optimizers"] = {
            "subspace": cfg.optimizer_factory(a["optimizer"], a["learning_rate"]),
            "baseline": cfg.optimizer_factory(
                a["optimizer"], a["baseline_learning_rate"]
            ),
        }
        check_data(train_data, val_data, a["loss"], a["batch_size"])
        a["results_path"] = cfg.check_results_path(a["results_path"])
        config = cls(**a)
        if reuse_source is None:
            return config
        reuse, baseline_from = reusable_baseline(config.description(), reuse_source)
        return dataclasses.replace(config, reuse=reuse, baseline_from=baseline_from)

    def description(self) -> dict:
        """The configuration as the results file stores it (as JSON reads
        it back): what a resumed search must match."""
        optimizers = self.optimizers
        config = {
            "name": self.name,
            "model_fn": describe.describe_object(self.model_fn),
            "train_data": describe.describe_data(self.train_data),
            "val_data": describe.describe_data(self.val_data),
            "projection": self.projection,
            "structure_aware": self.structure_aware,
            "space": self.space.spec,
            "fraction": self.fraction,
            "baseline": self.baseline,
            "dims": self.dims,
            "seeds": list(self.seeds),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "optimizer": optimizers["subspace"][1],
            "baseline_optimizer": optimizers["baseline"][1],
            "said_learning_rate": self.said_learning_rate,
            "loss": describe.describe_object(self.loss),
            "metrics": [describe.describe_object(m) for m in self.metrics],
            "monitor": self.monitor,
            "mode": self.mode,
            "threshold": self.threshold,
            "callbacks": describe.describe_callbacks(self.callbacks),
            "method": self.method.name,
            "lora_targets": describe.describe_selector(self.lora_targets),
            "lora_train": describe.describe_selector(self.lora_train),
            "tolerance": self.tolerance,
            "start_dim": self.start_dim,
            "max_dim": self.max_dim,
            "threshold_rule": self.threshold_rule,
            "floor": self.floor,
        }
        config = json.loads(json.dumps(config, default=str))  # as stored in JSON
        if self.baseline_from is not None:
            config["baseline_from"] = self.baseline_from["config_hash"]
        return config

    def hash(self) -> str:
        """The hash of `description()` (see `store.config_hash`)."""
        return store.config_hash(self.description())

    def recipe(self) -> Recipe:
        """How each run of this search trains."""
        return Recipe(
            model_fn=self.model_fn,
            train_data=self.train_data,
            val_data=self.val_data,
            batch_size=self.batch_size,
            epochs=self.epochs,
            loss=self.loss,
            metrics=self.metrics,
            monitor=self.monitor,
            mode=self.mode,
            projection=self.projection,
            structure_aware=self.structure_aware,
            space=self.space,
            optimizer=self.optimizers["subspace"][0],
            baseline_optimizer=self.optimizers["baseline"][0],
            callbacks=self.callbacks,
            tensorboard=self.tensorboard,
            method=self.method,
            lora_targets=self.lora_targets,
            lora_train=self.lora_train,
            fit_verbose=2 if self.verbose >= 2 else 0,
            learning_rate=self.learning_rate,
            baseline_learning_rate=self.baseline_learning_rate,
            said_learning_rate=self.said_learning_rate,
        )


def _check_target(a: dict) -> Any:
    """Checks what the threshold comes from (`fraction`, `baseline`,
    `threshold`, `threshold_rule`, `floor`) in `a`, in place; returns the
    search whose baseline to reuse, or None."""
    a["fraction"] = check_fraction("fraction", a["fraction"], " (e.g. 0.9 for d_int90)")
    baseline, threshold = a["baseline"], a["threshold"]
    reuse_source = None
    if isinstance(baseline, (SearchResult, str, os.PathLike)):
        reuse_source, baseline = baseline, None
        if threshold is not None:
            raise ValueError(
                "Pass `threshold` or a baseline to reuse, not both: an absolute "
                f"threshold needs no baseline. Received: `threshold={threshold!r}`"
            )
    baseline = check_positive_number(
        "baseline", baseline, allow_none=True, hint=" (a global baseline)"
    )
    if threshold is not None:
        if not is_number(threshold):
            raise ValueError(
                "`threshold` should be a finite number (an absolute target for "
                f"`monitor`) or None. {received('threshold', threshold)}"
            )
        if baseline is not None:
            raise ValueError(
                "Pass `threshold` or `baseline`, not both: an absolute "
                "threshold needs no baseline. "
                f"Received: `threshold={threshold!r}`, `baseline={baseline!r}`"
            )
        threshold = float(threshold)
    a["baseline"], a["threshold"] = baseline, threshold
    rule = a["threshold_rule"] = check_choice(
        "threshold_rule", a["threshold_rule"], THRESHOLD_RULES
    )
    if threshold is not None and rule != "baseline":
        raise ValueError(
            "Pass `threshold` or `threshold_rule='above_floor'`, not both: an "
            "absolute threshold is derived from no baseline. Received: "
            f"`threshold={threshold!r}`, `threshold_rule={rule!r}`"
        )
    floor = a["floor"]
    if floor is not None:
        if not is_number(floor):
            raise ValueError(
                "`floor` should be a finite number (the score of a constant "
                f"predictor on `monitor`) or None. {received('floor', floor)}"
            )
        a["floor"] = float(floor)
    return reuse_source


def _check_run_settings(a: dict) -> None:
    """Checks `ci_level`, `overwrite` and `verbose` in `a`, in place."""
    ci_level = a["ci_level"]
    if not (is_number(ci_level) and 0 < ci_level < 1):
        raise ValueError(
            "`ci_level` should be a number in (0, 1) (e.g. 0.9 for a 90% "
            f"interval). {received('ci_level', ci_level)}"
        )
    a["ci_level"] = float(ci_level)
    if not isinstance(a["overwrite"], bool):
        raise ValueError(
            "`overwrite` should be True (start over, keeping the old results "
            f"file as .bak) or False (resume). {received('overwrite', a['overwrite'])}"
        )
    if a["verbose"] not in (0, 1, 2):
        raise ValueError(
            "`verbose` should be 0 (silent), 1 (a line per run and a progress "
            f"line) or 2 (also each epoch). {received('verbose', a['verbose'])}"
        )


def _check_recipe(a: dict) -> None:
    """Checks how each run trains and which d are tried, in `a`, in place."""
    a["dims"] = cfg.check_dims(a["dims"])
    a["seeds"] = tuple(cfg.check_seeds(a["seeds"]))
    a["epochs"] = check_positive_int("epochs", a["epochs"])
    a["batch_size"] = check_positive_int("batch_size", a["batch_size"])
    a["start_dim"] = check_positive_int("start_dim", a["start_dim"])
    if a["max_dim"] is not None:
        a["max_dim"] = check_positive_int("max_dim", a["max_dim"])
    a["tolerance"] = check_positive_number(
        "tolerance", a["tolerance"], hint=" (e.g. 0.1)"
    )
    for arg in ("learning_rate", "baseline_learning_rate"):
        a[arg] = cfg.check_learning_rate(arg, a[arg])
    said_rate = a["said_learning_rate"]
    check_positive_number("said_learning_rate", said_rate, allow_none=True)
    monitor = a["monitor"] = check_name("monitor", a["monitor"])
    metrics = a["metrics"] = metric_checks.check_metrics(a["metrics"])
    callbacks = a["callbacks"] = cfg.check_callbacks(a["callbacks"])
    a["mode"] = metric_checks.resolve_mode(a["mode"], monitor, metrics, callbacks)
    metric_checks.check_monitor(monitor, a["mode"], metrics, callbacks)
    a["structure_aware"] = cfg.check_structure_aware(a["structure_aware"])
    a["space"] = cfg.check_space(a["space"], a["method"])
    a["method"] = methods.get(
        a["method"],
        projection=a["projection"],
        structure_aware=a["structure_aware"],
        space=a["space"],
        said_learning_rate=said_rate,
        lora_targets=a["lora_targets"],
        lora_train=a["lora_train"],
    )
    if said_rate is not None and not a["structure_aware"]:
        raise ValueError(
            "`said_learning_rate` is the rate of SAID's scales: it needs "
            "`structure_aware=True`. " + received("said_learning_rate", said_rate)
        )
    a["method"].check()
    a["tensorboard"] = cfg.check_tensorboard(a["tensorboard"])


def check_data(train_data: Any, val_data: Any, loss: Any, batch_size: int) -> None:
    """Refuses data with a NaN or an infinity, labels that the loss cannot
    take, or a dataset that is infinite or empty, naming the argument; a
    callable is left to be built inside each run."""
    for arg, data, shuffle in (
        ("train_data", train_data, True),
        ("val_data", val_data, False),
    ):
        if not callable(data):
            check_finite(arg, data)
            check_class_labels(arg, data, loss)
            as_dataset(data, batch_size, shuffle=shuffle, arg=arg)


def _choose_runner(
    runner: Any, workers: Any, ray_address: Any, train_data: Any, val_data: Any
) -> Runner:
    """The user's runner, the Ray one for `workers > 1` or an address, or
    the in-process one; every argument checked before any work."""
    workers = check_positive_int("workers", workers)
    if ray_address is not None and not (isinstance(ray_address, str) and ray_address):
        raise ValueError(
            "`ray_address` should be None (a Ray on this machine) or the "
            "address of a Ray cluster, e.g. 'auto' or 'HEAD_IP:6379'. "
            f"{received('ray_address', ray_address)}"
        )
    if runner is None:
        if workers == 1 and ray_address is None:
            return InProcessRunner()
        from keras_idim.dimsearch.ray_runner import RayRunner, check_ray

        check_ray(workers, ray_address, train_data, val_data)
        return RayRunner(workers=workers, address=ray_address)
    if not isinstance(runner, Runner):
        raise ValueError(
            "`runner` should be a keras_idim Runner (e.g. "
            "`keras_idim.dimsearch.runner.InProcessRunner()`) or None. "
            f"{received('runner', runner)}"
        )
    if workers > 1 or ray_address is not None:
        raise ValueError(
            "Pass `runner` or `workers`/`ray_address`, not both. Received: "
            f"`runner={runner!r}`, `workers={workers}`, "
            f"`ray_address={ray_address!r}`"
        )
    return runner
