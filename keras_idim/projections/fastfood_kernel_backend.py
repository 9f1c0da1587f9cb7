"""Fastfood's products in the compiled CPU kernel, and the choice of
backend.

A `FastfoodProjection` makes its products through one backend object,
chosen once when it is made (`choose_backend`): `KernelBackend` (here) runs
them in the compiled kernel's ops (`keras_idim.projections.kernel` builds
and loads them), `fastfood_ops.OpsBackend` in TensorFlow ops. Both have
the same methods (`forward`, `transpose`, `affine_pieces`,
`transpose_pieces`) and attributes (`uses_kernel`, `supports_xla`), and
read the projection's stored tensors (`projection.arrays`) where they are.

The kernel makes each product in one pass over P's blocks: the sum with a
base (`affine`), SAID's scales of the pieces (`scaled_affine`) and the dot
products of the pieces with `P v` (`transpose_pieces` with `v`) inside it.

`FastfoodPieces` is a `FastfoodProjection`'s `pieces`: the products over
pieces, made by whichever backend it chose.
"""

from __future__ import annotations

import tensorflow as tf

from keras_idim.projections import kernel
from keras_idim.projections.fastfood_ops import OpsBackend
from keras_idim.projections.pieces import Pieces, dense


def kernel_ops(full_dim: int):
    """The compiled kernel's ops when a P of `full_dim` rows should use
    them (`kernel.wanted`), else `None`; an error where `kernel.ENV` asks
    for the kernel and it cannot be loaded."""
    if not kernel.wanted(full_dim):
        return None
    ops = kernel.load()
    if ops is None and kernel.mode() == "on":
        raise RuntimeError(
            f"{kernel.ENV}=1 asks for Fastfood's compiled kernel, which is "
            f"unavailable: {kernel.unavailable_reason()}. Set {kernel.ENV}"
            "=auto (or 0) to use TensorFlow ops instead."
        )
    if ops is None:
        kernel.warn_once(full_dim)
    return ops


def choose_backend(projection):
    """The backend of a `FastfoodProjection`'s products: `KernelBackend`
    where the compiled kernel is wanted and loads (`kernel_ops`), else
    `OpsBackend`."""
    ops = kernel_ops(projection.full_dim)
    if ops is None:
        return OpsBackend(projection)
    return KernelBackend(projection, ops)


def _floats(x) -> tf.Tensor:
    """`x` as float32, or an empty tensor (the kernel's "none") for `None`."""
    return tf.zeros([0]) if x is None else tf.convert_to_tensor(x, tf.float32)


class KernelBackend:
    """A `FastfoodProjection`'s products in the compiled kernel (see the
    module).

    Args:
        projection: FastfoodProjection. Its stored tensors
            (`projection.arrays`), passed to the kernel's ops.
        ops: the kernel's op module (`kernel.load`).
    """

    #: The products run in the compiled kernel.
    uses_kernel = True
    #: XLA cannot compile the kernel's ops.
    supports_xla = False
    #: The kernel reads every piece whole.
    sparse_rows = False

    def __init__(self, projection, ops):
        self.p = projection
        self.ops = ops

    def _forward(self, v, base, scales, sizes: list) -> tf.Tensor:
        """`base + s * (P v)` in one pass, `s` `scales[t]` on the t-th of
        the pieces of `sizes` rows; without a base (empty) `P v`, without
        scales (empty) s = 1."""
        return self.ops.keras_idim_fastfood_forward(
            v,
            base,
            scales,
            *self.p.arrays.kernel_args(),
            full_dim=self.p.full_dim,
            sizes=[int(n) for n in sizes],
        )

    def transpose_pieces(self, pieces: list, scales=None, v=None) -> tuple:
        """`(P^T (s * g), dots)` for g in consecutive 1-D `pieces` (s
        `scales[t]` on piece t, or 1), and with `v` the dot product of each
        piece with its rows of `P v` (else `dots` is zeros): the kernel
        reads the pieces where they are, scaled as read."""
        return self.ops.keras_idim_fastfood_transpose(
            [dense(p) for p in pieces],
            _floats(scales),
            tf.zeros([0]) if v is None else v,
            *self.p.arrays.kernel_args(),
            full_dim=self.p.full_dim,
            dim=self.p.dim,
        )

    def forward(self, v: tf.Tensor) -> tf.Tensor:
        """`P v`, differentiable: the kernel's op has no registered
        gradient, so autodiff is told that the map's vector-Jacobian
        product is the kernel's own transpose, `P^T g`."""

        @tf.custom_gradient
        def forward(v):
            def grad(upstream):
                return self.transpose_pieces([upstream])[0]

            return self._forward(v, tf.zeros([0]), tf.zeros([0]), []), grad

        return forward(v)

    def affine(self, v: tf.Tensor, base: tf.Tensor) -> tf.Tensor:
        """`base + P v`, the sum made in the kernel's pass."""
        return self._forward(v, base, tf.zeros([0]), [])

    def scaled_affine(self, v, base, scales, sizes: list) -> tf.Tensor:
        """`base + s * (P v)`, s `scales[t]` on the t-th piece of `sizes`
        rows, in the kernel's pass."""
        return self._forward(v, base, _floats(scales), sizes)

    def affine_pieces(self, v, base, sizes: list, scales=None):
        """`base + s * (P v)` (s = `scales[t]` on piece t, or 1) made whole
        in one pass, as an iterator of its pieces of `sizes` rows."""
        base = _floats(base)  # None: an empty base, none added
        if scales is None:
            whole = self.affine(v, base)
        else:
            whole = self.scaled_affine(v, base, scales, sizes)
        return iter(tf.split(whole, sizes))

    def transpose(self, g: tf.Tensor) -> tf.Tensor:
        """`P^T g` for g of shape (D,)."""
        return self.transpose_pieces([g])[0]


class FastfoodPieces(Pieces):
    """A `FastfoodProjection`'s products over pieces, in its backend: the
    kernel reads and writes the pieces in one pass, the TensorFlow ops
    group by group (`fastfood_ops`); SAID's dot products come from the
    transpose's own pass."""

    fused = True

    @property
    def sparse_rows(self) -> bool:
        return self.projection.backend.sparse_rows

    def affine(self, v, base, sizes: list, scales=None):
        p = self.projection
        if base is not None:
            base = tf.convert_to_tensor(base, tf.float32)
        return p.backend.affine_pieces(p._checked(v), base, sizes, scales)

    def transpose(self, pieces: list, scales=None, v=None) -> tuple:
        p = self.projection
        if v is None:
            return p.backend.transpose_pieces(pieces, scales)[0], None
        return tuple(p.backend.transpose_pieces(pieces, scales, p._checked(v)))
