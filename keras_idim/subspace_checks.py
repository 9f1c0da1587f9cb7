"""The checks of `SubspaceModel`'s arguments, and what they resolve to.

`check_arguments` validates every argument before the model is built, in
one order (base model, numbers, projection, space, sizes), so that the
first wrong argument is the one named. On the way it prepares the space on
the base model (a LoRA space enables its adapters) and makes the projection.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
import numpy as np

from keras_idim import _compat, spaces
from keras_idim import projections as projections_module
from keras_idim.projections.base import Projection
from keras_idim.utils.validation import (
    check_bool,
    check_positive_int,
    check_seed,
    is_number,
)

#: The attribute that marks a base model as wrapped by a SubspaceModel.
WRAPPED = "_keras_idim_wrapped"


class Arguments(NamedTuple):
    """A SubspaceModel's arguments, checked and resolved."""

    space: spaces.Space
    dim: int
    seed: int
    structure_aware: bool
    said_learning_rate: float | None
    projection: Projection
    #: The base model's variables that the subspace drives, in P's order.
    variables: list
    full_dim: int


def check_arguments(
    base_model: Any,
    dim: Any,
    projection: Any,
    seed: Any,
    structure_aware: Any,
    projection_kwargs: Any,
    said_learning_rate: Any,
    space: Any,
    wrapper: type,
) -> Arguments:
    """Checks a SubspaceModel's arguments (see its docstring) and resolves
    them: the space's variables (prepared on `base_model`, with new weights
    drawn from the seed) and the projection (made from its name or class).

    Args:
        wrapper: type. `SubspaceModel`, which a base model must not be.

    Raises:
        RuntimeError: Keras does not run on TensorFlow.
        ValueError: an argument that does not fit, named with its value.
    """
    _compat.check_backend("a SubspaceModel")
    _check_base_model(base_model, wrapper)
    dim = check_positive_int("dim", dim)
    seed = check_seed(seed)
    structure_aware = check_bool("structure_aware", structure_aware)
    if said_learning_rate is not None and (
        not structure_aware
        or not is_number(said_learning_rate)
        or not 0 < said_learning_rate < float("inf")
    ):
        raise ValueError(
            "`said_learning_rate` should be a positive number (the rate of "
            "SAID's per-tensor scales), and only with "
            "`structure_aware=True`. Received: "
            f"`said_learning_rate={said_learning_rate!r}` with "
            f"`structure_aware={structure_aware}`"
        )
    given = isinstance(projection, Projection)
    projection_cls = None if given else projections_module.get(projection)
    if projection_kwargs is not None and (
        not isinstance(projection_kwargs, dict) or given
    ):
        raise ValueError(
            "`projection_kwargs` should be a dict of arguments of the "
            "projection class, and only with a projection name or class. "
            f"Received: `projection_kwargs={projection_kwargs!r}`"
        )
    space = spaces.get(space)
    if getattr(base_model, WRAPPED, False):
        raise _no_weights(base_model)
    if given:
        seed = projection.seed
    # The space's new weights (LoRA's A) are drawn from the seed too.
    variables = space.prepare(base_model, seed=seed)
    if not variables:
        raise _no_weights(base_model)
    full_dim = sum(int(np.prod(v.shape, dtype=np.int64)) for v in variables)
    sub_dim = _check_dim(base_model, dim, structure_aware, space, variables, full_dim)
    if given:
        if (projection.full_dim, projection.dim) != (full_dim, sub_dim):
            raise ValueError(
                f"`projection` should map R^{sub_dim} to R^{full_dim} for "
                f"this base model and `dim`. Received: `projection={projection!r}`"
            )
    else:
        try:
            projection = projection_cls(
                full_dim, sub_dim, seed=seed, **(projection_kwargs or {})
            )
        except TypeError as e:
            raise ValueError(
                f"`projection_kwargs` do not fit {projection_cls.__name__}"
                f": {e}. Received: `projection_kwargs={projection_kwargs!r}`"
            ) from None
    said_learning_rate = (
        None if said_learning_rate is None else float(said_learning_rate)
    )
    return Arguments(
        space,
        dim,
        seed,
        structure_aware,
        said_learning_rate,
        projection,
        variables,
        full_dim,
    )


def _check_base_model(base_model: Any, wrapper: type) -> None:
    """Refuses what is not a built Keras model, or is a SubspaceModel."""
    if not isinstance(base_model, keras.Model):
        raise ValueError(
            "`base_model` should be a `keras.Model`. "
            f"Received: `base_model={base_model!r}` "
            f"of type {type(base_model).__name__}"
        )
    if isinstance(base_model, wrapper):
        raise ValueError(
            f"`base_model` ({base_model.name!r}) is already a SubspaceModel: "
            "wrapping it again would train nothing (its only weights are "
            "theta_d). Wrap its base network instead: "
            "`SubspaceModel(model.base_model, dim)` (theta_0 is then the "
            "base's current weights, theta_0 + P theta_d of the old model)."
        )
    if not base_model.built:
        raise ValueError(
            f"`base_model` ({base_model.name!r}) is not built: its "
            "weights do not exist yet. Build it first, e.g. with "
            "`base_model.build(input_shape)` or by calling it on a batch "
            "of data, or give it a `keras.Input`."
        )


def _no_weights(base_model: keras.Model) -> ValueError:
    return ValueError(
        f"`base_model` ({base_model.name!r}) has no trainable "
        "weights, so there is nothing to train in a subspace (was "
        "it already wrapped by a SubspaceModel, or frozen?)."
    )


def _check_dim(
    base_model: keras.Model,
    dim: int,
    structure_aware: bool,
    space: spaces.Space,
    variables: list,
    full_dim: int,
) -> int:
    """Refuses a `dim` that does not fit the space's D (and, with SAID, its
    number of tensors); returns the number of columns of P."""
    # The space's name in errors; today's wording for the default.
    in_space = "" if space == spaces.Weights() else f" in the space {space.spec!r}"
    num_tensors = len(variables)
    if structure_aware and dim <= num_tensors:
        raise ValueError(
            "With `structure_aware=True`, `dim` should exceed the number "
            f"of trainable weight tensors of the base model{in_space} "
            f"({num_tensors}), one scale each. Received: `dim={dim}`"
        )
    if dim > full_dim:
        raise ValueError(
            f"`dim` should be at most D={full_dim:,}, the number of "
            f"trainable weights of `base_model` ({base_model.name!r})"
            f"{in_space}: a larger subspace cannot reach more of the "
            f"weight space. Received: `dim={dim}`"
        )
    return dim - num_tensors if structure_aware else dim
