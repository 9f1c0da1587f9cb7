"""The types that travel between Fastfood's modules (`fastfood`,
`fastfood_legacy`, `fastfood_ops`, `fastfood_kernel_backend`): P's stored
tensors by name (`FastfoodArrays`), and a range of blocks to draw from the
seed (`Draw`).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from keras_idim.projections.base import tensor_bytes


class Draw(NamedTuple):
    """One range of blocks to draw: blocks `first` to `stop - 1`, from the
    streams `(kind, *stream)`."""

    first: int
    stop: int
    stream: tuple[int, ...]


class FastfoodArrays(NamedTuple):
    """The stored tensors of a Fastfood P, or of a range of its blocks as
    drawn (`FastfoodProjection._draw`: one row a block, the kept rows'
    scales flat).

    Stored, the blocks are padded to whole groups (zero signs and
    Gaussians; identity permutations) and shaped
    `(num_groups, group_rows, block_length)`.
    """

    #: B: +-1 as int8.
    signs: tf.Tensor
    #: Pi: each block's permutation, as indices into the block (int16 up
    #: to blocks of 2^15, else int32).
    permutation: tf.Tensor
    #: G: float32 (version 3: float16).
    gauss: tf.Tensor
    #: The rows' scales, flat: S times each block's normalisation, float32
    #: (version 3: S alone, float16).
    row_scale: tf.Tensor
    #: Version 3: each block's normalisation, float32, shaped
    #: `(num_groups, group_rows)`; `None` before (in `row_scale`).
    block_scale: tf.Tensor | None

    def kernel_args(self) -> tuple:
        """The tensors in the order that the compiled kernel's ops take
        them (an empty `block_scale` for `None`)."""
        block_scale = tf.zeros([0]) if self.block_scale is None else self.block_scale
        return self.signs, self.permutation, self.gauss, self.row_scale, block_scale

    @property
    def memory_bytes(self) -> int:
        return tensor_bytes(*(t for t in self if t is not None))
