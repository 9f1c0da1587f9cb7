"""Fastfood's group functions split around their transforms, for CPUs.

`fastfood_ops.OpsBackend` makes each group of a product over pieces in one
XLA-compiled function. On a CPU (no GPU visible, `jit_compile` on, groups
of `SPLIT_ROWS`: the backend's `split`), its loops over groups call the
functions here instead: each group's Walsh-Hadamard transforms run as
TensorFlow's batched matrix products (`hadamard.fwht_products`, oneDNN on
x86 CPUs), outside XLA, and the steps between them (the diagonal
products, the permutation, the sums) stay XLA-compiled, one function a
step, every group's the same. XLA's own
transforms took about twice as long on a CPU (bench/RESULTS.md). On a GPU,
and for smaller or larger groups, the whole group stays one XLA function.

The functions compute what `OpsBackend.forward_group`, `transpose_group`
and `said_group` compute, from the same tensors, with the transforms'
sums in another order (the same numbers to rounding).
"""

from __future__ import annotations

import tensorflow as tf

from keras_idim.projections.hadamard import fwht_products

#: Groups of this many rows at least, and at most, are split (as measured:
#: BERT-base's groups of 1.7M rows gained; fc-mnist's one group of 200K
#: rows took 1.08 to 1.10 times as long a step split; the tensors between
#: the steps of larger groups, at 10^9 weights, were not measured).
SPLIT_ROWS = (2**20, 2**21)


def splits(projection, group_size: int) -> bool:
    """Whether a projection's loops over groups of `group_size` rows call
    the functions here: `jit_compile` on, no GPU visible, `SPLIT_ROWS`."""
    low, high = SPLIT_ROWS
    return (
        bool(projection.jit_compile)
        and low <= group_size <= high
        and not tf.config.list_physical_devices("GPU")
    )


class SplitGroups:
    """The split group functions of `fastfood_ops.OpsBackend` (a mixin:
    it reads the backend's `p`, `split`, `_blocks`, `_flat`, `_sums` and
    `_compiled`)."""

    def _group(self, name: str):
        """Group c's function `name` (`forward_group`, `transpose_group`
        or `said_group`) as the loops over groups call it: split here, or
        the backend's own, XLA-compiled whole."""
        if self.split:
            return getattr(self, "split_" + name)
        return self._compiled(name, getattr(self, name))

    # -- the forward: B, then H, then G Pi, then H, then S --------------

    def _signed(self, x, c, *drawn):
        return x * self._blocks(c, drawn)[0]

    def _permuted(self, y, c, *drawn):
        _, gauss, perm, _ = self._blocks(c, drawn)
        return tf.gather(y, perm, batch_dims=1) * gauss

    def _scaled(self, y, c, *drawn):
        return tf.reshape(y * self._blocks(c, drawn)[3], [-1])

    def split_forward_group(self, x: tf.Tensor, c, *drawn) -> tf.Tensor:
        """`forward_group`, its transforms outside XLA."""
        step = self._compiled
        y = fwht_products(step("signed", self._signed)(x, c, *drawn))
        y = fwht_products(step("permuted", self._permuted)(y, c, *drawn))
        return step("scaled", self._scaled)(y, c, *drawn)

    # -- the transpose: S, then H, then Pi^T G, then H, then B ----------

    def _rows(self, c, drawn, where) -> tuple:
        """Group c's blocks' tensors (`_blocks`), or with `where` those of
        its blocks `where` (SAID's extra rows)."""
        blocks = self._blocks(c, drawn)
        return blocks if where is None else tuple(tf.gather(b, where) for b in blocks)

    def _rows_scaled(self, g, c, where, *drawn):
        return tf.reshape(g, [-1, self.p.block_length]) * self._rows(c, drawn, where)[3]

    def _scattered(self, t, c, where, *drawn):
        _, gauss, perm, _ = self._rows(c, drawn, where)
        n, length = t.shape
        # Pi^T: the gather y[j] = x[perm[j]] transposed scatters back.
        y = tf.scatter_nd(
            self._flat(perm)[:, None], tf.reshape(t * gauss, [-1]), [n * length]
        )
        return tf.reshape(y, [n, length])

    def _summed(self, w, c, where, weight, x, *drawn):
        z = w * self._rows(c, drawn, where)[0]
        if weight is None:
            return tf.reduce_sum(z, 0)
        return self._sums(z, weight, x)

    def _split_transpose(self, g, c, where, drawn, weight=None, x=None):
        """`z = B H Pi^T G H S g` of rows g of group c (or of its blocks
        `where`), summed over the rows (weighted by `weight`, and with x
        each row's dot product with x)."""
        step = self._compiled
        t = fwht_products(step("rows_scaled", self._rows_scaled)(g, c, where, *drawn))
        t = fwht_products(step("scattered", self._scattered)(t, c, where, *drawn))
        return step("summed", self._summed)(t, c, where, weight, x, *drawn)

    def split_transpose_group(self, g: tf.Tensor, c, *drawn) -> tf.Tensor:
        """`transpose_group`, its transforms outside XLA."""
        return self._split_transpose(g, c, None, drawn)

    def split_said_group(self, g, weight, x, c, extra, extra_weight, where, *drawn):
        """`said_group`, its transforms outside XLA (the extra rows' too)."""
        part, dots = self._split_transpose(g, c, None, drawn, weight, x)
        if extra.shape[0]:
            more, extra_dots = self._split_transpose(
                extra, c, where, drawn, extra_weight, x
            )
            part, dots = part + more, tf.concat([dots, extra_dots], 0)
        return part, dots
