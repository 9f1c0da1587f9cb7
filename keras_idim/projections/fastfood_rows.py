"""The transpose of a gradient nonzero in a few rows (an embedding's), for
`fastfood_ops.OpsBackend`.

A weight tensor read by a gather (a token embedding) gets a gradient that
is nonzero only in the rows that the batch read (`tf.IndexedSlices`, here
`pieces.SparseRows`). Its piece of `P^T (s * g)`, and SAID's dot product
`g_t . (P v)_t`, need only the blocks of P that hold those rows: each
gradient row is laid into the one or few blocks it falls in (a row of its
own each, zero elsewhere: a block's part is linear in its rows), and those
rows are transposed through their blocks, at most `k * spans` rows for k
gradient rows, instead of every block of the piece. The groups of the
product over pieces then skip the piece (a group that holds nothing else is
not made at all).

BERT-base's token embedding is 21% of its weights; a batch of 8 x 128
tokens reads at most 1,024 of its rows, in at most 2,048 of its 22,891
blocks (bench/RESULTS.md).
"""

from __future__ import annotations

import tensorflow as tf

from keras_idim.projections.pieces import SparseRows


def spans(width: int, length: int) -> int:
    """The most blocks of `length` rows that `width` consecutive rows can
    fall in."""
    return (width + length - 2) // length + 1


class RowsTransposed:
    """The products of `fastfood_ops.OpsBackend` over pieces given as
    `SparseRows` (a mixin: it reads the backend's `p`, `_transpose_blocks`,
    `_floats`, `_sums` and `_compiled`)."""

    #: Whether a piece given as rows is transposed through its rows' blocks
    #: only (`RegenBackend`, which draws its tensors a range at a time, takes
    #: such a piece whole).
    sparse_rows = True

    def _taken(self, pieces: list) -> tuple:
        """`(dense, sizes, taken)`: the pieces as float32 vectors, `None`
        where a piece is taken as rows (`taken`: its `(index, SparseRows,
        first row in P)`), and each piece's length. A piece is taken as
        rows where it has a static number of rows and they span at most
        half its blocks; else it is made whole (`SparseRows.dense`)."""
        dense, sizes, taken = [], [], []
        length = self.p.block_length
        for t, q in enumerate(pieces):
            if isinstance(q, SparseRows):
                k, m = q.values.shape[0], spans(q.width, length)
                few = k is not None and 2 * k * m <= q.size // length
                if self.sparse_rows and few:
                    taken.append((t, q, sum(sizes)))
                    dense.append(None)
                    sizes.append(q.size)
                    continue
                q = q.dense()
            dense.append(tf.cast(q, tf.float32))
            sizes.append(int(dense[-1].shape[0]))
        return dense, sizes, taken

    def _laid_rows(self, q: SparseRows, offset: int) -> tuple:
        """`(rows, blocks)`: the gradient rows of `q`, a piece whose first
        number is row `offset` of P, each laid into the blocks it falls in:
        `rows` `(k * spans, block_length)`, one row a (gradient row, block),
        zero where it does not fall; `blocks` each row's block (int32)."""
        length, (k, width) = self.p.block_length, q.values.shape
        m = spans(width, length)
        start = offset + tf.cast(q.indices, tf.int64) * width
        within = tf.cast(start % length, tf.int32)
        at = tf.range(m * length)[None, :] - within[:, None]
        inside = (at >= 0) & (at < width)
        at = tf.clip_by_value(at, 0, width - 1)
        rows = tf.where(inside, tf.gather(q.values, at, batch_dims=1), 0.0)
        # A block past the last holds no row of q: any block will do there.
        last = self.p.num_groups * self.p.group_rows - 1
        blocks = start[:, None] // length + tf.range(m, dtype=tf.int64)[None]
        blocks = tf.minimum(blocks, last)
        blocks = tf.reshape(tf.cast(blocks, tf.int32), [-1])
        return tf.reshape(rows, [k * m, length]), blocks

    def rows_group(self, rows, blocks, weight, x) -> tuple:
        """Rows' part of `P^T (s * g)` and each row's dot product with its
        rows of `P v`: as `said_group` for rows `rows` `(n, block_length)`
        each of the block `blocks` `(n,)` (its block's number over all the
        groups), weighted by `weight` `(n,)`, x the padded v."""
        a, length = self.p.arrays, self.p.block_length

        def at(t: tf.Tensor) -> tf.Tensor:
            return tf.gather(tf.reshape(t, [-1, length]), blocks)

        block_scale = a.block_scale
        if block_scale is not None:
            block_scale = tf.gather(tf.reshape(block_scale, [-1]), blocks)
        arrays = at(a.signs), at(a.gauss), at(a.permutation), at(a.row_scale)
        z = self._transpose_blocks(rows, *self._floats(*arrays, block_scale))
        return self._sums(z, weight, x)

    def _rows_transposed(self, taken: list, scales, x) -> tuple:
        """`(part, dots, pieces)`: the pieces taken as rows (`_taken`)
        transposed (see the module): their part of `P^T (s * g)` (s:
        `scales`, one a piece, or `None`), each row's dot product with its
        rows of `P v` (x: v padded), and each row's piece."""
        laid = [self._laid_rows(q, offset) for _, q, offset in taken]
        rows = tf.concat([r for r, _ in laid], 0)
        pieces = tf.concat(
            [tf.fill(tf.shape(b), t) for (t, *_), (_, b) in zip(taken, laid)], 0
        )
        if scales is None:
            weight = tf.ones(tf.shape(pieces))
        else:
            weight = tf.gather(scales, pieces)
        part, dots = self._compiled("rows_group", self.rows_group)(
            rows, tf.concat([b for _, b in laid], 0), weight, x
        )
        return part, dots, pieces
