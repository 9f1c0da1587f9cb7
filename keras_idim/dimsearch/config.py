"""The checks of a search's arguments: the model function, the dims and
seeds, the space and method, the optimizer and its rate, the callbacks and
the results path. The metrics' checks are in `metric_checks`, the data's in
`data_checks`, the stored descriptions in `describe`."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_idim.dimsearch.describe import describe_object
from keras_idim.dimsearch.rates import AUTO
from keras_idim.utils.io import check_writable
from keras_idim.utils.validation import (
    SEED_RANGE,
    check_positive_int,
    is_int,
    is_number,
    received,
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
