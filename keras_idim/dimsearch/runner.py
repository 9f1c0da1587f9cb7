"""One training run of a d-search, and the runners that carry runs out.

A `Recipe` (`dimsearch.recipe`) is everything a run needs besides its d,
seed and threshold; `train_run` carries one out. A `Runner` takes
`(dim, seed)` tasks and hands back their `RunRecord`s as they finish:
`InProcessRunner` trains them one after the other in this process,
`ray_runner.RayRunner` on Ray workers, and a test can drive the search with
a fake.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import keras
import numpy as np

from keras_idim import lora
from keras_idim.callbacks import DivergenceStop, ThresholdStop
from keras_idim.dimsearch import rates
from keras_idim.dimsearch.data_checks import as_dataset
from keras_idim.dimsearch.found import KeepBest
from keras_idim.dimsearch.recipe import Recipe, Task, run_kind, run_name
from keras_idim.dimsearch.records import DIVERGED, OK, RunRecord, best
from keras_idim.subspace import SubspaceModel
from keras_idim.utils.exports import keras_idim_export


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
    """A run's model, compiled, from its seed: the base model, or the
    method's (its LoRA version, or its SubspaceModel)."""
    keras.utils.set_random_seed(seed)
    model = recipe.model_fn()
    make_optimizer = recipe.baseline_optimizer
    if dim is not None:
        model = recipe.method.wrap(model, dim, seed=seed)
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
    if dim is not None and recipe.method.keeps_theta:  # the model it finds
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
