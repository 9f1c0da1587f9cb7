"""The `Projection` base class: a fixed random linear map from R^d to R^D."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

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
    tensors in `__init__`.

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

    def affine(self, v: Any, base: Any) -> tf.Tensor:
        """Returns `base + P @ v`, for `v` of shape (dim,), `base` (full_dim,).

        One pass of the map; compiled (`jit_compile`), the sum is fused into
        its last step, so that no (full_dim,) tensor is made besides the
        result (a subspace model's `theta_0 + P theta_d`).
        """
        v = self._checked(v)
        base = tf.convert_to_tensor(base, dtype=tf.float32)
        return self._maybe_compiled("affine", self._affine)(v, base)

    def _affine(self, v: tf.Tensor, base: tf.Tensor) -> tf.Tensor:
        return base + self.call(v)

    def transpose_pieces(self, pieces: list, scales: Any = None) -> tf.Tensor:
        """Returns `P^T @ g` for `g` given as consecutive 1-D pieces (e.g.
        one per weight tensor), whose lengths add up to full_dim, piece t
        times `scales[t]` when `scales` is given.

        The same as `transpose(tf.concat([s_t * g_t], 0))`; a projection may
        join the pieces in the layout its products want (Fastfood: padded
        to whole groups of blocks), so that `g` is copied once, or read them
        where they are (`fuses_pieces`).
        """
        if scales is not None:
            scales = tf.unstack(tf.convert_to_tensor(scales, tf.float32))
            pieces = [s * p for s, p in zip(scales, pieces)]
        return self.transpose(tf.concat(pieces, axis=0))

    #: Whether `transpose_pieces`, `transpose_and_dots` and `affine_pieces`
    #: read and write the pieces where they are (in one pass, or a group of
    #: rows at a time), with no (full_dim,) temporary but `affine`'s result,
    #: and make `P v`'s rows again for the dot products (then SAID needs no
    #: stored `P theta_d`).
    fuses_pieces = False

    def affine_pieces(self, v: Any, base: Any, sizes: list, scales: Any = None) -> Any:
        """`base + s * (P @ v)` as an iterator of its consecutive pieces of
        `sizes` rows (s = `scales[t]` on piece t, or 1): a subspace model's
        weights, one tensor at a time. A projection may make each piece
        only when it is asked for (Fastfood's TensorFlow ops: a group of
        rows of `P v` at a time); here the whole sum is split."""
        if scales is None:
            whole = self.affine(v, base)
        else:
            whole = self.scaled_affine(v, base, scales, sizes)
        return iter(tf.split(whole, sizes))

    def scaled_affine(self, v: Any, base: Any, scales: Any, sizes: list) -> tf.Tensor:
        """Returns `base + s * (P @ v)`, where `s` is `scales[t]` on the t-th
        of consecutive pieces of `sizes` rows (SAID's
        `theta_0 + lambda * P theta_d`)."""
        u = self(v)
        base = tf.convert_to_tensor(base, tf.float32)
        scales = tf.unstack(tf.convert_to_tensor(scales, tf.float32))
        return tf.concat(
            [
                b + s * p
                for b, s, p in zip(tf.split(base, sizes), scales, tf.split(u, sizes))
            ],
            axis=0,
        )

    def transpose_and_dots(self, pieces: list, scales: Any, v: Any) -> tuple:
        """`(transpose_pieces(pieces, scales), piece_dots(v, pieces))`: SAID's
        two gradients, which a projection that `fuses_pieces` gives from
        one pass of its transpose."""
        return self.transpose_pieces(pieces, scales), self.piece_dots(v, pieces)

    def piece_dots(self, v: Any, pieces: list) -> tf.Tensor:
        """Returns, for each of the consecutive 1-D `pieces` of a
        (full_dim,) vector g, the dot product of that piece with the same
        rows of `P @ v` (SAID's lambda gradients)."""
        u = tf.split(self(v), [int(p.shape[0]) for p in pieces])
        return tf.stack([tf.tensordot(p, q, axes=1) for p, q in zip(pieces, u)])

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
