"""Fastfood projection (Le, Sarlos, Smola, ICML 2013)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_idim.projections.base import Projection, derive_seed, tensor_bytes
from keras_idim.utils.validation import check_bool, check_choice

#: log2 of the largest dense Hadamard factor used by `fwht`.
HADAMARD_FACTOR_BITS = 6


def hadamard_matrix(n: int) -> np.ndarray:
    """The n x n Sylvester Hadamard matrix (entries +-1), n a power of two."""
    h = np.ones([1, 1], np.float32)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def fwht(x: tf.Tensor) -> tf.Tensor:
    """Unnormalised fast Walsh-Hadamard transform along the last axis.

    Returns `x @ H_L` (`H_L` is symmetric) for x of shape (..., L), L = 2^k,
    with `H_L` the Sylvester Hadamard matrix (entries +-1,
    `H_L @ H_L = L * I`), never formed. `H_L` is the Kronecker product of
    m = ceil(k / 6) small Hadamard factors of (nearly) equal size, at most
    64 x 64. Each index is read as m digits; each step multiplies the last
    digit by its factor (one matrix product of shape (L/f, f) x (f, f)) and
    rotates that digit to the front (a transpose), so after m steps every
    factor is applied and the digits are back in order. That is O(L log L)
    work in m large matrix products, measured several times faster here than
    log2(L) butterfly stages or contractions along inner axes.

    Args:
        x: tf.Tensor. A float tensor of static shape (..., L), L a power of
            two.

    Returns:
        A tensor of the same shape and dtype.
    """
    shape = x.shape
    length = int(shape[-1])
    bits = length.bit_length() - 1
    if length != 2**bits:
        raise ValueError(f"`fwht` needs a power-of-two length. Received: {length}")
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    steps = -(-bits // HADAMARD_FACTOR_BITS)
    for i in range(steps):
        f = 2 ** (bits // steps + (1 if i < bits % steps else 0))
        h = tf.constant(hadamard_matrix(f), x.dtype)
        y = tf.matmul(tf.reshape(x, [-1, f]), h)
        y = tf.transpose(tf.reshape(y, [rows, length // f, f]), [0, 2, 1])
        x = tf.reshape(y, [rows, length])
    return tf.reshape(x, shape)


def next_power_of_two(n: int) -> int:
    return 1 << (int(n) - 1).bit_length()


_BLOCKS = ("single", "stacked")


@keras.saving.register_keras_serializable(package="keras_idim")
class FastfoodProjection(Projection):
    """Fastfood projection: `V = S H G Pi H B`, O(D) memory, O(D log D) time.

    theta_d is zero-padded to a block length B (a power of two) and
    multiplied by, right to left: `B` random signs, `H` the Walsh-Hadamard
    transform (`fwht`, never a B x B matrix), `Pi` a random permutation, `G`
    Gaussian N(0, 1) scales, `H` again, and `S` chi-distributed row scales
    (`S_ii^2 ~ chi^2_B / B`, so E[S_ii^2] = 1).

    - `blocks="single"` (Le et al.; Li et al. 2018): one block of
      B = L, the next power of two >= max(D, d); the first D rows are kept.
      Costs O(L log L) per product. The first k columns of P do not depend
      on d.
    - `blocks="stacked"`: B is the next power of two >= d, and
      ceil(D / B) independent blocks (their own B, Pi, G, S) are stacked to
      cover the D rows: O(D log d) per product. For d much smaller than D
      this measured faster here (see bench/RESULTS.md) with the same column
      statistics, and it is the default (`"auto"` picks it when B <= L / 4,
      i.e. when it saves at least two levels of the transform).

    Column norms: every column of a block's `H G Pi H B` has squared norm
    exactly `B * sum(G_b^2)`, spread on average evenly over its B rows; with
    the scale `1 / sqrt(D * sum(G_b^2))` per block, every column of the kept
    D x d matrix has unit norm in expectation. `dim` may exceed `full_dim`
    (then a single block is used).

    Args:
        full_dim: int. D, the number of rows.
        dim: int. d, the number of columns (any positive d).
        seed: int. Seed of B, Pi, G and S. Defaults to `0`.
        blocks: str. `"auto"`, `"single"` or `"stacked"`. Defaults to
            `"auto"`.
        jit_compile: bool. Run the map and its transpose as XLA-compiled
            functions (also inside a train step that Keras does not
            compile); they measured 1.3 to 2 times faster here. Defaults to
            `True`.

    Example:

    >>> proj = FastfoodProjection(full_dim=1000, dim=10, seed=0)
    >>> proj(tf.ones([10])).shape
    TensorShape([1000])
    """

    name = "fastfood"

    def __init__(
        self,
        full_dim: int,
        dim: int,
        seed: int = 0,
        blocks: str = "auto",
        jit_compile: bool = True,
    ):
        super().__init__(full_dim, dim, seed)
        self.jit_compile = check_bool("jit_compile", jit_compile)
        check_choice("blocks", blocks, ("auto", *_BLOCKS))
        length = next_power_of_two(max(self.full_dim, self.dim))
        small = next_power_of_two(self.dim)
        if blocks == "auto":
            blocks = "stacked" if 4 * small <= length else "single"
        if blocks == "stacked" and self.dim > self.full_dim:
            blocks = "single"
        self.blocks = blocks
        self.block_length = length if blocks == "single" else small
        self.num_blocks = -(-self.full_dim // self.block_length)
        shape = [self.num_blocks, self.block_length]
        self.signs = tf.cast(
            tf.random.stateless_uniform(
                shape, derive_seed(self.seed, 5), minval=0, maxval=2, dtype=tf.int32
            )
            * 2
            - 1,
            tf.float32,
        )
        if blocks == "single":
            perm = tf.random.experimental.stateless_shuffle(
                tf.range(length, dtype=tf.int32), derive_seed(self.seed, 6)
            )[None, :]
        else:  # one random permutation per block: argsort of random keys
            keys = tf.random.stateless_uniform(
                shape,
                derive_seed(self.seed, 9),
                dtype=tf.int64,
                minval=None,
                maxval=None,
            )
            perm = tf.argsort(keys, axis=1, stable=True, direction="ASCENDING")
        offsets = tf.range(self.num_blocks, dtype=tf.int32)[:, None] * self.block_length
        self.permutation = tf.reshape(tf.cast(perm, tf.int32) + offsets, [-1])
        gauss = tf.random.stateless_normal(
            shape, derive_seed(self.seed, 7), dtype=tf.float64
        )
        chi2 = 2.0 * tf.random.stateless_gamma(
            [self.full_dim],
            derive_seed(self.seed, 8),
            alpha=self.block_length / 2.0,
            dtype=tf.float64,
        )
        row_scale = tf.sqrt(chi2 / self.block_length)
        block_scale = 1.0 / tf.sqrt(self.full_dim * tf.reduce_sum(gauss**2, axis=1))
        rows_block = tf.range(self.full_dim) // self.block_length
        self.gauss = tf.cast(gauss, tf.float32)
        # S and the normalisation, folded into one vector over the kept rows.
        self.row_scale = tf.cast(
            row_scale * tf.gather(block_scale, rows_block), tf.float32
        )

    def call(self, v: tf.Tensor) -> tf.Tensor:
        x = tf.pad(v, [[0, self.block_length - self.dim]])[None, :] * self.signs
        x = tf.gather(tf.reshape(fwht(x), [-1]), self.permutation)
        x = fwht(tf.reshape(x, [self.num_blocks, self.block_length]) * self.gauss)
        return tf.reshape(x, [-1])[: self.full_dim] * self.row_scale

    @property
    def memory_bytes(self) -> int:
        return tensor_bytes(self.signs, self.permutation, self.gauss, self.row_scale)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(blocks=self.blocks, jit_compile=self.jit_compile)
        return config
