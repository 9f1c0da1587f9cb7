"""`keras_idim.search`: the d-search's entry point.

`search` checks every argument before any work (`SearchConfig`), and
`launch.run` runs the search.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras

from keras_idim.dimsearch.defaults import RECIPE
from keras_idim.dimsearch.launch import run
from keras_idim.dimsearch.result import SearchResult
from keras_idim.dimsearch.runner import Runner
from keras_idim.dimsearch.search_config import SearchConfig
from keras_idim.utils.exports import keras_idim_export


@keras_idim_export("keras_idim.search", "keras_idim.dimsearch.search")
def search(
    model_fn: Callable[[], keras.Model],
    train_data: Any,
    val_data: Any,
    *,
    projection: str = RECIPE["projection"],
    fraction: float = RECIPE["fraction"],
    baseline: float | str | os.PathLike | SearchResult | None = None,
    dims: str | Sequence[int] = "auto",
    seeds: Iterable[int] = (0,),
    epochs: int = RECIPE["epochs"],
    batch_size: int = RECIPE["batch_size"],
    optimizer: Any = "adam",
    learning_rate: float | str | None = RECIPE["learning_rate"],
    baseline_learning_rate: float | str | None = RECIPE["baseline_learning_rate"],
    said_learning_rate: float | None = None,
    loss: Any = "sparse_categorical_crossentropy",
    metrics: Sequence | None = None,
    monitor: str = "val_accuracy",
    mode: str = "auto",
    threshold: float | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | Callable | None = None,
    tensorboard: str | os.PathLike | None = None,
    structure_aware: bool = False,
    space: Any = None,
    results_path: str | os.PathLike | None = None,
    tolerance: float = 0.1,
    start_dim: int = 10,
    max_dim: int | None = None,
    name: str | None = None,
    verbose: int = 1,
    workers: int = 1,
    ray_address: str | None = None,
    runner: Runner | None = None,
    method: str = "subspace",
    lora_targets: Sequence[str] | Callable | None = None,
    lora_train: Sequence[str] | Callable | None = None,
    threshold_rule: str = "baseline",
    floor: float | None = None,
    ci_level: float = 0.9,
    overwrite: bool = False,
) -> SearchResult:
    """Finds the intrinsic dimension: the smallest d that reaches the threshold.

    The threshold comes from a baseline. The baseline is *local* by default:
    `model_fn()` trained in all its D dimensions with the same recipe (for
    each seed; their mean of the best `monitor` value); a float makes it
    *global* (e.g. `1.0`). For a metric to maximise (`mode="max"`, e.g.
    accuracy) the threshold is `fraction * baseline`; for one to minimise
    (`mode="min"`, e.g. a loss or `val_mae`) it is `baseline / fraction`.
    `threshold=` gives it directly instead. Then each tried d trains
    `SubspaceModel(model_fn(), d, projection, seed=s)` for every seed `s`
    (which seeds both the initialisation and P); a run stops as soon as it
    reaches the threshold (`ThresholdStop`). A d passes when the mean over
    seeds of the runs' best metric reaches the threshold (>= it with
    `mode="max"`, <= it with `mode="min"`); a run that diverges (NaN or
    infinite loss) or raises is recorded with that status, counts as not
    reaching it, and the search goes on.

    Before any run it computes the *chance floor*: what a constant
    predictor scores on the monitored data (the training labels' majority
    class for accuracy-like metrics, their mean for MSE/MAE-like ones; see
    `keras_idim.dimsearch.floor`), or takes `floor=`. A threshold that does
    not clear it (for `mode="max"`: threshold <= floor; for `"min"`:
    threshold >= floor) is refused with a `FloorError` naming both, before
    any subspace run (the baseline's runs stay in the results file). With
    several seeds, `SearchResult.d_int_ci` is a bootstrap interval over
    the seeds of d_int (see `keras_idim.dimsearch.interval`).

    - `dims="auto"`: brackets by doubling from `start_dim` until a d passes,
      then bisects on a log scale until `hi / lo <= 1 + tolerance` (see
      `keras_idim.dimsearch.strategy.auto_next_dim`): about
      `log2(d_int / start_dim) + 4` values of d, e.g. 11 for d_int = 750
      against 25 for a 25-point grid.
    - `dims=[...]`: runs them in increasing order and stops at the first d
      that passes.

    With `results_path`, the state is written atomically after every run
    (the configuration and its hash, the baseline, every run, and the
    fingerprints of the model and the data taken at the start). Calling
    `search` again with the same path, configuration, model and data skips
    every finished run and continues; a file from another configuration,
    another model (architecture, D, or initial weights theta_0) or other
    data, or a corrupt one, is refused before any training with an error
    naming the file and what differs, and is never overwritten (unless
    `overwrite=True`). A file written before the fingerprints were recorded
    resumes unchecked, with one printed line saying so. One search at a
    time may use a results file: while it runs it holds an operating-system
    lock on `results_path + ".lock"` (let go when its process ends, even
    killed), and a second search on the same path is refused at once with a
    `SearchBusyError` naming the first's process id and host.

    Arrays with a NaN or an infinity, and a `tf.data.Dataset` that is
    infinite (`.repeat()`) or empty (`.take(0)`), are refused before any
    training, naming the argument.

    Args:
        model_fn: callable. Returns a fresh, built `keras.Model` (called after
            `keras.utils.set_random_seed(seed)` for each run).
        train_data: tuple, tf.data.Dataset or callable. `(x, y)` or
            `(x, y, sample_weight)` arrays, `x` one array, a dict of them
            (named inputs) or a list of them (several inputs), as
            `keras.Model.fit` takes them (batched with `batch_size`,
            shuffled each epoch from the run's seed); a batched dataset (an
            unbatched one, whose `x` has one axis fewer than the model's
            inputs, is refused); or a function that returns one, called
            inside each run (so that a TFDS or tokenising pipeline is built
            where the run trains, also on a Ray worker).
        val_data: tuple, tf.data.Dataset or callable. Validation data,
            likewise.
        projection: str. `"fastfood"`, `"dense"`, `"sparse"` or
            `"unilora"`. Defaults to `"fastfood"`.
        fraction: float. Fraction of the baseline to reach. Defaults to `0.9`.
        baseline: float, SearchResult, str or None. A global baseline;
            `None` trains the local one. A `SearchResult`, or the path of
            its results file or run folder, reuses that search's local
            baseline (its value and runs) instead of training one, e.g. a
            LoRA search beside a subspace search: it is refused, in one
            line naming what differs, unless both searches had the same
            data (fingerprints), `monitor` and `mode`, and the same
            baseline recipe in their configurations (model, seeds,
            epochs, batch size, baseline optimizer and learning rate, loss,
            metrics, callbacks; see
            `keras_idim.dimsearch.comparison.reusable_baseline`). The
            results file records where it came from (`baseline_from`).
            Defaults to `None`.
        dims: str or list of int. `"auto"` or the values of d to try.
            Defaults to `"auto"`.
        seeds: iterable of int. Seeds of each d (and of the baseline), in
            [0, 2**32). Defaults to `(0,)`.
        epochs: int. Epochs per run at most. Defaults to `10`.
        batch_size: int. Batch size for array inputs. Defaults to `32`.
        optimizer: str, keras optimizer or callable. A fresh optimizer is
            made for each run. Defaults to `"adam"`.
        learning_rate: float, `"auto"` or None. Learning rate of the
            subspace (or LoRA) runs. `"auto"`: each run first probes rates
            for an epoch each on a half-decade grid, walking from
            `optimizer`'s own rate times `sqrt(D / d)` while they improve,
            and trains one grid step below the best
            (`keras_idim.dimsearch.rates`); the rate each run used is in
            its record (`RunRecord.learning_rate`, `rate_probes`). `None`
            keeps the optimizer's. Defaults to `"auto"`.
        baseline_learning_rate: float, `"auto"` or None. Likewise for the
            local baseline's runs (the probes start from the optimizer's
            own rate). Defaults to `"auto"`.
        said_learning_rate: float or None. With `structure_aware=True`, the
            rate of SAID's per-tensor scales (see `SubspaceModel`); `None`
            derives it from each run's rate: times `sqrt(d / D)`. Defaults
            to `None`.
        loss: str or keras loss. Defaults to
            `"sparse_categorical_crossentropy"` (models that output
            probabilities, like `keras_idim.models`).
        metrics: list or None. Keras metrics compiled into every run (names,
            `keras.metrics.Metric` objects, copied for each run, or
            functions). `None` means `["accuracy"]`. Defaults to `None`.
        monitor: str. The logged value the search judges by, e.g.
            `"val_accuracy"`, `"val_mae"`, `"val_loss"`. Defaults to
            `"val_accuracy"`.
        mode: str. `"max"` (higher is better), `"min"` (lower is better) or
            `"auto"`: decided as Keras' own callbacks decide it (a loss is
            minimised, a metric takes its registered direction). Defaults
            to `"auto"`.
        threshold: float or None. An absolute threshold for `monitor`,
            instead of one derived from a baseline: no baseline is trained,
            and `fraction` and `baseline` are not used. Defaults to `None`.
        callbacks: list, callable or None. Keras callbacks for every run,
            the baseline's included, or a function `(dim, seed) -> list`
            called for each run (`dim` is `None` for a baseline run). They
            are not part of the results file's configuration beyond their
            class names. Defaults to `None`.
        tensorboard: str or None. A folder: each run logs there for
            TensorBoard, in its own sub-folder (`d000750-seed0`,
            `baseline-seed0`). Needs `pip install "keras-idim[tensorboard]"`.
            Defaults to `None`.
        structure_aware: bool. SAID subspaces. Defaults to `False`.
        space: str, `keras_idim.spaces.Space` or None. The parameter set
            that each subspace run's theta_d moves: `"weights"` (every
            trainable weight, Li et al.), `"lora:RANK"` (the LoRA matrices
            of rank RANK, theta_0 their initialisation), or a
            `keras_idim.spaces.Weights(include=..., exclude=...)` subset.
            D, the largest d, is the space's size; the baseline is full
            training still. Every run records its space and D
            (`RunRecord.space`, `space_dim`). `None`: `"weights"`. Not with
            `method="lora"`. Defaults to `None`.
        results_path: str or None. The resumable results file. Each
            finished subspace run's theta_d is also written beside it,
            `RESULTS-runs/dD-seedS.npz`, for `SearchResult.model`. Defaults
            to `None` (nothing written).
        tolerance: float. Relative precision of the automatic search.
            Defaults to `0.1`.
        start_dim: int. The first d of the automatic search. Defaults to `10`.
        max_dim: int or None. The largest d the automatic search tries;
            `None` means D, the model's parameter count. Defaults to `None`.
        name: str or None. A name for the experiment, stored in the
            configuration (e.g. model and dataset). Defaults to `None`.
        verbose: int. 0: silent; 1: one line per run, each followed by a
            progress line (the runs done, resumed ones counted apart; the
            d still open, between the largest failing d and the smallest
            passing one; and, when the strategy bounds the runs left, the
            time left at most: the mean wall-clock seconds per run so far
            times that bound, see `Driver.progress`); 2: also each run's
            epochs, as Keras prints them (`model.fit(verbose=2)`), the
            baseline's included. Defaults to `1`.
        workers: int. How many runs go at once. `1` runs them one after the
            other in this process. More runs them as Ray tasks (needs
            `pip install "keras-idim[ray]"`): the seeds of a d, and the d
            that the strategy may need next (see `plan_dims`), in worker
            processes that each import TensorFlow once and are reused; a run
            whose worker dies is run again (Ray's retries). The answer is
            the sequential search's for the same runs: runs started ahead
            and not needed are kept in `speculative_runs`. Only this process
            writes the results file. `workers` is not part of the
            configuration: a search can be resumed with another count.
            Defaults to `1`.
        ray_address: str or None. A Ray cluster to join (e.g. `"auto"`,
            or `"HEAD_IP:6379"`); `None` starts a Ray on this machine only,
            bound to 127.0.0.1, when `workers > 1`. If Ray is already
            initialised in this process, that connection is used. Defaults
            to `None`.
        runner: Runner or None. What carries out the runs (see
            `keras_idim.dimsearch.runner.Runner`); `None` picks one from
            `workers`. Defaults to `None`.
        method: str. `"subspace"`: the searched integer is d, the random
            subspace's dimension. `"lora"`: it is the rank r of Keras 3's
            LoRA adapters (`enable_lora(r)`) on `lora_targets`, with every
            other weight frozen unless `lora_train` names it; the same
            strategy, threshold, file and runners. Every run records its
            `trainable_params`. Defaults to `"subspace"`.
        lora_targets: list, callable or None. With `method="lora"`: names of
            the layers that get adapters, or a predicate `layer -> bool`.
            `None`: a keras-hub backbone's own targets, or else every layer
            that supports LoRA. Defaults to `None`.
        lora_train: list, callable or None. With `method="lora"`: layers
            whose own weights train too, fully (e.g. a new head); counted in
            `trainable_params`. `None`: only the adapters train (biases
            included, every other weight is frozen). Defaults to `None`.
        threshold_rule: str. `"baseline"` (the papers' rule: `fraction *
            baseline`, or `baseline / fraction` for `mode="min"`) or
            `"above_floor"` (`floor + fraction * (baseline - floor)`: the
            share `fraction` of the way from the chance floor to the
            baseline). Not with `threshold`. Defaults to `"baseline"`.
        floor: float or None. The chance floor of `monitor`, for a metric
            whose floor cannot be computed (a metric other than
            accuracy-like or MSE/MAE-like ones, or data that are not
            arrays); given, it is used instead of the computed one. `None`
            computes it where possible, and otherwise checks no floor (the
            result says so). Defaults to `None`.
        ci_level: float. The level of `d_int_ci`, in (0, 1). Not part of
            the configuration. Defaults to `0.9`.
        overwrite: bool. Start over instead of resuming: an existing
            `results_path` is not read; on this search's first write it is
            copied to `results_path + ".bak"` (replacing an older one) and
            then replaced atomically. Defaults to `False`.

    Returns:
        A `SearchResult`.

    Raises:
        RuntimeError: Keras' backend is not TensorFlow (keras_idim runs on
            it only).

    Example:

    >>> result = keras_idim.search(
    ...     lambda: keras_idim.models.fc((8, 8, 1), 10), train, val,
    ...     dims="auto", learning_rate=0.03, results_path="runs/results.json")
    >>> result.d_int, result.threshold
    """
    return run(SearchConfig.from_arguments(**locals()))
