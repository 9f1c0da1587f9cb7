"""`Recipe`: everything a run of a d-search needs besides its d, seed and
threshold; and the names a run goes by (its kind, its folder)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras

from keras_idim.dimsearch import methods
from keras_idim.spaces import Space, Weights

#: A run: `(dim, seed)`, with `dim=None` for a baseline run.
Task = tuple


@dataclasses.dataclass
class Recipe:
    """Everything a run needs besides its d, seed and threshold.

    Attributes:
        model_fn: callable. Returns a fresh, built `keras.Model`.
        train_data, val_data: arrays `(x, y)`, a batched `tf.data.Dataset`,
            or a callable returning one (called inside the run).
        batch_size: int. Batch size of array data.
        epochs: int. Epochs per run at most.
        loss: str or keras loss.
        metrics: list. Keras metrics to compile (fresh copies each run).
        monitor: str. The logged name the search judges by.
        mode: str. `"max"` or `"min"`.
        projection: str. The projection kind.
        structure_aware: bool. SAID subspaces.
        optimizer: callable. Makes a fresh optimizer for a subspace run,
            with the rate it is given (`None`: the one it was set to).
        baseline_optimizer: callable. Likewise for a baseline run.
        callbacks: list or callable. The user's callbacks, or
            `(dim, seed) -> list` (`dim=None` for a baseline run).
        tensorboard: str or None. A folder; each run logs to its own
            sub-folder (see `run_name`).
        method: `keras_idim.dimsearch.methods.Method`, or its name (made one
            from the other attributes). What d sizes: a `Subspace`'s
            dimension, or the rank of `LoRA` adapters.
        lora_targets: list, callable or None. The layers that get adapters
            (see `keras_idim.lora.targets`).
        lora_train: list, callable or None. Layers that also train fully.
        fit_verbose: int. `verbose` of each run's `model.fit` (2: a line
            per epoch, as Keras prints it; 0: nothing).
        learning_rate: float, `"auto"` or None. The subspace (or LoRA)
            runs' rate as the user gave it: `"auto"` probes each run's
            (`keras_idim.dimsearch.rates`); `None` keeps the optimizer's.
        baseline_learning_rate: float, `"auto"` or None. Likewise for the
            baseline's runs.
        said_learning_rate: float or None. The rate of SAID's scales (see
            `SubspaceModel`); `None`: derived from theta_d's.
        space: `keras_idim.spaces.Space`. The parameter set a subspace
            run's theta_d moves. Defaults to every trainable weight.
    """

    model_fn: Callable[[], keras.Model]
    train_data: Any
    val_data: Any
    batch_size: int
    epochs: int
    loss: Any
    monitor: str
    projection: str
    structure_aware: bool
    optimizer: Callable[..., keras.optimizers.Optimizer]
    baseline_optimizer: Callable[..., keras.optimizers.Optimizer]
    metrics: list = dataclasses.field(default_factory=lambda: ["accuracy"])
    mode: str = "max"
    callbacks: Any = None
    tensorboard: str | None = None
    method: methods.Method | str = "subspace"
    lora_targets: Any = None
    lora_train: Any = None
    fit_verbose: int = 0
    learning_rate: float | str | None = None
    baseline_learning_rate: float | str | None = None
    said_learning_rate: float | None = None
    space: Space = dataclasses.field(default_factory=Weights)

    def __post_init__(self):
        if isinstance(self.method, str):
            self.method = methods.get(
                self.method,
                projection=self.projection,
                structure_aware=self.structure_aware,
                space=self.space,
                said_learning_rate=self.said_learning_rate,
                lora_targets=self.lora_targets,
                lora_train=self.lora_train,
            )


def run_kind(recipe: Recipe) -> str:
    """What a run's record names in its `projection` field: the projection
    kind, or `"lora"` (the method's `label`)."""
    return recipe.method.label


def run_name(dim: int | None, seed: int) -> str:
    """The name of a run's folder: `d000750-seed0`, or `baseline-seed0`."""
    return f"baseline-seed{seed}" if dim is None else f"d{dim:06d}-seed{seed}"
