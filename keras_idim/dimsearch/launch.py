"""A search launched from its `SearchConfig`: the results file's lock, the
model built once (D, the output shape, the fingerprint), the d checked
against it, the chance floor and the strategy, then the `Driver`."""

from __future__ import annotations

import contextlib
from typing import Any

import keras

from keras_idim.dimsearch import config as cfg
from keras_idim.dimsearch import store
from keras_idim.dimsearch.data_checks import check_batched
from keras_idim.dimsearch.driver import Driver
from keras_idim.dimsearch.fingerprint import data_fingerprint, model_fingerprint
from keras_idim.dimsearch.floor import Floor, chance_floor, output_shape_of
from keras_idim.dimsearch.making import begin
from keras_idim.dimsearch.result import SearchResult
from keras_idim.dimsearch.search_config import SearchConfig
from keras_idim.dimsearch.strategy import make_strategy


def run(config: SearchConfig) -> SearchResult:
    """Runs (or resumes) the search that `config` describes.

    It holds the results file's lock while it runs, builds `model_fn()`
    once to learn D (or the largest useful LoRA rank), the output shape and
    the model's fingerprint, checks the d to try against them, computes
    the chance floor, and hands a `Driver` the strategy: the `Driver` reads
    the results file (refusing one of another search) and runs the rest.

    Args:
        config: SearchConfig. The search's checked settings.

    Returns:
        A `SearchResult`.
    """
    results_path = config.results_path

    def say(message: str) -> None:
        if config.verbose:
            print(message, flush=True)

    # One search at a time on a results file; the lock is taken before the
    # file is read and let go when the search ends, however it ends.
    with store.lock(results_path) if results_path else contextlib.nullcontext():
        probe = _probe_model(config)
        seed = config.seeds[0]
        # The data are read up front only for a results file to check.
        prints = {
            "model": probe["model_print"],
            "train_data": data_fingerprint(config.train_data, seed)
            if results_path
            else None,
            "val_data": data_fingerprint(config.val_data, seed)
            if results_path
            else None,
            "seed": seed,
        }
        min_dim = _check_dims(config, probe)
        strategy = make_strategy(
            config.dims,
            start=config.start_dim,
            tolerance=config.tolerance,
            max_dim=config.max_dim or probe["limit"],
            min_dim=min_dim,
        )
        # Reads the results file, and refuses one of another search.
        driver = Driver(
            config.recipe(),
            strategy,
            config.runner,
            begin(config, _floor(config, probe["output_shape"]), prints),
            say=say,
            overwrite=config.overwrite,
        )
        return driver.run()


def _probe_model(config: SearchConfig) -> dict:
    """Builds `model_fn()` once, before any training: the largest d (the
    space's D, or the largest useful LoRA rank), the number of weight
    tensors (for SAID), the output shape and the model's fingerprint
    (`Method.measure`)."""
    train_data, val_data = config.train_data, config.val_data

    def batched(model: keras.Model) -> keras.Model:
        """Refuses an unbatched dataset, from the first model's inputs."""
        for arg, data in (("train_data", train_data), ("val_data", val_data)):
            check_batched(arg, data, model)
        return model

    method = config.method
    model_print, output_shape, limit, tensors = cfg.check_model_fn(
        config.model_fn,
        config.seeds[0],
        lambda m: (
            model_fingerprint(batched(m)),  # before the method changes it
            output_shape_of(m),
            *method.measure(m),  # the largest k (and SAID's tensors)
        ),
    )
    return {
        "limit": limit,
        "tensors": tensors,
        "output_shape": output_shape,
        "model_print": model_print,
    }


def _check_dims(config: SearchConfig, probe: dict) -> int:
    """Refuses d that the model cannot take; returns the smallest d."""
    measured = (probe["limit"], probe["tensors"])
    return config.method.check_dims(
        config.dims, config.start_dim, config.max_dim, measured
    )


def _floor(config: SearchConfig, output_shape: Any) -> Floor:
    """The chance floor; refuses `threshold_rule='above_floor'` without one."""
    floor = chance_floor(
        train_data=config.train_data,
        val_data=config.val_data,
        monitor=config.monitor,
        loss=config.loss,
        metrics=config.metrics,
        output_shape=output_shape,
        batch_size=config.batch_size,
        given=config.floor,
    )
    if config.threshold_rule == "above_floor" and floor.value is None:
        raise ValueError(
            "`threshold_rule='above_floor'` needs a chance floor, and none can "
            f"be computed here ({floor.source}): pass `floor=`. "
            "Received: `threshold_rule='above_floor'`, `floor=None`"
        )
    return floor
