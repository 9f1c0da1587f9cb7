"""The products of a projection's `pieces` interface, in the forms the
projection tests compare with P materialised."""

from __future__ import annotations

import tensorflow as tf


def affine(p, v, base, sizes=None, scales=None) -> tf.Tensor:
    """`base + s * (P v)`, joined from `p.pieces.affine`'s pieces (one
    piece of D rows without `sizes`)."""
    sizes = [p.full_dim] if sizes is None else sizes
    return tf.concat(list(p.pieces.affine(v, base, sizes, scales)), axis=0)


def transpose_pieces(p, pieces, scales=None) -> tf.Tensor:
    """`P^T (s * g)` for g given in pieces."""
    return p.pieces.transpose(pieces, scales)[0]


def piece_dots(p, v, pieces) -> tf.Tensor:
    """Each piece's dot product with its rows of `P v`."""
    return p.pieces.transpose(pieces, None, v)[1]
