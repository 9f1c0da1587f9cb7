"""Fastfood projection (Le, Sarlos, Smola, ICML 2013)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_idim.projections.base import Projection, derive_seed, tensor_bytes

#: log2 of the largest dense Hadamard factor used by `fwht`.
HADAMARD_FACTOR_BITS = 6


def hadamard_matrix(n: int) -> np.ndarray:
    """The n x n Sylvester Hadamard matrix (entries +-1), n a power of two."""
    h = np.ones([1, 1], np.float32)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def fwht(x: tf.Tensor) -> tf.Tensor:
    """Unnormalised fast Walsh-Hadamard transform of a (L,) tensor, L = 2^k.

    Returns `H_L @ x` with `H_L` the Sylvester Hadamard matrix (entries +-1,
    `H_L @ H_L = L * I`), never formed. Since `H_L` is the Kronecker product
    of small Hadamard factors (`H_{2^k} = H_{2^a} (x) H_{2^b} (x) ...`), x is
    viewed as a tensor with one axis per factor and each factor, a dense
    matrix of at most 64 x 64, is applied along its axis: ceil(k / 6) small
    contractions of O(64 L) work each, i.e. O(L log L) in all, and measured
    faster here than log2(L) butterfly stages of two-element sums.

    Args:
        x: tf.Tensor. A float tensor of shape (L,), L a power of two.

    Returns:
        A tensor of the same shape and dtype.
    """
    length = int(x.shape[0])
    bits = length.bit_length() - 1
    if length != 2**bits:
        raise ValueError(f"`fwht` needs a power-of-two length. Received: {length}")
    before = 1
    while bits > 0:
        m = min(bits, HADAMARD_FACTOR_BITS)
        f = 2**m
        after = length // (before * f)
        h = tf.constant(hadamard_matrix(f), x.dtype)
        x = tf.reshape(tf.matmul(h, tf.reshape(x, [before, f, after])), [length])
        before *= f
        bits -= m
    return x


def next_power_of_two(n: int) -> int:
    return 1 << (int(n) - 1).bit_length()


@keras.saving.register_keras_serializable(package="keras_idim")
class FastfoodProjection(Projection):
    """Fastfood projection: `V = S H G Pi H B`, O(L) memory, O(L log L) time.

    With `L` the next power of two >= max(D, d), theta_d is zero-padded to L
    and multiplied by, right to left: `B` random signs, `H` the Walsh-Hadamard
    transform (`fwht`, never an L x L matrix), `Pi` a random permutation, `G`
    Gaussian N(0, 1) scales, `H` again, and `S` chi-distributed row scales
    (`S_ii^2 ~ chi^2_L / L`, so E[S_ii^2] = 1). The first D outputs are kept.

    Column norms: every column of `H G Pi H B` has squared norm exactly
    `L * sum(G^2)`, and each of its L rows carries on average 1/L of it; so
    with the scale `1 / sqrt(D * sum(G^2))`, every column of the kept D x d
    block has unit norm in expectation. `dim` may exceed `full_dim` (up to L).

    Args:
        full_dim: int. D, the number of rows.
        dim: int. d, the number of columns (at most the next power of two
            >= max(D, d), so any positive d is accepted).
        seed: int. Seed of B, Pi, G and S. Defaults to `0`.

    Example:

    >>> proj = FastfoodProjection(full_dim=1000, dim=10, seed=0)
    >>> proj(tf.ones([10])).shape
    TensorShape([1000])
    """

    name = "fastfood"

    def __init__(self, full_dim: int, dim: int, seed: int = 0):
        super().__init__(full_dim, dim, seed)
        length = next_power_of_two(max(self.full_dim, self.dim))
        self.length = length
        self.signs = tf.cast(
            tf.random.stateless_uniform(
                [length],
                derive_seed(self.seed, 5),
                minval=0,
                maxval=2,
                dtype=tf.int32,
            )
            * 2
            - 1,
            tf.float32,
        )
        self.permutation = tf.random.experimental.stateless_shuffle(
            tf.range(length, dtype=tf.int32), derive_seed(self.seed, 6)
        )
        gauss = tf.random.stateless_normal(
            [length], derive_seed(self.seed, 7), dtype=tf.float64
        )
        chi2 = 2.0 * tf.random.stateless_gamma(
            [self.full_dim],
            derive_seed(self.seed, 8),
            alpha=length / 2.0,
            dtype=tf.float64,
        )
        row_scale = tf.sqrt(chi2 / length)
        scale = 1.0 / tf.sqrt(self.full_dim * tf.reduce_sum(gauss**2))
        self.gauss = tf.cast(gauss, tf.float32)
        # S and the normalisation, folded into one vector over the kept rows.
        self.row_scale = tf.cast(row_scale * scale, tf.float32)

    def call(self, v: tf.Tensor) -> tf.Tensor:
        x = tf.pad(v, [[0, self.length - self.dim]]) * self.signs
        x = tf.gather(fwht(x), self.permutation) * self.gauss
        return fwht(x)[: self.full_dim] * self.row_scale

    @property
    def memory_bytes(self) -> int:
        return tensor_bytes(self.signs, self.permutation, self.gauss, self.row_scale)
