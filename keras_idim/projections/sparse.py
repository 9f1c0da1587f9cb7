"""Very sparse random projection (Li, Hastie, Church 2006)."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_idim.projections.base import Projection, derive_seed, tensor_bytes
from keras_idim.utils.exports import keras_idim_export
from keras_idim.utils.validation import check_bool

#: Random draws generated at once while building (bounds construction memory).
CHUNK_ELEMENTS = 2**22


@keras_idim_export("keras_idim.projections.SparseProjection")
class SparseProjection(Projection):
    """Very sparse random projection with columns of unit L2 norm.

    Each entry of the D x d matrix is nonzero with probability
    `density = 1 / sqrt(D)` (Li, Hastie, Church, KDD 2006), with a random
    sign; each column is then divided by the square root of its number of
    nonzeros, so that every column has unit norm exactly. A column that drew
    no nonzero at all is drawn again (from its own stream), so the columns
    follow the very sparse distribution conditioned on being nonempty.

    The nonzeros of a column are found by sampling the geometric gaps between
    them, so no dense D x d array exists at any time, not even while
    building: memory is about `d * sqrt(D)` nonzeros, held as a
    `tf.SparseTensor`. Columns are drawn in fixed groups that depend on D
    only, so the first k columns do not depend on `dim`.

    With `jit_compile=True` the products run as XLA-compiled functions built
    from a gather and a segment sum over the nonzeros (XLA compiles no
    `tf.sparse` op); `jit_compile=False` uses
    `tf.sparse.sparse_dense_matmul` (bench/RESULTS.md times both).

    Args:
        full_dim: int. D, the number of rows.
        dim: int. d, the number of columns.
        seed: int. Seed of the matrix. Defaults to `0`.
        jit_compile: bool. Use the XLA-compiled products. Defaults to `True`.

    Example:

    >>> proj = SparseProjection(full_dim=10_000, dim=50, seed=0)
    >>> proj.matrix.values.shape[0] < 10_000 * 50 // 50
    True
    """

    name = "sparse"

    def __init__(
        self, full_dim: int, dim: int, seed: int = 0, jit_compile: bool = True
    ):
        super().__init__(full_dim, dim, seed)
        self.jit_compile = check_bool("jit_compile", jit_compile)
        self.density = 1.0 / math.sqrt(self.full_dim)
        rows, cols, values = self._draw()
        order = np.lexsort((cols, rows))  # canonical row-major order
        self.matrix = tf.SparseTensor(
            indices=np.stack([rows[order], cols[order]], axis=1),
            values=tf.constant(values[order], tf.float32),
            dense_shape=[self.full_dim, self.dim],
        )
        if jit_compile:  # int32 coordinates for gather / segment sums
            self._rows = tf.constant(rows[order], tf.int32)
            self._cols = tf.constant(cols[order], tf.int32)

    def _gaps(self, count: int, width: int, *stream: int) -> np.ndarray:
        """Geometric(density) gaps (failures before a success), (count, width)."""
        u = tf.random.stateless_uniform(
            [count, width], derive_seed(self.seed, *stream), dtype=tf.float64
        )
        if self.density >= 1.0:
            return np.zeros([count, width], np.int64)
        # Inverse CDF of the geometric law; 1 - u lies in (0, 1].
        return np.floor(np.log1p(-u.numpy()) / math.log1p(-self.density)).astype(
            np.int64
        )

    def _column_rows(self, columns: int, *stream: int) -> list[np.ndarray]:
        """Rows of the nonzeros of `columns` fresh columns of one stream."""
        mean = self.full_dim * self.density
        width = int(mean + 6 * math.sqrt(mean) + 8)
        pos = np.cumsum(self._gaps(columns, width, *stream, 0) + 1, axis=1) - 1
        out = []
        for j in range(columns):
            p = pos[j]
            extra = 1
            while p[-1] < self.full_dim:  # rare: more gaps are needed
                more = self._gaps(1, width, *stream, extra, j)[0]
                p = np.concatenate([p, p[-1] + np.cumsum(more + 1)])
                extra += 1
            out.append(p[p < self.full_dim])
        return out

    def _draw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean = self.full_dim * self.density
        group = max(1, CHUNK_ELEMENTS // int(mean + 6 * math.sqrt(mean) + 8))
        rows, cols = [], []
        for g in range(-(-self.dim // group)):
            first = g * group
            width = min(group, self.dim - first)
            col_rows = self._column_rows(group, 2, g)[:width]
            redraw = 0
            while any(len(r) == 0 for r in col_rows):
                redraw += 1
                fresh = self._column_rows(group, 3, g, redraw)
                col_rows = [f if len(r) == 0 else r for r, f in zip(col_rows, fresh)]
            for j, r in enumerate(col_rows):
                rows.append(r)
                cols.append(np.full(len(r), first + j, np.int64))
        rows = np.concatenate(rows)
        cols = np.concatenate(cols)
        counts = np.bincount(cols, minlength=self.dim)
        signs = tf.random.stateless_uniform(
            [len(rows)],
            derive_seed(self.seed, 4),
            minval=0,
            maxval=2,
            dtype=tf.int32,
        ).numpy()
        values = (2.0 * signs - 1.0) / np.sqrt(counts[cols])
        return rows, cols, values

    def call(self, v: tf.Tensor) -> tf.Tensor:
        if self.jit_compile:
            # XLA compiles no tf.sparse op, but a gather and a segment sum.
            products = self.matrix.values * tf.gather(v, self._cols)
            return tf.math.unsorted_segment_sum(products, self._rows, self.full_dim)
        return tf.sparse.sparse_dense_matmul(self.matrix, v[:, None])[:, 0]

    @property
    def supports_xla(self) -> bool:
        # XLA cannot compile tf.sparse ops.
        return self.jit_compile

    @property
    def memory_bytes(self) -> int:
        extra = (self._rows, self._cols) if self.jit_compile else ()
        return tensor_bytes(self.matrix, *extra)

    def get_config(self) -> dict:
        config = super().get_config()
        config["jit_compile"] = self.jit_compile
        return config
