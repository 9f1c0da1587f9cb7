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
