"""`Pieces`: a projection's products over a vector cut in consecutive
pieces, the one interface a projection may fuse.

A subspace model's D weights are not one tensor but one per layer weight,
in order. Its step needs two products over them: the weights themselves,
`base + s * (P v)` piece by piece (`affine`), and the pull-back of their
gradients, `P^T (s * g)` with SAID's dot products `g_t . (P v)_t`
(`transpose`); `s` is SAID's scale of each piece, or 1.

`Pieces` makes both from the projection's `call` and `transpose` alone
(the whole (D,) vector, then split or joined). A projection that can read
and write the pieces where they are gives its own subclass (Fastfood,
Uni-LoRA), with `fused = True`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import tensorflow as tf

if TYPE_CHECKING:
    from keras_idim.projections.base import Projection


class SparseRows(NamedTuple):
    """A piece of a gradient nonzero in some rows only: that of a weight
    tensor read by a gather (an embedding's `tf.IndexedSlices`), as
    `Pieces.transpose` may take it (`Pieces.sparse_rows`). The tensor's
    `size` numbers are read as rows of `values.shape[1]` (its first axis);
    row `indices[i]` holds `values[i]`, summed where an index repeats."""

    #: (k, width) float32: the rows.
    values: tf.Tensor
    #: (k,) int: each row's index in the tensor's first axis.
    indices: tf.Tensor
    #: The tensor's number of numbers (a multiple of width).
    size: int

    @classmethod
    def of(cls, g: tf.IndexedSlices, shape: tuple) -> SparseRows:
        """The rows of `g`, a gradient of a tensor of `shape`."""
        size = math.prod(int(n) for n in shape)
        width = size // int(shape[0])
        values = tf.reshape(tf.cast(g.values, tf.float32), [-1, width])
        return cls(values, g.indices, size)

    @property
    def width(self) -> int:
        return int(self.values.shape[1])

    def dense(self) -> tf.Tensor:
        """The piece made whole: a (size,) float32 vector."""
        rows = self.size // self.width
        whole = tf.math.unsorted_segment_sum(self.values, self.indices, rows)
        return tf.reshape(whole, [-1])


def dense(piece: Any) -> tf.Tensor:
    """A piece as a 1-D float32 tensor (`SparseRows` made whole)."""
    if isinstance(piece, SparseRows):
        return piece.dense()
    return tf.convert_to_tensor(piece, tf.float32)


class Pieces:
    """The products of `projection` over consecutive pieces, made from its
    `call` and `transpose` (the whole vector, split or joined).

    Args:
        projection: Projection. P, of shape (D, d).
    """

    fused = False
    """Whether the pieces are read and written where they are (in one pass,
    or a group of rows at a time), with no (D,) temporary but the weights
    themselves, and `P v`'s rows made again for the dot products (then SAID
    needs no stored `P theta_d`)."""

    sparse_rows = False
    """Whether `transpose` takes a piece given as `SparseRows` through the
    rows of P that its rows are in only (else it makes the piece whole)."""

    def __init__(self, projection: Projection):
        self.projection = projection

    def affine(
        self, v: Any, base: Any, sizes: list, scales: Any = None
    ) -> Iterator[tf.Tensor]:
        """`base + s * (P v)` as an iterator of its consecutive pieces of
        `sizes` rows, s `scales[t]` on piece t (or 1): a subspace model's
        weights, one tensor at a time.

        Args:
            v: The (d,) vector.
            base: The (D,) vector added (theta_0), or `None`: nothing
                added (the pieces of `s * (P v)` alone).
            sizes: list of int. The pieces' lengths, adding up to D.
            scales: The (number of pieces,) scales, or `None` (all 1).
        """
        p = self.projection
        v = p._checked(v)
        if base is None:
            u = tf.split(p(v), sizes)
            if scales is None:
                return iter(u)
            scales = tf.unstack(tf.convert_to_tensor(scales, tf.float32))
            return (s * q for s, q in zip(scales, u))
        base = tf.convert_to_tensor(base, tf.float32)
        if scales is None:
            # One pass; compiled (`jit_compile`), the sum is fused into the
            # map's last step, so no (D,) tensor is made besides the result.
            whole = p._maybe_compiled("affine", lambda v, b: b + p.call(v))(v, base)
            return iter(tf.split(whole, sizes))
        u = p(v)
        scales = tf.unstack(tf.convert_to_tensor(scales, tf.float32))
        return (
            b + s * p
            for b, s, p in zip(tf.split(base, sizes), scales, tf.split(u, sizes))
        )

    def transpose(
        self, pieces: list, scales: Any = None, v: Any = None
    ) -> tuple[tf.Tensor, tf.Tensor | None]:
        """`(P^T (s * g), dots)` for g given as consecutive 1-D `pieces`
        (lengths adding up to D), s `scales[t]` on piece t (or 1); `dots`
        holds, with `v`, each piece's dot product with its rows of `P v`
        (SAID's gradients of the scales), else `None`.

        Args:
            pieces: list of 1-D tensors (or `SparseRows`), g piece by piece.
            scales: The (number of pieces,) scales, or `None` (all 1).
            v: The (d,) vector whose `P v` the dots use, or `None`.
        """
        pieces = [dense(p) for p in pieces]
        scaled = pieces
        if scales is not None:
            scales = tf.unstack(tf.convert_to_tensor(scales, tf.float32))
            scaled = [s * p for s, p in zip(scales, pieces)]
        total = self.projection.transpose(tf.concat(scaled, axis=0))
        if v is None:
            return total, None
        u = tf.split(self.projection(v), [int(p.shape[0]) for p in pieces])
        return total, tf.stack([tf.tensordot(p, q, axes=1) for p, q in zip(pieces, u)])
