"""Fastfood's products in TensorFlow ops: the path of GPUs, and of CPUs
without the compiled kernel (`keras_idim.projections.kernel`).

`OpsBackend` is one of a `FastfoodProjection`'s two backends (the other,
`fastfood_kernel_backend.KernelBackend`, has the same methods; a projection
chooses one when it is made). It computes the products group by group (a
group: `group_rows` stacked blocks, about `PASS_CHUNK` rows). The products
over the pieces of a (D,) vector (one piece per weight tensor: a subspace
model's gradients and weights) read and write the pieces where they are,
one group at a time, each group's ops made to wait for the last group's
(control dependencies), so that no (D,) temporary is made:

- `transpose_pieces` (with `v`, SAID's dots too): each group's rows are cut
  from the pieces (and scaled: SAID's lambdas), transposed, and summed
  into the (d,) result; SAID's dot products of the pieces with `P v` take
  the group's rows of `P v` made again beside (so that `P v` is not
  stored between steps);
- `affine_pieces`: `base + s * P v` one piece at a time, each group of
  `P v` made when a piece first needs it and dropped after the last.

The workspace is a few groups' rows. With `jit_compile`, each group's
transform is one XLA-compiled function (compiled once: every group has the
same shapes).
"""

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


#: At most this many groups of blocks (`group_blocks`).
MAX_GROUPS = 64


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


def segments(sizes: list[int], group_size: int, num_groups: int) -> list[list]:
    """Where consecutive pieces of `sizes` rows fall in groups of
    `group_size` rows: for each group c, its `(piece, start in the piece,
    start in the group, rows)`, in row order (an empty piece has none)."""
    out: list[list] = [[] for _ in range(num_groups)]
    row = 0
    for t, n in enumerate(sizes):
        start = 0
        while start < n:
            c, offset = divmod(row + start, group_size)
            rows = min(n - start, group_size - offset)
            out[c].append((t, start, offset, rows))
            start += rows
        row += n
    return out


class OpsBackend:
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

    # -- one group ------------------------------------------------------

    def _padded(self, v: tf.Tensor) -> tf.Tensor:
        return tf.pad(v, [[0, self.p.block_length - self.p.dim]])[None, :]

    def _scale(self, c, drawn: tuple = ()) -> tf.Tensor:
        """The row scales of group c, float32, flattened: version 3's
        float16 S (stored, or drawn again: `drawn[2]`) times its blocks'
        float32 normalisation (as the kernel makes them), or the stored
        float32 scales."""
        p, a = self.p, self.p.arrays
        if a.block_scale is None:
            return tf.reshape(a.row_scale, [p.num_groups, self.group_size])[c]
        if len(drawn) > 2:
            s = tf.reshape(drawn[2], [p.group_rows, -1])
        else:
            s = tf.reshape(a.row_scale, [p.num_groups, p.group_rows, -1])[c]
        return tf.reshape(tf.cast(s, tf.float32) * a.block_scale[c][:, None], [-1])

    def _permutation(self, c) -> tf.Tensor:
        """Group c's permutation as indices into the group, flattened."""
        p = self.p
        starts = tf.range(p.group_rows, dtype=tf.int32)[:, None] * p.block_length
        return tf.reshape(tf.cast(p.arrays.permutation[c], tf.int32) + starts, [-1])

    def _signs_gauss(self, c, drawn: tuple) -> tuple:
        """Group c's signs and Gaussians: `drawn` (the two, drawn again:
        `fastfood_regen`), or where `drawn` is empty the stored ones."""
        if drawn:
            return drawn[:2]
        return self.p.arrays.signs[c], self.p.arrays.gauss[c]

    def forward_group(self, x: tf.Tensor, c, *drawn) -> tf.Tensor:
        """Group c's rows of `P v` (`(group_size,)`), x the padded v
        `(1, block_length)`: B, H, Pi, G, H and S on its blocks (B and G
        `drawn`, else stored)."""
        rows, length = self.p.group_rows, self.p.block_length
        signs, gauss = self._signs_gauss(c, drawn)
        y = fwht(x * tf.cast(signs, tf.float32))
        y = tf.gather(tf.reshape(y, [-1]), self._permutation(c))
        y = fwht(tf.reshape(y, [rows, length]) * tf.cast(gauss, tf.float32))
        return tf.reshape(y, [-1]) * self._scale(c, drawn)

    def transpose_group(self, g: tf.Tensor, c, *drawn) -> tf.Tensor:
        """Group c's part of `P^T g`, `(block_length,)`, for its rows g
        `(group_size,)`: P^T = B H Pi^T G H S (H symmetric, B G S
        diagonal), summed over the blocks (B and G `drawn`, else stored)."""
        rows, length = self.p.group_rows, self.p.block_length
        signs, gauss = self._signs_gauss(c, drawn)
        y = fwht(tf.reshape(g * self._scale(c, drawn), [rows, length]))
        y = tf.reshape(y * tf.cast(gauss, tf.float32), [-1])
        # Pi^T: the gather y[j] = x[perm[j]] transposed scatters back.
        y = tf.scatter_nd(self._permutation(c)[:, None], y, [self.group_size])
        y = fwht(tf.reshape(y, [rows, length])) * tf.cast(signs, tf.float32)
        return tf.reduce_sum(y, axis=0)

    def _said_group(self, g, scale, x, c, *drawn) -> tuple:
        """Group c's part of `P^T (scale * g)`, and `g * (P v)` on its rows
        (SAID's two gradients, before the sums over the pieces)."""
        part = self.transpose_group(g * scale, c, *drawn)
        return part, g * self.forward_group(x, c, *drawn)

    def _drawn(self, after: list):
        """For one product, called on its groups in order: a function of
        a group c (and of tensors that c's draws wait for) giving what
        c's group functions take besides c. Here nothing (they read the
        stored tensors); `fastfood_regen` draws B and G, after `after`."""
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

        One group at a time (see the module): a group's rows are cut from
        the pieces only once the group before is done.
        """
        p = self.p
        pieces = [tf.cast(q, tf.float32) for q in pieces]
        sizes = [int(q.shape[0]) for q in pieces]
        if scales is not None:
            scales = tf.unstack(tf.convert_to_tensor(scales, tf.float32), len(sizes))
        x = None if v is None else self._padded(v)
        table = segments(sizes, self.group_size, p.num_groups)
        total = tf.zeros([p.block_length], tf.float32)
        dots: list[list] = [[] for _ in sizes]
        done: list = []
        drawn = self._drawn([] if x is None else [x])
        for c, parts in enumerate(table):
            with tf.control_dependencies(done):
                g, scale = self._gather(pieces, scales, parts)
                index = tf.constant(c, tf.int32)
                if x is None:
                    if scale is not None:
                        g = g * scale
                    part = self._compiled("transpose_group", self.transpose_group)(
                        g, index, *drawn(c, [g])
                    )
                else:
                    if scale is None:
                        scale = tf.ones([self.group_size], tf.float32)
                    part, prod = self._compiled("said_group", self._said_group)(
                        g, scale, x, index, *drawn(c, [g])
                    )
                    for t, _, offset, rows in parts:
                        dots[t].append(tf.reduce_sum(prod[offset : offset + rows]))
                total = total + part
            done = [total]
        if x is None:
            return total[: p.dim], None
        zero = tf.zeros([], tf.float32)
        return total[: p.dim], tf.stack([tf.add_n(d) if d else zero for d in dots])

    def _gather(self, pieces: list, scales, parts: list) -> tuple:
        """A group's rows cut from the pieces, zero-padded to the group's
        size, and with `scales` each row's scale (else `None`)."""
        rows = [pieces[t][start : start + n] for t, start, _, n in parts]
        used = sum(n for *_, n in parts)
        pad = []
        if used < self.group_size:
            pad = [tf.zeros([self.group_size - used], tf.float32)]
        g = tf.concat(rows + pad, axis=0) if len(rows + pad) > 1 else (rows + pad)[0]
        if scales is None:
            return g, None
        scale = [tf.fill([n], scales[t]) for t, _, _, n in parts]
        return g, tf.concat(scale + pad, axis=0)

    def affine_pieces(self, v: tf.Tensor, base: tf.Tensor, sizes: list, scales=None):
        """Yields `base_t + s_t * (P v)_t` for consecutive pieces of `sizes`
        rows, one at a time (s_t = `scales[t]`, or 1; no base: `None`):
        each piece's ops are made when it is asked for (so a caller's
        control dependencies order them), each group of `P v` when a piece
        first needs it, and a group is dropped after the last piece that
        reads it."""
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
        for t, n in enumerate(sizes):
            parts = []
            for c, offset, rows in by_piece[t]:
                if c not in made:
                    made[c] = self._compiled("forward_group", self.forward_group)(
                        x, tf.constant(c, tf.int32), *drawn(c, previous)
                    )
                    previous = [made[c]]
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
