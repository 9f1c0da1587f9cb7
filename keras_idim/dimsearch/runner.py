"""One training run of a d-search, and the runners that carry runs out.

A `Recipe` is everything a run needs besides its d, seed and threshold;
`train_run` carries one out. A `Runner` takes `(dim, seed)` tasks and hands
back their `RunRecord`s as they finish: `InProcessRunner` trains them one
after the other in this process, `ray_runner.RayRunner` on Ray workers, and
a test can drive the search with a fake.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import keras
import numpy as np

from keras_idim import lora
from keras_idim.callbacks import DivergenceStop, ThresholdStop
from keras_idim.dimsearch import rates
from keras_idim.dimsearch.found import KeepBest
from keras_idim.dimsearch.records import DIVERGED, OK, RunRecord, best
from keras_idim.spaces import Space, Weights
from keras_idim.subspace import SubspaceModel
from keras_idim.utils.exports import keras_idim_export

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
        method: str. `"subspace"` (d is the subspace's dimension) or
            `"lora"` (d is the rank of Keras' LoRA adapters).
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
    method: str = "subspace"
    lora_targets: Any = None
    lora_train: Any = None
    fit_verbose: int = 0
    learning_rate: float | str | None = None
    baseline_learning_rate: float | str | None = None
    said_learning_rate: float | None = None
    space: Space = dataclasses.field(default_factory=Weights)


def run_kind(recipe: Recipe) -> str:
    """What a run's record names in its `projection` field: the projection
    kind, or `"lora"`."""
    return "lora" if recipe.method == "lora" else recipe.projection


def run_name(dim: int | None, seed: int) -> str:
    """The name of a run's folder: `d000750-seed0`, or `baseline-seed0`."""
    return f"baseline-seed{seed}" if dim is None else f"d{dim:06d}-seed{seed}"


def as_dataset(
    data: Any, batch_size: int, *, shuffle: bool, arg: str = "data", seed: int = 0
):
    """A batched dataset from arrays, a dataset, or a callable returning one.

    A callable is called here, so that a TFDS or tokenising pipeline is
    built where the run trains (also in a Ray worker).

    A dataset whose cardinality says it never ends (`.repeat()`) or holds
    nothing (`.take(0)`) is refused: an epoch over it would never end, or
    train nothing. An unknown cardinality is accepted.
    """
    from keras_idim.data.arrays import fit_dataset

    if callable(data):
        built = data()
        if not hasattr(built, "element_spec"):
            raise ValueError(
                f"`{arg}` is a callable, so it should return a tf.data.Dataset. "
                f"It returned: {type(built).__name__}"
            )
        check_cardinality(arg, built, " (returned by the callable)")
        return built
    try:
        dataset = fit_dataset(data, batch_size, shuffle=shuffle, seed=seed)
    except ValueError as e:
        raise ValueError(str(e).replace("`data`", f"`{arg}`")) from None
    check_cardinality(arg, dataset)
    return dataset


def check_cardinality(arg: str, dataset: Any, where: str = "") -> None:
    """Refuses a `tf.data.Dataset` that is infinite or empty (known from its
    cardinality: `tf.data.INFINITE_CARDINALITY`, or 0)."""
    import tensorflow as tf

    cardinality = int(dataset.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            f"`{arg}` is an infinite tf.data.Dataset{where} (cardinality "
            "tf.data.INFINITE_CARDINALITY, e.g. from `.repeat()`): an epoch "
            "over it would never end. Pass a finite one, e.g. `ds.take(n)` for "
            f"n batches an epoch. Received: `{arg}={dataset!r}`"
        )
    if cardinality == 0:
        raise ValueError(
            f"`{arg}` is empty{where}: a tf.data.Dataset of cardinality 0 "
            f"(e.g. from `.take(0)`) has nothing to train or validate on. "
            f"Received: `{arg}={dataset!r}`"
        )


def named_arrays(data: Any) -> list[tuple[str, Any]]:
    """The arrays of `(x, y)` or `(x, y, sample_weight)` data with their
    names (`x`, `x['ids']`, `x[1]`, `y`, `sample_weight`), for messages."""
    if not isinstance(data, (tuple, list)):
        return []
    named = []
    for name, part in zip(("x", "y", "sample_weight"), data):
        if isinstance(part, dict):
            named += [(f"{name}[{k!r}]", v) for k, v in part.items()]
        elif isinstance(part, (list, tuple)):
            named += [(f"{name}[{i}]", v) for i, v in enumerate(part)]
        else:
            named.append((name, part))
    return named


def check_finite(arg: str, data: Any) -> None:
    """Refuses arrays with a NaN or an infinity in them: in `x` (each
    input of a dict or list), `y` or the sample weights.

    One NaN pixel would otherwise pass unseen through a ReLU into a baseline
    at chance and make every subspace run diverge. Only numeric arrays are
    checked (strings or objects are left to the model).
    """
    import numpy as np

    for name, array in named_arrays(data):
        if not isinstance(array, np.ndarray) or not (
            np.issubdtype(array.dtype, np.floating)
            or np.issubdtype(array.dtype, np.complexfloating)
        ):
            continue  # integers and bools are always finite
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise ValueError(
                f"`{arg}` holds {bad} non-finite value{'s' if bad > 1 else ''} "
                f"(NaN or infinity) in its {name} array (shape {array.shape}): "
                "a run on it would diverge or learn nothing. Clean or impute "
                f"them first. Received: `{arg}` with {name}.dtype={array.dtype}"
            )


def check_batched(arg: str, data: Any, model: keras.Model) -> None:
    """Refuses a `tf.data.Dataset` whose elements have no batch dimension
    (`Dataset.from_tensor_slices((x, y))` without `.batch`).

    Keras would take each example's first axis as the batch and fail deep
    in the model. It is decided only where it is sure: every input of the
    elements' `x` (one tensor, or a dict or tuple matched to the model's
    inputs by name or order) has a known rank exactly one less than the
    model's input it feeds, whose first axis is the batch. Anything else
    (a model without symbolic inputs, an unknown rank, inputs that do not
    match) is left to Keras.
    """
    import tensorflow as tf

    if not isinstance(data, tf.data.Dataset):
        return
    spec = data.element_spec
    x_spec = spec[0] if isinstance(spec, tuple) and spec else spec
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return
    if not inputs:
        return
    if isinstance(x_spec, dict):
        names = [getattr(t, "name", None) for t in inputs]
        pairs = [(x_spec.get(n), t) for n, t in zip(names, inputs)]
    elif isinstance(x_spec, tuple):
        if len(x_spec) != len(inputs):
            return
        pairs = list(zip(x_spec, inputs))
    else:
        pairs = [(x_spec, inputs[0])] if len(inputs) == 1 else []
    ranks = []
    for element, tensor in pairs:
        shape = getattr(element, "shape", None)
        if shape is None or shape.rank is None or tensor.shape is None:
            return
        ranks.append((shape.rank, len(tensor.shape)))
    if ranks and all(rank == wanted - 1 for rank, wanted in ranks):
        shape = getattr(pairs[0][0], "shape", None)
        raise ValueError(
            f"`{arg}` is an unbatched tf.data.Dataset: its elements' x has "
            f"shape {tuple(shape)}, the model's input {tuple(inputs[0].shape)} "
            "(with the batch axis first). Batch it, e.g. `ds.batch(128)`. "
            f"Received: `{arg}={data!r}`"
        )


def is_sparse_categorical(loss: Any) -> bool:
    """Whether `loss` takes integer class labels (sparse cross-entropy)."""
    if isinstance(loss, str):
        return loss == "sparse_categorical_crossentropy"
    return isinstance(loss, keras.losses.SparseCategoricalCrossentropy)


def check_class_labels(arg: str, data: Any, loss: Any) -> None:
    """Refuses float `y` arrays that are not class indices (a fractional
    part, or negative) under a sparse categorical loss, which would
    truncate them silently. Arrays only: a dataset is not scanned."""
    import numpy as np

    if not (isinstance(data, (tuple, list)) and len(data) >= 2):
        return
    y = data[1]
    if not is_sparse_categorical(loss) or not isinstance(y, np.ndarray):
        return
    if not np.issubdtype(y.dtype, np.number):
        return
    bad = (y < 0) | (np.floor(y) != y) if np.issubdtype(y.dtype, np.floating) else y < 0
    if np.any(bad):
        example = y[bad].flat[0].item()
        raise ValueError(
            f"`{arg}`'s y array holds values that are not class indices "
            f"(e.g. {example!r}), and the loss, sparse categorical "
            "cross-entropy, would truncate them silently. Give integer labels "
            f"0, 1, 2, ... Received: `{arg}` with y.dtype={y.dtype}, "
            f"a value {example!r}"
        )


def fresh_metrics(metrics: Sequence) -> list:
    """Copies of the metrics for one run: a Metric object holds state, so
    each compiled model gets its own (names and functions are kept)."""
    copies = []
    for m in metrics:
        if isinstance(m, keras.metrics.Metric):
            m = type(m).from_config(m.get_config())
        copies.append(m)
    return copies


def user_callbacks(recipe: Recipe, dim: int | None, seed: int) -> list:
    """The user's callbacks for one run, and its TensorBoard logger."""
    callbacks = recipe.callbacks
    if callable(callbacks):
        callbacks = callbacks(dim, seed)
        if not isinstance(callbacks, (list, tuple)) or not all(
            isinstance(c, keras.callbacks.Callback) for c in callbacks
        ):
            raise ValueError(
                "`callbacks`, a callable, should return a list of "
                f"keras.callbacks.Callback for each run. For dim={dim}, "
                f"seed={seed} it returned: {callbacks!r}"
            )
    callbacks = list(callbacks or [])
    if recipe.tensorboard is not None:
        log_dir = os.path.join(recipe.tensorboard, run_name(dim, seed))
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir))
    return callbacks


def _build(recipe: Recipe, dim: int | None, seed: int, rate: float | None):
    """A run's model, compiled, from its seed: the base model, its LoRA
    version, or its SubspaceModel."""
    keras.utils.set_random_seed(seed)
    model = recipe.model_fn()
    make_optimizer = recipe.baseline_optimizer
    if dim is not None and recipe.method == "lora":
        lora.enable(model, dim, targets_=recipe.lora_targets, train=recipe.lora_train)
        make_optimizer = recipe.optimizer
    elif dim is not None:
        model = SubspaceModel(
            model,
            dim,
            projection=recipe.projection,
            seed=seed,
            structure_aware=recipe.structure_aware,
            said_learning_rate=recipe.said_learning_rate,
            space=recipe.space,
        )
        make_optimizer = recipe.optimizer
    model.compile(
        optimizer=make_optimizer(rate),
        loss=recipe.loss,
        metrics=fresh_metrics(recipe.metrics),
    )
    return model


def _fit(recipe: Recipe, model, seed: int, epochs: int, callbacks: list) -> dict:
    # Arrays get a fresh dataset shuffled from the run's seed, so that a
    # run sees the same batches whatever ran before it (a resumed search
    # repeats an uninterrupted one); a tf.data dataset is used as it is.
    return model.fit(
        as_dataset(recipe.train_data, recipe.batch_size, shuffle=True, seed=seed),
        validation_data=as_dataset(recipe.val_data, recipe.batch_size, shuffle=False),
        epochs=epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself
        verbose=recipe.fit_verbose,
    ).history


def run_rate(recipe: Recipe, dim: int | None) -> float | str | None:
    """The learning rate a run is set to: a number, `None` (the optimizer's
    own) or `"auto"`."""
    return recipe.baseline_learning_rate if dim is None else recipe.learning_rate


def probe_rates(recipe: Recipe, dim: int | None, seed: int) -> tuple[float, list]:
    """An automatic rate for a run: `(rate, probes)` (see
    `keras_idim.dimsearch.rates`). Each probe trains the run's own model,
    from its seed, for `rates.PROBE_EPOCHS`, without the user's callbacks;
    one model serves every probe, its weights and optimizer put back to
    where they started before each (so that nothing is traced again)."""
    model = _build(recipe, dim, seed, None)
    if isinstance(model, SubspaceModel):
        full_dim, trainable = model.full_dim, model.dim
        start_vars = list(model.trainable_variables) + model.state_variables
    else:
        full_dim = trainable = lora.trainable_count(model)
        if dim is not None:  # LoRA: the weights the adapters sit on
            full_dim = sum(
                int(np.prod(v.shape)) for v in model.weights if not lora.is_lora(v)
            )
        start_vars = list(model.weights)
    optimizers = [model.optimizer]
    if getattr(model, "said_optimizer", None) is not None:
        optimizers.append(model.said_optimizer)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    start_vars += [v for opt in optimizers for v in opt.variables]
    start_values = [keras.ops.convert_to_numpy(v) for v in start_vars]
    default = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))

    def score(rate: float) -> float | None:
        for variable, value in zip(start_vars, start_values):
            variable.assign(value)
        model.optimizer.learning_rate = rate
        if len(optimizers) > 1:
            optimizers[1].learning_rate = model.said_rate(rate)
        if isinstance(model, SubspaceModel):
            model.sync_base_weights()
        divergence = DivergenceStop()
        try:
            history = _fit(recipe, model, seed, rates.PROBE_EPOCHS, [divergence])
        except Exception:  # the run at the chosen rate records what it raises
            return None
        values = [float(v) for v in history.get(recipe.monitor, [])]
        if divergence.diverged or not values:
            return None
        return best(values, recipe.mode)

    start = rates.start_rate(default, full_dim, trainable)
    return rates.choose(score, start, recipe.mode)


def train_run(
    recipe: Recipe, dim: int | None, seed: int, threshold: float | None
) -> RunRecord:
    """One run: the baseline (`dim=None`) or a subspace of dimension `dim`.

    A run that raises is recorded with status `"error"`; a missing `monitor`
    is the search's mistake, not the run's, and raises. With an automatic
    rate (`"auto"`), the run first probes rates (`probe_rates`) and trains
    at the best; its record holds the probes. Either way the record holds
    the rate the optimizer had at the end of the run (a callback may have
    changed it).

    Args:
        recipe: Recipe. How to train.
        dim: int or None. d, or `None` for a baseline run.
        seed: int. Seeds the initialisation, the projection and the shuffle.
        threshold: float or None. A subspace run stops once it reaches it.

    Returns:
        The run's `RunRecord`.
    """
    divergence = DivergenceStop()
    callbacks: list = [divergence]
    stop = None
    if threshold is not None and dim is not None:
        stop = ThresholdStop(monitor=recipe.monitor, target=threshold, mode=recipe.mode)
        callbacks.append(stop)
    keep = None
    if dim is not None and recipe.method != "lora":  # the model it finds
        keep = KeepBest(recipe.monitor, recipe.mode)
        callbacks.append(keep)
    started = time.perf_counter()
    projection = "none" if dim is None else run_kind(recipe)
    rate, probes = run_rate(recipe, dim), None
    try:
        if rate == rates.AUTO:
            rate, probes = probe_rates(recipe, dim, seed)
        model = _build(recipe, dim, seed, rate)
        history = _fit(
            recipe,
            model,
            seed,
            recipe.epochs,
            callbacks + user_callbacks(recipe, dim, seed),
        )
    except Exception as e:  # a failed run is recorded, the search goes on
        record = RunRecord.error(
            dim,
            seed,
            projection,
            time.perf_counter() - started,
            f"{type(e).__name__}: {e}",
        )
        record.rate_probes = probes
        return record
    if recipe.monitor not in history:
        raise ValueError(
            f"The metric `monitor={recipe.monitor!r}` is not in the training "
            f"logs. Available: {sorted(history)}."
        )
    values = [float(v) for v in history[recipe.monitor]]
    return RunRecord(
        dim=dim,
        seed=seed,
        projection=projection,
        metric=best(values, recipe.mode),
        epochs=len(values),
        stopped_early=bool(stop is not None and stop.reached),
        seconds=time.perf_counter() - started,
        status=DIVERGED if divergence.diverged else OK,
        message=(
            f"non-finite loss at epoch {divergence.diverged_at[0]}"
            f", batch {divergence.diverged_at[1]}"
            if divergence.diverged
            else None
        ),
        history=values,
        trainable_params=lora.trainable_count(model),
        space=model.space.spec if isinstance(model, SubspaceModel) else None,
        space_dim=model.full_dim if isinstance(model, SubspaceModel) else None,
        found=None if keep is None else keep.kept,
        learning_rate=final_rate(model),
        rate_probes=probes,
    )


def final_rate(model: keras.Model) -> float | None:
    """The learning rate the model's optimizer has now, to 6 digits."""
    try:
        rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return None
    return float(f"{rate:.6g}")


@keras_idim_export("keras_idim.dimsearch.Runner")
@runtime_checkable
class Runner(Protocol):
    """Carries out `(dim, seed)` tasks, `slots` at a time.

    The search calls `start` once, before its first task; then `submit`,
    `cancel` and `next_finished` as it plans; and `close` at the end, also
    after an error or an interrupt.
    """

    slots: int

    def start(self, recipe: Recipe, say: Callable[[str], None]) -> None:
        """Gets ready to run tasks of this recipe."""

    def running(self) -> list[Task]:
        """Tasks submitted and not yet returned by `next_finished`."""

    def free(self) -> int:
        """How many more tasks can be submitted now."""

    def submit(self, task: Task, threshold: float | None) -> None:
        """Starts (or queues) a task."""

    def cancel(self, task: Task) -> None:
        """Gives up a task that is no longer needed."""

    def next_finished(self) -> tuple[Task, RunRecord | None]:
        """Waits for a task to end: its record, or `None` if cancelled."""

    def close(self) -> list[tuple[Task, RunRecord]]:
        """Stops what still runs; returns the runs that finished meanwhile."""


@keras_idim_export("keras_idim.dimsearch.InProcessRunner")
class InProcessRunner:
    """Runs tasks one after the other, in this process.

    Args:
        run: callable. `(recipe, dim, seed, threshold) -> RunRecord`.
            Defaults to `train_run`; a test passes a fake.
        slots: int. Tasks accepted at once (they still run one by one).
            Defaults to `1`.

    Example:

    >>> result = keras_idim.search(model_fn, train, val,
    ...                            runner=InProcessRunner())
    """

    def __init__(
        self,
        run: Callable[[Recipe, int | None, int, float | None], RunRecord] | None = None,
        slots: int = 1,
    ):
        self._run = train_run if run is None else run
        self.slots = slots
        self._recipe: Recipe | None = None
        self._queue: list[tuple[Task, float | None]] = []

    def start(self, recipe: Recipe, say: Callable[[str], None] = print) -> None:
        self._recipe = recipe

    def running(self) -> list[Task]:
        return [task for task, _ in self._queue]

    def free(self) -> int:
        return self.slots - len(self._queue)

    def submit(self, task: Task, threshold: float | None) -> None:
        self._queue.append((task, threshold))

    def cancel(self, task: Task) -> None:
        self._queue = [q for q in self._queue if q[0] != task]

    def pop(self) -> tuple[Task, float | None]:
        """The next task to run (the oldest); a subclass may choose another."""
        return self._queue.pop(0)

    def next_finished(self) -> tuple[Task, RunRecord | None]:
        (dim, seed), threshold = self.pop()
        return (dim, seed), self._run(self._recipe, dim, seed, threshold)

    def close(self) -> list[tuple[Task, RunRecord]]:
        self._queue = []
        return []
