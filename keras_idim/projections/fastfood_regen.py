"""A Fastfood P that holds only its permutations and scales: B and G (and
in version 3 S) drawn again from the seed inside each product
(`FastfoodProjection(..., regenerate=True)`).

P's signs B and Gaussians G are drawn range by range of blocks
(`FastfoodProjection._plan`), each range from its own streams, with
stateless ops: the same range, shape and seed give the same numbers in
any process. `draw_signs` and `draw_gauss` are those draws, made when P
is built (`fastfood._draw`) and again here. The permutations, slow to
draw (an argsort), are held. Version 3's S (float16, `scale_16` of a
gamma draw, `draw_chi2`) is drawn again too, holding only each block's
float32 normalisation: 2 bytes a weight held instead of 4, for a gamma
draw a range a product (the slowest of the draws); earlier versions'
float32 S is held. In a product the draws' seeds (`keys`) are read from
a small variable: from constants, TensorFlow's graph optimiser
(Grappler's constant folding) would draw them once when the graph is
optimised and keep the results in it, holding P again (in float64).

`RegenBackend` is the TensorFlow-ops backend (`fastfood_ops.OpsBackend`)
with its loops over groups of blocks given B and G (and S) as drawn
again: each product draws each range once, as its first group needs it,
cuts its groups out of it (zero rows for the padding, as stored) and
drops it after its last group; each range's draws wait for the group
before (control dependencies in a graph; in a transpose, for the group
`OpsBackend.in_flight` before), so that one range's are alive at a time
(two or three where groups straddle them). A range: about
`BUILD_CHUNK` numbers; version 1 draws every block in one range, so its
products draw B and G whole. The group functions are the stored P's,
with the draws passed in: the same ops on the same numbers.

The draws are never XLA-compiled: XLA draws other numbers from the same
seeds. So the backend has `supports_xla = False` (a train step with it is
not compiled as a whole), and only each group's transforms are compiled
(with `jit_compile`). The compiled kernel takes stored tensors: a P that
regenerates does not use it (an error where `kernel.ENV` asks for it).
"""

from __future__ import annotations

import tensorflow as tf

from keras_idim.projections import kernel
from keras_idim.projections.base import Projection, derive_seed
from keras_idim.projections.fastfood_ops import OpsBackend, segments


def keys(seed: int, stream: tuple[int, ...]) -> tf.Tensor:
    """The stateless ops' seeds of B, G and S for the range drawn from
    `stream`: int64, shape (3, 2), in that order."""
    return tf.stack([derive_seed(seed, kind, *stream) for kind in (5, 7, 8)])


def draw_chi2(key: tf.Tensor, rows: int, length: int) -> tf.Tensor:
    """`rows` draws of chi^2 with `length` degrees of freedom, float64,
    with `key` (`keys(...)[2]`): S_ii^2 times `length`."""
    return 2.0 * tf.random.stateless_gamma(
        [rows], key, alpha=length / 2.0, dtype=tf.float64
    )


def scale_16(chi2: tf.Tensor, length: int) -> tf.Tensor:
    """Version 3's S as stored: `sqrt(chi2 / length)` as float16."""
    return tf.cast(tf.sqrt(chi2 / length), tf.float16)


def draw_signs(key: tf.Tensor, shape: list) -> tf.Tensor:
    """B of the `shape[0]` blocks drawn with `key` (`keys(...)[0]`): +-1,
    int8."""
    uniform = tf.random.stateless_uniform(
        shape, key, minval=0, maxval=2, dtype=tf.int32
    )
    return tf.cast(uniform * 2 - 1, tf.int8)


def draw_gauss(key: tf.Tensor, version: int, shape: list) -> tf.Tensor:
    """G of the `shape[0]` blocks drawn with `key` (`keys(...)[1]`), float64
    (version 3: rounded to float16, as stored and normalised)."""
    gauss = tf.random.stateless_normal(shape, key, dtype=tf.float64)
    if version == 3:  # G stored as float16, normalised as stored
        gauss = tf.cast(tf.cast(gauss, tf.float16), tf.float64)
    return gauss


def _joined(parts: list) -> tf.Tensor:
    return parts[0] if len(parts) == 1 else tf.concat(parts, 0)


def regen_backend(projection) -> RegenBackend:
    """The backend of a P that regenerates B and G (and S); an error where
    `kernel.ENV` asks for the compiled kernel (under `auto`, TensorFlow
    ops)."""
    if kernel.mode() == "on":
        raise ValueError(
            f"{kernel.ENV}=1 asks for Fastfood's compiled kernel, which takes "
            "P's stored tensors: a FastfoodProjection with `regenerate=True` "
            "draws its signs and Gaussians in TensorFlow ops. Set "
            f"{kernel.ENV}=auto (or 0), or `regenerate=False`."
        )
    return RegenBackend(projection)


class RegenBackend(OpsBackend):
    """`OpsBackend` over B and G (and S) drawn again in each product (see the
    module).

    Args:
        projection: FastfoodProjection. With `regenerate=True`: its held
            tensors (`projection.arrays`: permutations, scales), its seed,
            version and plan of draws.
    """

    #: XLA would draw other numbers: a step with this P is not compiled.
    supports_xla = False
    #: B and G are drawn a range of blocks at a time, not a block.
    sparse_rows = False

    def __init__(self, projection):
        super().__init__(projection)
        p = projection
        self.draws = p._plan()
        sizes = [draw.stop - draw.first for draw in self.draws]
        #: For each group, `(range, first row in the range, first row in
        #: the group, rows)` of the blocks that it takes from each range.
        self.table = segments(sizes, p.group_rows, p.num_groups)
        #: The last group that reads each range.
        self.last = {i: c for c, parts in enumerate(self.table) for i, *_ in parts}
        with tf.init_scope():  # made eagerly, wherever the backend is made
            #: Each range's `keys`, `(ranges, 3, 2)` int64, read from a
            #: variable in each product, never from a constant: Grappler's
            #: constant folding would otherwise evaluate the draws once and
            #: keep them in the graph (P held again, in float64).
            self.keys = tf.Variable(
                tf.stack([keys(p.seed, draw.stream) for draw in self.draws]),
                trainable=False,
                name="fastfood_keys",
            )

    def _compiled(self, name: str, fn):
        # Each group's transforms, XLA-compiled with `jit_compile` (the
        # projection compiles nothing else: `supports_xla`).
        return Projection._maybe_compiled(self.p, name, fn)

    def draw(self, i: int) -> tuple:
        """Range i's B (int8) and G (as stored: float16 in version 3, else
        float32), `(blocks, block_length)` each, drawn as when P is built;
        in version 3 its S too (float16, zero past the last row)."""
        p = self.p
        first, stop, _ = self.draws[i]
        length = p.block_length
        shape = [stop - first, length]
        key = self.keys[i]  # a read of the variable: not folded
        signs = draw_signs(key[0], shape)
        gauss = draw_gauss(key[1], p.version, shape)
        if p.version != 3:
            return signs, tf.cast(gauss, tf.float32)
        kept = min(stop * length, p.full_dim) - first * length
        scale = scale_16(draw_chi2(key[2], kept, length), length)
        scale = tf.pad(scale, [[0, shape[0] * length - kept]])
        return signs, tf.cast(gauss, tf.float16), tf.reshape(scale, shape)

    def _drawn(self, after: list):
        """For one product: group c's B and G (and S) `(group_rows, block_length)`,
        cut from its ranges, each range drawn once (after `after` and the
        tensors `later` that its first group gives) and dropped after its
        last group; called on the groups in order."""
        p, held = self.p, {}

        def drawn(c: int, later=()) -> tuple:
            parts: list[list] = []
            for i, start, _, rows in self.table[c]:
                if i not in held:
                    with tf.control_dependencies([*after, *later]):
                        held[i] = self.draw(i)
                cut = [t[start : start + rows] for t in held[i]]
                parts = (
                    [[*a, b] for a, b in zip(parts, cut)]
                    if parts
                    else [[b] for b in cut]
                )
                if self.last[i] == c:
                    del held[i]
            padding = p.group_rows - sum(rows for *_, rows in self.table[c])
            if padding:  # blocks past the last: zero rows, as stored
                for a in parts:
                    a.append(tf.zeros([padding, p.block_length], a[0].dtype))
            return tuple(_joined(a) for a in parts)

        return drawn

    def forward(self, v: tf.Tensor) -> tf.Tensor:
        """`P v`, (D,), group after group; its gradient is `P^T g`
        (`transpose`), over B and G drawn again."""

        @tf.custom_gradient
        def forward(v):
            return self._forward(v), lambda upstream: self.transpose(upstream)

        return forward(v)

    def _forward(self, v: tf.Tensor) -> tf.Tensor:
        p, x = self.p, self._padded(v)
        fn = self._compiled("forward_group", self.forward_group)
        drawn, out = self._drawn([x]), []
        for c in range(p.num_groups):
            with tf.control_dependencies(out[-1:]):
                out.append(fn(x, tf.constant(c, tf.int32), *drawn(c)))
        return _joined(out)[: p.full_dim]

    def transpose_padded(self, g: tf.Tensor) -> tf.Tensor:
        """`P^T g` for g padded to whole groups, group after group."""
        p = self.p
        g = tf.reshape(g, [p.num_groups, self.group_size])
        fn = self._compiled("transpose_group", self.transpose_group)
        drawn, total = self._drawn([]), None
        for c in range(p.num_groups):
            with tf.control_dependencies([] if total is None else [total]):
                part = fn(g[c], tf.constant(c, tf.int32), *drawn(c, [g]))
                total = part if total is None else total + part
        return total[: p.dim]
