"""A search's recipe from the user's arguments: checks, and the description
of each part that the results file stores (to refuse a changed search on
resume)."""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from keras_idim import _compat
from keras_idim.dimsearch.rates import AUTO
from keras_idim.objective import MODE_OF_DIRECTION, Objective
from keras_idim.utils.io import check_writable
from keras_idim.utils.validation import (
    SEED_RANGE,
    check_positive_int,
    is_int,
    is_number,
    received,
)

#: What `mode` accepts.
MODE_CHOICES = ("auto", "max", "min")


def describe_data(data: Any) -> Any:
    """A JSON description of a dataset, to detect a changed one on resume."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        return {
            "tf.data": str(data.element_spec),
            "cardinality": int(data.cardinality()),
        }
    if isinstance(data, (tuple, list)):
        return [describe_data(a) for a in data]
    if isinstance(data, dict):  # named inputs: by key, in sorted order
        return {"dict": {str(k): describe_data(data[k]) for k in sorted(data)}}
    if isinstance(data, np.ndarray) or hasattr(data, "__array__"):
        array = np.ascontiguousarray(np.asarray(data))
        return {
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
        }
    if callable(data):
        return {"built_by": describe_object(data)}
    return repr(data)


def describe_object(obj: Any) -> Any:
    """A description of a loss, metric or function, stable across processes."""
    if isinstance(obj, str):
        return obj
    if hasattr(obj, "get_config"):
        return keras.saving.serialize_keras_object(obj)
    return (
        getattr(obj, "__module__", "")
        + "."
        + getattr(obj, "__qualname__", type(obj).__qualname__)
    )


def optimizer_factory(
    optimizer: Any, learning_rate: float | str | None
) -> tuple[Callable[..., keras.optimizers.Optimizer], Any]:
    """A factory of fresh optimizers, and a JSON description of it.

    The factory takes an optional `rate`, which replaces the learning rate
    (an automatic rate, `"auto"`, is given there after its probes); without
    it, the optimizer has `learning_rate` (`None`: its own).
    """
    fixed = None if learning_rate == AUTO else learning_rate

    def with_rate(opt, rate):
        rate = fixed if rate is None else rate
        if rate is not None:
            opt.learning_rate = rate
        return opt

    if isinstance(optimizer, str):

        def make(rate: float | None = None) -> keras.optimizers.Optimizer:
            return with_rate(keras.optimizers.get(optimizer), rate)

        make()  # fail early on an unknown name
        description = {"name": optimizer, "learning_rate": learning_rate}
    elif isinstance(optimizer, keras.optimizers.Optimizer):
        base = keras.optimizers.serialize(optimizer)

        def make(rate: float | None = None) -> keras.optimizers.Optimizer:
            return with_rate(keras.optimizers.deserialize(base), rate)

        description = copy.deepcopy(base)
        if learning_rate is not None:
            description["config"]["learning_rate"] = learning_rate
    elif callable(optimizer):

        def make(rate: float | None = None) -> keras.optimizers.Optimizer:
            return with_rate(optimizer(), rate)

        description = describe_object(optimizer)
        if learning_rate is not None:
            description = {"factory": description, "learning_rate": learning_rate}
    else:
        raise ValueError(
            "`optimizer` should be an optimizer name, a keras optimizer (its "
            "config is copied for each run) or a function returning a fresh "
            f"optimizer. {received('optimizer', optimizer)}"
        )
    if learning_rate == AUTO:
        own = keras.optimizers.serialize(make())["config"].get("learning_rate")
        if not is_number(own):  # a schedule is serialised as a dict
            raise ValueError(
                "An automatic learning rate sets the optimizer's rate to the "
                "best one it probes, which a learning-rate schedule does not "
                f"allow: this optimizer's rate is {own!r}. Give a number "
                "instead of 'auto' (or an optimizer without a schedule)."
            )
    return make, description


def check_learning_rate(arg: str, value: Any) -> float | str | None:
    """`"auto"`, `None`, or a finite positive rate."""
    if value == AUTO:
        return AUTO
    if value is None or is_number(value) and 0 < value < float("inf"):
        return None if value is None else float(value)
    raise ValueError(
        f"`{arg}` should be 'auto' (probe a few rates at the start of each "
        "run and train at the best), a positive number, or None (the "
        f"optimizer's own). {received(arg, value)}"
    )


def check_dims(dims: Any) -> list[int] | str:
    """`"auto"`, or the distinct values of d in increasing order."""
    message = "`dims` should be 'auto' or a list of positive integers. "
    if isinstance(dims, str):
        if dims != "auto":
            raise ValueError(message + received("dims", dims))
        return dims
    try:
        values = sorted({check_positive_int("dims", d) for d in dims})
    except (TypeError, ValueError):
        raise ValueError(message + received("dims", dims)) from None
    if not values:
        raise ValueError(f"`dims` should not be empty. {received('dims', dims)}")
    return values


def check_seeds(seeds: Any) -> list[int]:
    """The seeds as a list of distinct integers in the seed range."""
    if is_int(seeds):
        seeds = [seeds]
    try:
        values = list(seeds)
        if (
            not values
            or len(set(values)) != len(values)
            or any(
                not is_int(s) or not SEED_RANGE[0] <= s < SEED_RANGE[1] for s in values
            )
        ):
            raise TypeError
    except TypeError:
        raise ValueError(
            "`seeds` should be a non-empty sequence of distinct integers in "
            f"[0, 2**32). {received('seeds', seeds)}"
        ) from None
    return [int(s) for s in values]


def check_metrics(metrics: Any) -> list:
    """The metrics to compile: names, Metric objects or functions."""
    if metrics is None:
        return ["accuracy"]
    if isinstance(metrics, (str, keras.metrics.Metric)) or (
        callable(metrics) and not isinstance(metrics, (list, tuple))
    ):
        metrics = [metrics]
    ok = isinstance(metrics, (list, tuple)) and all(
        isinstance(m, (str, keras.metrics.Metric)) or callable(m) for m in metrics
    )
    if not ok:
        raise ValueError(
            "`metrics` should be a list of Keras metrics: names such as "
            "'accuracy' or 'mae', keras.metrics.Metric objects, or functions "
            f"`(y_true, y_pred) -> values`. {received('metrics', metrics)}"
        )
    return list(metrics)


def _metric_name_and_direction(spec: Any) -> tuple[str, str | None]:
    """The logged name of a compiled metric and its direction ("up"/"down"),
    found as Keras' own compile and monitor callbacks find them."""
    if isinstance(spec, str) and spec.lower() in ("accuracy", "acc"):
        return spec, "up"  # Keras picks a binary/categorical accuracy
    try:
        metric = keras.metrics.get(spec)
    except ValueError:
        return (spec if isinstance(spec, str) else str(spec)), None
    if isinstance(spec, str):
        name = spec
    elif isinstance(metric, keras.metrics.Metric):
        name = metric.name
    else:
        name = getattr(metric, "__name__", str(metric))
    if not isinstance(metric, keras.metrics.Metric):
        metric = keras.metrics.MeanMetricWrapper(metric)
    return name, _compat.metric_direction(metric)


def resolve_mode(
    mode: Any, monitor: str, metrics: Sequence, callbacks: Any = None
) -> str:
    """`"max"` or `"min"`: `mode` itself, or for `"auto"` the direction that
    Keras' own callbacks (e.g. EarlyStopping) would give `monitor`.

    A loss is minimised; a metric takes the direction Keras registers for
    it (accuracy, AUC, F1 up; MAE, MSE, cross-entropy down).

    Raises:
        ValueError: `mode` is not one of `MODE_CHOICES`, or `"auto"` cannot
            tell for this `monitor`.
    """
    if mode not in MODE_CHOICES:
        raise ValueError(
            f"`mode` should be one of 'auto', 'max', 'min'. {received('mode', mode)}"
        )
    if mode != "auto":
        return mode
    known = keras_mode(monitor, metrics)
    if known is not None:
        return known
    refuse_unlogged(
        monitor, metrics, callbacks, "; so `mode='auto'` cannot tell its direction"
    )
    raise ValueError(
        f"`mode='auto'` cannot tell whether `monitor={monitor!r}` should be "
        "maximised or minimised (it is not the loss, nor a compiled metric with "
        "a known direction). Pass `mode='max'` or `mode='min'`."
    )


def keras_mode(monitor: str, metrics: Sequence) -> str | None:
    """The direction Keras gives `monitor` (`"max"` or `"min"`), as its own
    callbacks read it: the loss is minimised, a compiled metric goes the
    way it registers; `None` where that is not known."""
    name = monitor.removeprefix("val_")
    if name == "loss":
        return "min"
    for spec in metrics:
        metric_name, direction = _metric_name_and_direction(spec)
        if metric_name == name and direction in MODE_OF_DIRECTION:
            return MODE_OF_DIRECTION[direction]
    return None


def _logged_metric_name(spec: Any) -> str | None:
    """The name Keras logs a compiled metric under, or None where it cannot
    be told for sure before training (the search then does not refuse)."""
    if isinstance(spec, str):
        if spec.lower() in ("accuracy", "acc"):
            return spec
        try:
            keras.metrics.get(spec)
        except ValueError:
            return None  # compile itself will say what is wrong
        return spec
    if isinstance(spec, keras.metrics.Metric):
        return spec.name
    name = getattr(spec, "__name__", None)
    if (
        not hasattr(spec, "name")
        and isinstance(name, str)
        and re.fullmatch(r"[a-z_][a-z0-9_]*", name)
    ):
        return name  # a plain function; Keras snake-cases a camel-case name
    return None


def logged_names(metrics: Sequence) -> list[str] | None:
    """Every name a run's training logs hold (the loss and each compiled
    metric, and each with `val_`), sorted; None if one metric's name cannot
    be told, or two share one (Keras would number the second)."""
    names = [_logged_metric_name(m) for m in metrics]
    if None in names or len(set(names)) != len(names) or "loss" in names:
        return None
    base = ["loss", *names]
    return sorted(base + ["val_" + n for n in base])


def refuse_unlogged(
    monitor: str, metrics: Sequence, callbacks: Any = None, why: str = ""
) -> None:
    """Refuses a `monitor` that the runs will not log (see `logged_names`;
    nothing is refused where the names cannot be known, or where user
    callbacks may add logs), listing the names; `why` is added after them."""
    names = logged_names(metrics)
    if names is not None and not callbacks and monitor not in names:
        raise ValueError(
            f"`monitor={monitor!r}` is not among the names the runs will log "
            f"(the loss and each compiled metric, also with 'val_'): {names}"
            f"{why}. Pass one of them, or add the metric to `metrics`. "
            f"Received: `monitor={monitor!r}`"
        )


def check_monitor(
    monitor: str, mode: str, metrics: Sequence, callbacks: Any = None
) -> None:
    """Refuses, before any training, a `monitor` that the runs will not log,
    and a `mode` that contradicts the direction Keras gives `monitor`.

    The logged names are the loss and the compiled metrics, each also with
    `val_`. Nothing is refused where they cannot be known: a metric whose
    logged name cannot be told, or user callbacks (which may add logs).
    `mode` is `"max"` or `"min"` (after `resolve_mode`, or the user's).
    """
    refuse_unlogged(monitor, metrics, callbacks)
    known = keras_mode(monitor, metrics)
    if known is not None and mode != known:
        way = "minimised" if Objective(monitor, known).minimize else "maximised"
        direction = "down" if known == "min" else "up"
        raise ValueError(
            f"`mode={mode!r}` contradicts `monitor={monitor!r}`: Keras registers "
            f"it as {way} (its direction is {direction!r}), so the search would "
            "judge every run backwards. Pass `mode='auto'` or "
            f"`mode={known!r}`. "
            f"Received: `monitor={monitor!r}`, `mode={mode!r}`"
        )


def check_structure_aware(structure_aware: Any) -> bool:
    """A bool (numpy's included); anything else (e.g. "yes") is refused."""
    if not isinstance(structure_aware, (bool, np.bool_)):
        raise ValueError(
            "`structure_aware` should be True (SAID subspaces) or False. "
            f"{received('structure_aware', structure_aware)}"
        )
    return bool(structure_aware)


def check_dtype_policy() -> None:
    """Refuses a float16/bfloat16 global dtype policy: a subspace run adds
    float32 offsets to the base weights, which TensorFlow refuses to mix."""
    policy = keras.config.dtype_policy()
    dtypes = {policy.compute_dtype, policy.variable_dtype}
    if dtypes & {"float16", "bfloat16"}:
        raise ValueError(
            f"The global dtype policy is {policy.name!r}; a subspace search "
            "trains in float32 only (its float32 offsets cannot be added to "
            f"{'/'.join(sorted(dtypes - {'float32'}))} weights). Set "
            '`keras.config.set_dtype_policy("float32")` before the search. '
            f"Received: dtype policy {policy.name!r}"
        )


def check_callbacks(callbacks: Any) -> Any:
    """`None`, a list of Keras callbacks, or a callable `(dim, seed) -> list`."""
    if isinstance(callbacks, type):
        raise ValueError(
            "`callbacks` should be callback instances in a list, e.g. "
            "`callbacks=[keras.callbacks.EarlyStopping(...)]`, or a function "
            "`(dim, seed) -> list`; this is a class. "
            f"{received('callbacks', callbacks)}"
        )
    if callbacks is None or callable(callbacks):
        return callbacks
    if isinstance(callbacks, (list, tuple)) and all(
        isinstance(c, keras.callbacks.Callback) for c in callbacks
    ):
        return list(callbacks)
    raise ValueError(
        "`callbacks` should be a list of keras.callbacks.Callback, or a "
        "function `(dim, seed) -> list` called for each run (`dim` is None for "
        f"a baseline run). {received('callbacks', callbacks)}"
    )


def describe_callbacks(callbacks: Any) -> Any:
    """The callbacks as stored in the configuration (None when there are none)."""
    if not callbacks:
        return None
    if callable(callbacks) and not isinstance(callbacks, list):
        return describe_object(callbacks)
    return [type(c).__module__ + "." + type(c).__qualname__ for c in callbacks]


def check_tensorboard(tensorboard: Any) -> str | None:
    """The TensorBoard folder; needs the `tensorboard` package."""
    import importlib.util
    import os

    if tensorboard is None:
        return None
    if not isinstance(tensorboard, (str, os.PathLike)) or not os.fspath(tensorboard):
        raise ValueError(
            "`tensorboard` should be a folder for the runs' logs, or None. "
            f"{received('tensorboard', tensorboard)}"
        )
    check_writable(tensorboard, "tensorboard", folder=True)
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError(
            "`tensorboard=...` writes logs for TensorBoard, which is not "
            'installed. Install the extra: pip install "keras-idim[tensorboard]".'
        )
    return os.fspath(tensorboard)


def check_model_fn(
    model_fn: Callable[[], keras.Model],
    seed: int,
    measure: Callable[[keras.Model], int] | None = None,
) -> int:
    """Builds the first model twice, checks it, and returns D (or what
    `measure` says of the first model, e.g. its largest useful LoRA rank).

    Every run builds its own model with `model_fn`, so it must return a
    fresh, built, trainable `keras.Model` on each call: a model returned
    twice (or one sharing weights with the last) would carry one run's
    training into the next, silently.

    Raises:
        ValueError: what is wrong with the model, naming `model_fn`.
        RuntimeError: `model_fn` itself raised.
    """
    from keras_idim.subspace import SubspaceModel

    def build() -> Any:
        keras.utils.set_random_seed(seed)
        try:
            return model_fn()
        except Exception as e:
            raise RuntimeError(
                f"`model_fn` failed to build the first model: {type(e).__name__}: {e}"
            ) from e

    first = build()
    if not isinstance(first, keras.Model):
        raise ValueError(
            "`model_fn` should return a keras.Model. It returned: "
            f"{first!r} of type {type(first).__name__}"
        )
    if isinstance(first, SubspaceModel):
        raise ValueError(
            "`model_fn` returned a SubspaceModel; the search wraps the base "
            "network itself. Return its base instead (`model.base_model`)."
        )
    if not first.built or not first.trainable_variables:
        raise ValueError(
            f"`model_fn` returned a model ({first.name!r}) that is "
            + (
                "not built: its weights do not exist yet. Give it a "
                "`keras.Input` or build it inside `model_fn`."
                if not first.built
                else "without trainable weights: there is nothing to train."
            )
        )
    second = build()
    shared = {id(v) for v in first.weights} & {id(v) for v in second.weights}
    if second is first or shared:
        raise ValueError(
            "`model_fn` returned the same model"
            + ("" if second is first else " weights")
            + " on two calls: it should build a fresh model on each call, or "
            "every run would start from the weights the last one trained. "
            "Build the model inside `model_fn` (for pretrained weights, load "
            f"them there, or use `keras.models.clone_model`). Received: "
            f"`model_fn={model_fn!r}`"
        )
    if measure is not None:
        return measure(first)
    return weight_counts(first)[0]


def weight_counts(model: keras.Model, space: Any = None) -> tuple[int, int]:
    """D, the numbers that `space` (`None`: every trainable weight) holds in
    `model`, and the number of their tensors. The space readies the model
    (e.g. puts LoRA adapters on it), so `model` should be a throwaway."""
    variables = model.trainable_variables if space is None else space.prepare(model)
    return int(sum(int(np.prod(v.shape)) for v in variables)), len(variables)


def check_space(space: Any, method: str) -> Any:
    """The `keras_idim.spaces.Space` of a subspace search (`None`:
    `Weights()`); a LoRA rank search moves no subspace, so it takes none."""
    from keras_idim import spaces
    from keras_idim.dimsearch import methods

    return methods.named(method).check_space(spaces.get(space))


def check_said_dims(dims: Any, start_dim: int, tensors: int) -> None:
    """Refuses a d that SAID cannot use: it trains one scale per weight
    tensor, so every d must exceed the number of tensors (a d-search of a
    transformer would otherwise fail run after run, each at wrap time)."""
    low = [d for d in dims if d <= tensors] if dims != "auto" else []
    if low:
        raise ValueError(
            "With `structure_aware=True`, every d should exceed the number of "
            f"trainable weight tensors of the model ({tensors}), one SAID scale "
            f"each. Received: `dims={dims!r}`"
        )
    if dims == "auto" and start_dim <= tensors:
        raise ValueError(
            "With `structure_aware=True`, `start_dim` should exceed the number "
            f"of trainable weight tensors of the model ({tensors}), one SAID "
            f"scale each (e.g. `start_dim={2 * tensors}`). Received: "
            f"`start_dim={start_dim}`"
        )


def check_dims_fit(
    dims: Any,
    start_dim: int,
    max_dim: int | None,
    limit: int,
    what: str = "D={:,}, the model's number of trainable weights",
):
    """Refuses a d above `limit` (D, or the largest LoRA rank), and
    `max_dim` below `start_dim`."""
    too_large = [d for d in (dims if dims != "auto" else []) if d > limit]
    if too_large:
        raise ValueError(
            f"`dims` should be at most {what.format(limit)}. Received: `dims={dims!r}`"
        )
    if max_dim is not None and max_dim > limit:
        raise ValueError(
            f"`max_dim` should be at most {what.format(limit)}. "
            f"{received('max_dim', max_dim)}"
        )
    if dims == "auto" and max_dim is not None and max_dim < start_dim:
        raise ValueError(
            "`max_dim` should be at least `start_dim`. Received: "
            f"`start_dim={start_dim}`, `max_dim={max_dim}`"
        )


def check_results_path(path: Any) -> str | None:
    """The results file's path, checked (creating nothing) before any run:
    a run's result must never be lost to a file that cannot be written."""
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(
            "`results_path` should be a file path (e.g. 'runs/fc/results.json') "
            f"or None. {received('results_path', path)}"
        )
    check_writable(path, "results_path")
    return os.fspath(path)


def describe_selector(selector: Any) -> Any:
    """Layer names as they are, a predicate by its name, None as None."""
    if selector is None or isinstance(selector, list | tuple):
        return None if selector is None else list(selector)
    return describe_object(selector)
