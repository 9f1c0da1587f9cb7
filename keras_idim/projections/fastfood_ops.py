"""Fastfood's products in TensorFlow ops: the path of GPUs, and of CPUs
without the compiled kernel (`keras_idim.projections.kernel`).

`OpsBackend` is one of a `FastfoodProjection`'s two backends (the other,
`fastfood_kernel_backend.KernelBackend`, has the same methods; a projection
chooses one when it is made). It computes the products group by group (a
group: `group_rows` stacked blocks, about `PASS_CHUNK` rows). The products
over the pieces of a (D,) vector (one piece per weight tensor: a subspace
model's gradients and weights) read and write the pieces where they are,
a group or two at a time, each group's ops made to wait for an earlier
group's (control dependencies), so that no (D,) temporary is made:

- `transpose_pieces` (with `v`, SAID's dots too): each group's rows are cut
  from the pieces (and scaled by their lambdas as they are cut, or with
  `v` each block's part after its transform), transposed, and summed
  into the (d,) result; SAID's dot products of the pieces with `P v` are
  read off each block's part of the transpose, `g_b . P_b v = (P_b^T g_b)
  . v`, so that neither is `P v` stored between steps nor made again
  (`said_group`; a block that two pieces share is cut in two rows:
  `said_layout`); a piece given as its nonzero rows (an embedding's
  gradient: `pieces.SparseRows`) goes through its rows' blocks only
  (`fastfood_rows`), and the groups skip it;
- `affine_pieces`: `base + s * P v` one piece at a time, each group of
  `P v` made when a piece first needs it and dropped after the last.

Two groups are in flight where a group is at most `IN_FLIGHT_ROWS` rows
(`OpsBackend.in_flight`): each group waits for the group two before it,
and `affine_pieces` makes the next group with the one that a piece needs.
A group leaves part of a CPU's cores idle, which the next one fills.

The workspace is a few groups' rows. With `jit_compile`, each group is one
XLA-compiled function (compiled once: every group has the same shapes), or
on a CPU, for groups of `fastfood_split.SPLIT_ROWS`, its steps between its
transforms, the transforms batched products outside XLA (bench/RESULTS.md).
"""

from __future__ import annotations

import tensorflow as tf

from keras_idim.projections.fastfood_layout import (  # noqa: F401 (re-exported)
    said_layout,
    segments,
    without_taken,
)
from keras_idim.projections.fastfood_rows import RowsTransposed
from keras_idim.projections.fastfood_split import SplitGroups, splits
from keras_idim.projections.hadamard import (  # noqa: F401 (re-exported)
    HADAMARD_FACTOR_BITS,
    fwht,
    hadamard_matrix,
)

#: At most this many groups of blocks (`group_blocks`).
MAX_GROUPS = 64

#: Two groups in flight (`OpsBackend.in_flight`) where a group is at most
#: this many rows (its workspace then a few tens of MB); one above.
IN_FLIGHT_ROWS = 2**21


def group_blocks(blocks: int, length: int, chunk: int) -> int:
    """Blocks a group, of `blocks` blocks of `length` rows: about `chunk`
    rows a group, but at most `MAX_GROUPS` groups (larger past that).

    A product over pieces is made group by group in the train step's graph
    (some hundreds of ops a group, about 2 MB of graph measured at 10^9
    weights, held as long as the step is): at 10^9 weights, a thousand
    groups of 2^20 rows held more than 64 larger groups' workspaces."""
    rows = min(blocks, max(1, chunk // length))
    if -(-blocks // rows) > MAX_GROUPS:
        rows = -(-blocks // MAX_GROUPS)
    return rows


class OpsBackend(SplitGroups, RowsTransposed):
    """A `FastfoodProjection`'s products in TensorFlow ops (see the module).

    Args:
        projection: FastfoodProjection. Its stored tensors
            (`projection.arrays`: signs, permutations, Gaussians, scales),
            read where they are.
    """

    #: The products run in TensorFlow ops, not in the compiled kernel.
    uses_kernel = False
    #: XLA can compile every op here.
    supports_xla = True

    def __init__(self, projection):
        self.p = projection
        self.group_size = projection.group_rows * projection.block_length
        #: How many groups a product runs at once (see the module): each
        #: group's ops wait for the group `in_flight` before.
        self.in_flight = 2 if self.group_size <= IN_FLIGHT_ROWS else 1
        #: Whether the loops over groups call `fastfood_split`'s functions.
        self.split = splits(projection, self.group_size)

    # -- one group ------------------------------------------------------

    def _padded(self, v: tf.Tensor) -> tf.Tensor:
        return tf.pad(v, [[0, self.p.block_length - self.p.dim]])[None, :]

    def _blocks(self, c, drawn: tuple) -> tuple:
        """Group c's blocks' tensors, `(group_rows, block_length)` each:
        signs and Gaussians as float32 (`drawn`: drawn again by
        `fastfood_regen`, else stored), the permutations (int32, within
        each block) and the row scales as float32: version 3's float16 S
        (stored, or drawn: `drawn[2]`) times its blocks' float32
        normalisation (as the kernel makes them), or the stored scales."""
        p, a = self.p, self.p.arrays
        signs, gauss = drawn[:2] if drawn else (a.signs[c], a.gauss[c])
        if len(drawn) > 2:
            scale = drawn[2]
        else:
            scale = tf.reshape(a.row_scale, [p.num_groups, p.group_rows, -1])[c]
        block_scale = None if a.block_scale is None else a.block_scale[c]
        return self._floats(signs, gauss, a.permutation[c], scale, block_scale)

    @staticmethod
    def _floats(signs, gauss, perm, scale, block_scale) -> tuple:
        """Blocks' tensors as `_blocks` gives them, from their stored
        dtypes: the row scales times their blocks' `block_scale` (or none)."""
        scale = tf.cast(scale, tf.float32)
        if block_scale is not None:
            scale = scale * block_scale[:, None]
        perm = tf.cast(perm, tf.int32)
        return tf.cast(signs, tf.float32), tf.cast(gauss, tf.float32), perm, scale

    @staticmethod
    def _flat(perm: tf.Tensor) -> tf.Tensor:
        """Blocks' permutations `(n, length)` as indices into the n blocks'
        rows, flattened."""
        n, length = perm.shape
        return tf.reshape(perm + tf.range(n, dtype=tf.int32)[:, None] * length, [-1])

    def _forward_blocks(self, x, signs, gauss, perm, scale) -> tf.Tensor:
        """Each block's rows of `P v`, `(n, block_length)`, x the padded v
        `(1, block_length)`: S H G Pi H B x (H the Hadamard transform, B G
        S diagonal) on the blocks' tensors (`_blocks`, or some of their
        rows)."""
        y = tf.gather(fwht(x * signs), perm, batch_dims=1)
        return fwht(y * gauss) * scale

    def _transpose_blocks(self, g, signs, gauss, perm, scale) -> tf.Tensor:
        """Each block's part of `P^T g`, `(n, block_length)`, for its rows
        g `(n, block_length)`: B H Pi^T G H S g (H symmetric)."""
        n, length = g.shape
        y = tf.reshape(fwht(g * scale) * gauss, [-1])
        # Pi^T: the gather y[j] = x[perm[j]] transposed scatters back.
        y = tf.scatter_nd(self._flat(perm)[:, None], y, [n * length])
        return fwht(tf.reshape(y, [n, length])) * signs

    def forward_group(self, x: tf.Tensor, c, *drawn) -> tf.Tensor:
        """Group c's rows of `P v` (`(group_size,)`), x the padded v
        `(1, block_length)` (B, G and S `drawn`, else stored)."""
        return tf.reshape(self._forward_blocks(x, *self._blocks(c, drawn)), [-1])

    def transpose_group(self, g: tf.Tensor, c, *drawn) -> tf.Tensor:
        """Group c's part of `P^T g`, `(block_length,)`, for its rows g
        `(group_size,)`, summed over its blocks (B, G and S `drawn`, else
        stored)."""
        g = tf.reshape(g, [self.p.group_rows, self.p.block_length])
        return tf.reduce_sum(self._transpose_blocks(g, *self._blocks(c, drawn)), 0)

    def said_group(self, g, weight, x, c, extra, extra_weight, where, *drawn):
        """Group c's part of SAID's two gradients: `P^T (s * g)` (s each
        row's piece's scale), and each block's (and extra row's) dot
        product with its rows of `P v`, read off each block's part of
        `P^T g` as `(P_b^T g_b) . v` (`= g_b . P_b v`): no forward product.

        A block's part is linear in its rows, so a block shared by pieces
        (a piece ends inside it) is cut: g `(group_size,)` holds in each
        block only the rows of its first piece (zero elsewhere), weighted
        by `weight` `(group_rows,)`, that piece's scale; each other piece's
        rows in a shared block are a row of `extra` `(E, block_length)` of
        their own, zero elsewhere, transposed through the block `where`
        `(E,)` and weighted by `extra_weight` `(E,)`."""
        length = self.p.block_length
        blocks = self._blocks(c, drawn)
        # (Products and sums, not matrix-vector products: XLA fuses them
        # with the transform, 1.6x faster a group, measured.)
        z = self._transpose_blocks(tf.reshape(g, [-1, length]), *blocks)
        part, dots = self._sums(z, weight, x)
        if extra.shape[0]:
            z = self._transpose_blocks(extra, *[tf.gather(b, where) for b in blocks])
            more, extra_dots = self._sums(z, extra_weight, x)
            part, dots = part + more, tf.concat([dots, extra_dots], 0)
        return part, dots

    @staticmethod
    def _sums(z: tf.Tensor, weight: tf.Tensor, x: tf.Tensor) -> tuple:
        """Blocks' parts of a transpose z `(n, block_length)` summed,
        weighted by `weight` `(n,)`, and each one's dot product with x."""
        return tf.reduce_sum(z * weight[:, None], 0), tf.reduce_sum(z * x, 1)

    def _drawn(self, after: list):
        """For one product, called on its groups in order: a function of
        a group c (and of tensors that c's draws wait for) giving what
        c's group functions take besides c. Here nothing (they read the
        stored tensors); `fastfood_regen` draws B, G (and S), after `after`."""
        return lambda c, later=(): ()

    def _compiled(self, name: str, fn):
        return self.p._maybe_compiled(name, fn)

    # -- whole vectors ----------------------------------------------------

    def forward(self, v: tf.Tensor) -> tf.Tensor:
        """`P v`, (D,), over the groups in a loop (one output tensor)."""
        p, x = self.p, self._padded(v)
        if p.num_groups == 1:
            out = self.forward_group(x, 0)
        else:
            out = tf.map_fn(
                lambda c: self.forward_group(x, c),
                tf.range(p.num_groups),
                fn_output_signature=tf.TensorSpec([self.group_size], tf.float32),
                parallel_iterations=1,
            )
        return tf.reshape(out, [-1])[: p.full_dim]

    def transpose(self, g: tf.Tensor) -> tf.Tensor:
        """`P^T g` for g of shape (D,), padded to whole groups."""
        return self.transpose_padded(tf.pad(g, [[0, self.p._padding]]))

    def transpose_padded(self, g: tf.Tensor) -> tf.Tensor:
        """`P^T g` for g padded to whole groups, over the groups in a loop."""
        p = self.p
        g = tf.reshape(g, [p.num_groups, self.group_size])
        if p.num_groups == 1:
            total = self.transpose_group(g[0], 0)
        else:
            total = tf.foldl(
                lambda acc, c: acc + self.transpose_group(g[c], c),
                tf.range(p.num_groups),
                initializer=tf.zeros([p.block_length], tf.float32),
                parallel_iterations=1,
            )
        return total[: p.dim]

    # -- pieces, group by group --------------------------------------------

    def transpose_pieces(self, pieces: list, scales=None, v=None) -> tuple:
        """`(P^T (s * g), dots)` for g in consecutive 1-D `pieces`, s
        `scales[t]` on piece t (or 1), and with `v` the dot product of
        each piece with its rows of `P v` (else `dots` is `None`).

        Group by group (see the module): a group's rows are cut from the
        pieces only once the group `in_flight` before is done. A piece
        given as `SparseRows` is transposed through its rows' blocks only
        (`fastfood_rows`), after the groups.
        """
        p = self.p
        pieces, sizes, taken = self._taken(pieces)
        table = without_taken(segments(sizes, self.group_size, p.num_groups), pieces)
        if v is not None:
            return self._said_pieces(pieces, scales, self._padded(v), table, taken)
        unstacked = None  # each piece's scale, for the groups
        if scales is not None:
            scales = tf.convert_to_tensor(scales, tf.float32)
            unstacked = tf.unstack(scales, len(sizes))
        total = tf.zeros([p.block_length], tf.float32)
        done: list = [[]] * self.in_flight  # what each next group waits for
        drawn = self._drawn([])
        for c, parts in enumerate(table):
            if not parts:  # only rows of pieces taken as rows
                continue
            with tf.control_dependencies(done.pop(0)):
                g, scale = self._gather(pieces, unstacked, parts)
                if scale is not None:
                    g = g * scale
                part = self._group("transpose_group")(
                    g, tf.constant(c, tf.int32), *drawn(c, [g])
                )
                total = total + part
            done.append([total])
        if taken:
            with tf.control_dependencies(done.pop(0)):
                x = tf.zeros([1, p.block_length], tf.float32)
                total = total + self._rows_transposed(taken, scales, x)[0]
        return total[: p.dim], None

    def _said_pieces(self, pieces: list, scales, x, table: list, taken: list):
        """`transpose_pieces` with `v` (x: v padded): group by group,
        `said_group` on each group's rows laid out by `said_layout`."""
        p, length, n = self.p, self.p.block_length, len(pieces)
        layouts = [said_layout(q, length, p.group_rows, n) for q in table]
        width = max(len(extra) for _, _, extra in layouts)
        if scales is None:
            scales = tf.ones([n], tf.float32)
        # Each piece's scale, and 0 for blocks and extra rows of no piece.
        scales = tf.concat([tf.convert_to_tensor(scales, tf.float32), [0.0]], 0)
        total = tf.zeros([length], tf.float32)
        dots = tf.zeros([n + 1], tf.float32)
        done: list = [[]] * self.in_flight  # as in `transpose_pieces`
        drawn = self._drawn([x])
        for c, (kept, owner, extra) in enumerate(layouts):
            if not kept and not extra:  # only rows of pieces taken as rows
                continue
            with tf.control_dependencies(done.pop(0)):
                g = self._laid(pieces, kept, self.group_size)
                rows = [
                    self._laid(pieces, [(t, a, lo, k)], length)
                    for t, a, _, lo, k in extra
                ]
                rows += [tf.zeros([length], tf.float32)] * (width - len(extra))
                ids = owner + [t for t, *_ in extra] + [n] * (width - len(extra))
                part, prods = self._group("said_group")(
                    g,
                    tf.gather(scales, tf.constant(owner, tf.int32)),
                    x,
                    tf.constant(c, tf.int32),
                    tf.stack(rows) if rows else tf.zeros([0, length], tf.float32),
                    tf.gather(scales, tf.constant(ids[len(owner) :], tf.int32)),
                    tf.constant(
                        [b for _, _, b, *_ in extra] + [0] * (width - len(extra)),
                        tf.int32,
                    ),
                    *drawn(c, [g]),
                )
                total = total + part
                dots = dots + tf.math.unsorted_segment_sum(prods, ids, n + 1)
            done.append([total, dots])
        if taken:
            with tf.control_dependencies(done.pop(0)):
                part, prods, ids = self._rows_transposed(taken, scales, x)
                total = total + part
                dots = dots + tf.math.unsorted_segment_sum(prods, ids, n + 1)
        return total[: p.dim], dots[:n]

    @staticmethod
    def _laid(pieces: list, parts: list, size: int) -> tf.Tensor:
        """A (size,) vector of the pieces' rows `(piece, start, offset,
        rows)` at their offsets, in order, zero elsewhere."""
        out, at = [], 0
        for t, start, offset, rows in parts:
            if offset > at:
                out.append(tf.zeros([offset - at], tf.float32))
            out.append(pieces[t][start : start + rows])
            at = offset + rows
        if at < size:
            out.append(tf.zeros([size - at], tf.float32))
        return tf.concat(out, 0) if len(out) > 1 else out[0]

    def _gather(self, pieces: list, scales, parts: list) -> tuple:
        """A group's rows cut from the pieces, zero-padded to the group's
        size, and with `scales` each row's scale (else `None`)."""
        g = self._laid(pieces, parts, self.group_size)
        if scales is None:
            return g, None
        # Each part's scale, laid out as its rows are.
        fills = [tf.fill([n], scales[t]) for t, _, _, n in parts]
        at = [(i, 0, offset, n) for i, (_, _, offset, n) in enumerate(parts)]
        return g, self._laid(fills, at, self.group_size)

    def affine_pieces(self, v: tf.Tensor, base: tf.Tensor, sizes: list, scales=None):
        """Yields `base_t + s_t * (P v)_t` for consecutive pieces of `sizes`
        rows, one at a time (s_t = `scales[t]`, or 1; no base: `None`):
        each piece's ops are made when it is asked for (so a caller's
        control dependencies order them), each group of `P v` when a piece
        first needs it (with the `in_flight - 1` groups after it), and a
        group is dropped after the last piece that reads it."""
        p, x = self.p, self._padded(v)
        if scales is not None:
            scales = tf.unstack(tf.convert_to_tensor(scales, tf.float32), len(sizes))
        table = segments(sizes, self.group_size, p.num_groups)
        by_piece: list[list] = [[] for _ in sizes]
        last_reader = {}
        for c, parts in enumerate(table):
            for t, _, offset, n in parts:
                by_piece[t].append((c, offset, n))
                last_reader[c] = t
        made: dict = {}
        row = 0
        drawn, previous = self._drawn([x]), []
        ahead = 0  # the groups made so far
        for t, n in enumerate(sizes):
            parts = []
            for c, offset, rows in by_piece[t]:
                while ahead < min(c + self.in_flight, p.num_groups):
                    made[ahead] = self._group("forward_group")(
                        x, tf.constant(ahead, tf.int32), *drawn(ahead, previous)
                    )
                    previous, ahead = [made[ahead]], ahead + 1
                parts.append(made[c][offset : offset + rows])
                if last_reader[c] == t:
                    del made[c]
            if not parts:
                u = tf.zeros([0], tf.float32)
            else:
                u = tf.concat(parts, axis=0) if len(parts) > 1 else parts[0]
            if scales is not None:
                u = scales[t] * u
            yield u if base is None else base[row : row + n] + u
            row += n
