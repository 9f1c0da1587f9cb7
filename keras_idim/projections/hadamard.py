"""The fast Walsh-Hadamard transform in TensorFlow ops (`fwht`), the H of
Fastfood's blocks (`keras_idim.projections.fastfood`)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

#: log2 of the largest dense Hadamard factor used by `fwht`.
HADAMARD_FACTOR_BITS = 6


def hadamard_matrix(n: int) -> np.ndarray:
    """The n x n Sylvester Hadamard matrix (entries +-1), n a power of two."""
    h = np.ones([1, 1], np.float32)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def factor_sizes(length: int) -> list[int]:
    """The sizes of the Hadamard factors of `H_length` that `fwht` applies,
    in its order: ceil(k / 6) powers of two of (nearly) equal size, the
    larger first, for length = 2^k (none for 1)."""
    bits = length.bit_length() - 1
    if length != 2**bits:
        raise ValueError(f"`fwht` needs a power-of-two length. Received: {length}")
    steps = -(-bits // HADAMARD_FACTOR_BITS)
    return [2 ** (bits // steps + (1 if i < bits % steps else 0)) for i in range(steps)]


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
    work in m large matrix products, instead of log2(L) butterfly stages or
    contractions along inner axes.

    Args:
        x: tf.Tensor. A float tensor of static shape (..., L), L a power of
            two.

    Returns:
        A tensor of the same shape and dtype.
    """
    shape = x.shape
    length = int(shape[-1])
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    for f in factor_sizes(length):
        h = tf.constant(hadamard_matrix(f), x.dtype)
        y = tf.matmul(tf.reshape(x, [-1, f]), h)
        y = tf.transpose(tf.reshape(y, [rows, length // f, f]), [0, 2, 1])
        x = tf.reshape(y, [rows, length])
    return tf.reshape(x, shape)


def fwht_products(x: tf.Tensor) -> tf.Tensor:
    """`fwht(x)` for x of shape (rows, L), as matrix products alone: no
    transposes.

    `H_L = H_a kron H_(L/a)` (a: `fwht`'s first factor), so each row, read
    as an (a, L/a) matrix Y, becomes `H_a Y H_(L/a)`: a batched product
    with one `H_a` broadcast over the rows (the left factor), then the
    rows of the result through `H_(L/a)`, the same way, down to at most
    64 numbers. Outside XLA, on a CPU, TensorFlow's batched products
    (oneDNN) made this 0.51 to 0.57 times `fwht`'s time under XLA on a
    group of BERT-base's blocks (1,671 x 1,024 floats; bench/RESULTS.md);
    under XLA, `fwht` is the faster of the two. The sums run in another
    order than `fwht`'s (the same numbers to rounding).
    """
    rows, length = (int(n) for n in x.shape)
    sizes = factor_sizes(length)
    if len(sizes) <= 1:
        return tf.matmul(x, tf.constant(hadamard_matrix(length), x.dtype))
    a = sizes[0]
    h = tf.constant(hadamard_matrix(a), x.dtype)
    y = tf.matmul(h[None], tf.reshape(x, [rows, a, length // a]))
    return tf.reshape(
        fwht_products(tf.reshape(y, [rows * a, length // a])), [rows, length]
    )
