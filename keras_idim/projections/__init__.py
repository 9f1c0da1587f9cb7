"""Random projections P from the subspace (d) to the full weights (D)."""

from __future__ import annotations

from keras_idim.projections.base import Projection
from keras_idim.projections.dense import DenseProjection
from keras_idim.projections.fastfood import FastfoodProjection
from keras_idim.projections.sparse import SparseProjection
from keras_idim.projections.unilora import UniLoRAProjection
from keras_idim.utils.validation import received

#: The projection kinds by name.
ALL = {
    "dense": DenseProjection,
    "sparse": SparseProjection,
    "fastfood": FastfoodProjection,
    "unilora": UniLoRAProjection,
}


def get(identifier: str | type[Projection]) -> type[Projection]:
    """Returns the projection class for a name (or a `Projection` subclass).

    Args:
        identifier: str or type. `"dense"`, `"sparse"`, `"fastfood"` or
            `"unilora"` (case-insensitive), or a `Projection` subclass,
            returned as is.

    Returns:
        A `Projection` subclass.

    Example:

    >>> get("fastfood")
    <class 'keras_idim.projections.fastfood.FastfoodProjection'>
    """
    if isinstance(identifier, type) and issubclass(identifier, Projection):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in ALL:
        return ALL[identifier.lower()]
    raise ValueError(
        f"Unknown `projection`. Expected one of {sorted(ALL)} or a "
        f"`Projection`. {received('projection', identifier)}"
    )


__all__ = [
    "DenseProjection",
    "FastfoodProjection",
    "Projection",
    "SparseProjection",
    "UniLoRAProjection",
    "get",
]
