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


def largest_made(graph) -> int:
    """The most elements of any tensor made in a graph (its inputs and
    captured tensors aside, constants (the Hadamard factors, made once)
    and reshapes, which share their input's buffer), and of any tensor
    made in the functions it calls."""
    most = 0
    for op in graph.get_operations():
        if op.type in ("Placeholder", "Reshape", "Const"):
            continue
        for out in op.outputs:
            if out.shape.is_fully_defined():
                most = max(most, out.shape.num_elements())
    for fn in graph._functions.values():
        most = max(most, largest_made(fn.graph))
    return most
