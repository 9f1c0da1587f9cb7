"""The `Projection` base class: a fixed random linear map from R^d to R^D."""

from __future__ import annotations

import functools
from typing import Any

import tensorflow as tf

from keras_idim.projections.pieces import Pieces
from keras_idim.utils.validation import check_positive_int, check_seed


def derive_seed(seed: int, *stream: int) -> tf.Tensor:
    """A stateless-op seed (shape (2,), int64) for one named random stream.

    Every random tensor of a projection draws from its own stream, identified
    by small integers, so that the streams never overlap and the same integer
    seed regenerates the same map bit for bit in any process.

    Args:
        seed: int. The projection's seed.
        *stream: int. Identifies the stream (e.g. which tensor, which block).

    Returns:
        An int64 tensor of shape (2,) for `tf.random.stateless_*` ops.
    """
    key = seed
    for s in stream:
        # A fixed 63-bit mixing (splitmix-like) of the stream ids into the key.
        key = (key * 0x9E3779B97F4A7C15 + s + 1) % (2**63)
    return tf.constant([seed % (2**63), key], dtype=tf.int64)


class Projection:
    """A fixed random linear map `P` from R^dim to R^full_dim.

    `P` is regenerated from an integer seed through stateless random ops, so
    the same `(full_dim, dim, seed)` gives the same map bit for bit in any
    process; it is never trained. Calling the projection on a `(dim,)` tensor
    returns the `(full_dim,)` tensor `P @ v`. The map is differentiable:
    gradients come from TensorFlow's autodiff through the forward map.

    Subclasses implement `call(v)` and `memory_bytes`; they build their random
    tensors in `__init__`. `transpose(g)` is `P^T g`, by autodiff of `call`
    unless a subclass gives its own `_transpose`. One optional interface
    more: `pieces`, the products over a vector cut in consecutive pieces,
    which a subclass may fuse (`keras_idim.projections.pieces`).

    Args:
        full_dim: int. D, the number of rows (the model's parameter count).
        dim: int. d, the number of columns (the subspace's dimension).
        seed: int. Seed of every random tensor of the map, in [0, 2**32)
            (NumPy integers accepted). Defaults to `0`.
    """

    name = "projection"
    #: Whether `__call__` and `transpose` run as XLA-compiled functions.
    jit_compile = False

    def __init__(self, full_dim: int, dim: int, seed: int = 0):
        self.full_dim = check_positive_int("full_dim", full_dim)
        self.dim = check_positive_int("dim", dim)
        self.seed = check_seed(seed)
        self._compiled: dict[str, tf.types.experimental.GenericFunction] = {}

    @property
    def supports_xla(self) -> bool:
        """Whether a train step that uses this projection may be compiled by
        XLA (a `SubspaceModel`'s `supports_jit`)."""
        return True

    def _maybe_compiled(self, name: str, fn):
        """`fn`, or its XLA-compiled `tf.function` when `jit_compile`.

        A compiled function called inside the (uncompiled) Keras train step
        is compiled by XLA on its own, so a projection can use XLA while the
        rest of the step, and Keras' `jit_compile` setting, stay as they are.
        """
        if not self.jit_compile:
            return fn
        if name not in self._compiled:
            self._compiled[name] = tf.function(fn, jit_compile=True)
        return self._compiled[name]

    def call(self, v: tf.Tensor) -> tf.Tensor:
        """Returns `P @ v` for a float32 tensor `v` of shape (dim,)."""
        raise NotImplementedError

    def _checked(self, v: Any) -> tf.Tensor:
        v = tf.convert_to_tensor(v, dtype=tf.float32)
        if v.shape.rank != 1 or (v.shape[0] is not None and v.shape[0] != self.dim):
            raise ValueError(
                f"The input of a {type(self).__name__} should have shape "
                f"({self.dim},). Received: shape={tuple(v.shape)}"
            )
        return v

    def __call__(self, v: Any) -> tf.Tensor:
        return self._maybe_compiled("call", self.call)(self._checked(v))

    def transpose(self, g: Any) -> tf.Tensor:
        """Returns `P^T @ g` for a tensor `g` of shape (full_dim,).

        This is the vector-Jacobian product of the forward map, taken by
        autodiff at `v = 0` (the map is linear, so the point does not
        matter). Inside a `tf.function` the unused forward output is pruned,
        so this costs one pass of the transposed map, not two.
        """
        g = tf.convert_to_tensor(g, dtype=tf.float32)
        return self._maybe_compiled("transpose", self._transpose)(g)

    @functools.cached_property
    def pieces(self) -> Pieces:
        """P's products over a vector cut in consecutive pieces (a subspace
        model's weight tensors): `base + s * (P v)` piece by piece, and
        `P^T (s * g)` with SAID's dot products (see
        `keras_idim.projections.pieces`). Here made from `call` and
        `transpose`; a projection that reads and writes the pieces where
        they are gives its own (`Pieces.fused`)."""
        return Pieces(self)

    def _transpose(self, g: tf.Tensor) -> tf.Tensor:
        v = tf.zeros([self.dim], tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(v)
            out = self.call(v)
        # A gather's gradient comes as IndexedSlices: make it dense.
        return tf.convert_to_tensor(tape.gradient(out, v, output_gradients=g))

    @property
    def memory_bytes(self) -> int:
        """Bytes of the tensors that this projection holds."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"full_dim": self.full_dim, "dim": self.dim, "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict) -> Projection:
        return cls(**config)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(full_dim={self.full_dim}, dim={self.dim}, "
            f"seed={self.seed})"
        )


def tensor_bytes(*tensors: tf.Tensor | tf.SparseTensor) -> int:
    """Total bytes held by dense or sparse tensors."""
    total = 0
    for t in tensors:
        if isinstance(t, tf.SparseTensor):
            total += tensor_bytes(t.indices, t.values)
        else:
            total += int(t.shape.num_elements()) * t.dtype.size
    return total
