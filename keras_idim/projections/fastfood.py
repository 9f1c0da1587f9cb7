"""Fastfood projection (Le, Sarlos, Smola, ICML 2013).

The projection is split over modules by what each part does:

- here: `FastfoodProjection`, P's shape (blocks and groups of blocks), the
  drawing of its random tensors from the seed (versions 2 and 3, and the
  plan of the draws), the stored tensors (`FastfoodArrays`), its
  configuration, and its products, each handed to one backend object
  that the projection chooses when it is made;
- `fastfood_arrays`: the types that travel between these modules: the
  stored tensors (`FastfoodArrays`) and a range of blocks to draw (`Draw`);
- `fastfood_legacy`: version 1 of the drawing (keras_idim 0.1.0's);
- `fastfood_ops`: the backend of TensorFlow ops (`OpsBackend`), and the
  Walsh-Hadamard transform `fwht`;
- `fastfood_kernel_backend`: the backend of the compiled CPU kernel
  (`KernelBackend`), and the choice between the two (`choose_backend`);
- `fastfood_regen`: the backend of a P that holds only its permutations
  and scales (`regenerate=True`: `RegenBackend`), drawing the signs and
  Gaussians (in version 3, S too) again inside each product;
- `kernel` and `kernel_build`: building and loading the compiled kernel.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from keras_idim.projections import fastfood_legacy, fastfood_regen
from keras_idim.projections.base import Projection, derive_seed
from keras_idim.projections.fastfood_arrays import Draw, FastfoodArrays
from keras_idim.projections.fastfood_kernel_backend import (
    FastfoodPieces,
    choose_backend,
)
from keras_idim.projections.fastfood_ops import (  # noqa: F401 (re-exported)
    HADAMARD_FACTOR_BITS,
    fwht,
    group_blocks,
    hadamard_matrix,
)
from keras_idim.utils.exports import keras_idim_export
from keras_idim.utils.validation import check_bool, check_choice

#: About how many numbers each group of stacked blocks draws (version 2),
#: and each slice of rows that an intermediate is computed on.
BUILD_CHUNK = 2**22

#: About how many numbers each pass of a product works on at a time: the
#: products loop over groups of stacked blocks of this size.
PASS_CHUNK = 2**20

#: The versions of how a FastfoodProjection is drawn from its seed.
VERSIONS = (1, 2, 3)

#: The default version is 3 from this many rows (D), 2 below.
HALF_FROM = 2**22


def _by_rows(fn, rows: int, row_length: int) -> tf.Tensor:
    """`fn(slice)` over consecutive slices of `rows` rows (about
    `BUILD_CHUNK` elements each, `row_length` elements a row), concatenated
    along the first axis: what `fn(slice(0, rows))` gives when `fn` is
    row-wise, with intermediates of one piece at a time."""
    step = max(1, BUILD_CHUNK // row_length)
    return tf.concat(
        [fn(slice(i, min(i + step, rows))) for i in range(0, rows, step)], axis=0
    )


def next_power_of_two(n: int) -> int:
    return 1 << (int(n) - 1).bit_length()


_BLOCKS = ("single", "stacked")


@keras_idim_export("keras_idim.projections.FastfoodProjection")
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
      this is less work, with the same column statistics (bench/RESULTS.md
      times both), and it is the default (`"auto"` picks it when B <= L / 4,
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
            compile; bench/RESULTS.md times both). Defaults to `True`.
            Where the compiled kernel runs the products
            (`keras_idim.projections.kernel`: by default on a machine
            without a GPU), it is not used.
        version: int or None. How P is drawn from the seed and stored. `3`:
            as `2`, with G and S stored as float16 (each block normalised
            by its float16 G, the normalisations as float32): 7 bytes a
            weight instead of 11. `2`: the random tensors of stacked blocks
            are drawn per group of blocks (about `BUILD_CHUNK` numbers; the
            groups after the first from streams of their own), so that
            drawing P takes little more memory than P itself. `1`: each
            drawn whole, so that drawing P takes several times the memory
            of P; a configuration without a version (keras_idim 0.1.0's)
            is version 1. All have the same statistics;
            1 and 2 give the same P where one group holds every block
            (below about 4M weights). Defaults to `None`: 3 from `HALF_FROM`
            (2^22) weights, where P's size counts, and 2 below (so that
            smaller models keep their P).
        regenerate: bool. Hold only the permutations and the scales (in
            version 3 the blocks' only), and draw the signs B, the Gaussians
            G (and version 3's S) again inside each product, each range of
            blocks once a product: the same P, bit for bit, in less memory
            (version 3: 2 bytes a weight, not 7) and more time, in
            TensorFlow ops, not XLA but each group's (`fastfood_regen`).
            Defaults to `False`.

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
        version: int | None = None,
        regenerate: bool = False,
    ):
        super().__init__(full_dim, dim, seed)
        self.jit_compile = check_bool("jit_compile", jit_compile)
        self.regenerate = check_bool("regenerate", regenerate)
        check_choice("blocks", blocks, ("auto", *_BLOCKS))
        if version is None:
            version = 3 if self.full_dim >= HALF_FROM else 2
        if isinstance(version, bool) or version not in VERSIONS:
            raise ValueError(
                f"`version` should be one of {VERSIONS} (how P is drawn from "
                "the seed; a newer keras_idim may have written this one). "
                f"Received: `version={version!r}`"
            )
        self.version = version
        length = next_power_of_two(max(self.full_dim, self.dim))
        small = next_power_of_two(self.dim)
        if blocks == "auto":
            blocks = "stacked" if 4 * small <= length else "single"
        if blocks == "stacked" and self.dim > self.full_dim:
            blocks = "single"
        self.blocks = blocks
        self.block_length = length if blocks == "single" else small
        self.num_blocks = -(-self.full_dim // self.block_length)
        # The products run over groups of `group_rows` blocks, one or two at
        # a time (`fastfood_ops.group_blocks`): a workspace of groups, not D.
        self.group_rows = group_blocks(self.num_blocks, self.block_length, PASS_CHUNK)
        self.num_groups = -(-self.num_blocks // self.group_rows)
        #: P's stored tensors (`FastfoodArrays`; with `regenerate`, no
        #: signs and Gaussians: `None`).
        self.arrays = self._stored()
        #: The products' backend, chosen once: `KernelBackend` (the compiled
        #: kernel), `OpsBackend` (TensorFlow ops) or, with `regenerate`,
        #: `fastfood_regen.RegenBackend` (TensorFlow ops).
        if self.regenerate:
            self.backend = fastfood_regen.regen_backend(self)
        else:
            self.backend = choose_backend(self)

    # The stored tensors by name (`FastfoodArrays`).
    signs = property(lambda self: self.arrays.signs)
    permutation = property(lambda self: self.arrays.permutation)
    gauss = property(lambda self: self.arrays.gauss)
    row_scale = property(lambda self: self.arrays.row_scale)
    block_scale = property(lambda self: self.arrays.block_scale)

    # -- drawing P from the seed ------------------------------------------

    def _plan(self) -> list[Draw]:
        """The ranges of blocks drawn, each from its streams: version 1's
        (`fastfood_legacy.plan`: every block at once); a single block; or
        stacked blocks in groups of about `BUILD_CHUNK` numbers, the first
        group from version 1's streams, each later one from its own."""
        if self.version == 1:
            return fastfood_legacy.plan(self.num_blocks)
        if self.blocks == "single":
            return [Draw(0, self.num_blocks, ())]
        step = max(1, BUILD_CHUNK // self.block_length)
        return [
            Draw(start, min(start + step, self.num_blocks), (i,) if i else ())
            for i, start in enumerate(range(0, self.num_blocks, step))
        ]

    def _stored(self) -> FastfoodArrays:
        """P's stored tensors, drawn range by range (`_plan`) into blocks
        padded to whole groups (zero signs and Gaussians, identity
        permutations: rows that are cut off). Each range is copied into
        place as it is drawn, and freed: TensorFlow's allocator (oneDNN's,
        a pool that it keeps) then holds one range's intermediates, not
        every part of P twice; each array is freed as its tensor is made.
        With `regenerate`, the signs and Gaussians are not kept (`None`)."""
        groups, rows, length = self.num_groups, self.group_rows, self.block_length
        padded = groups * rows
        real = np.float16 if self.version == 3 else np.float32
        kept = not self.regenerate
        held = {
            "signs": np.zeros([padded, length], np.int8) if kept else None,
            "permutation": np.empty([padded, length], self._index_dtype),
            "gauss": np.zeros([padded, length], real) if kept else None,
            "row_scale": None
            if self.regenerate and self.version == 3
            else np.zeros([padded * length], real),
            "block_scale": np.zeros([padded], np.float32)
            if self.version == 3
            else None,
        }
        held["permutation"][self.num_blocks :] = np.arange(length)
        for draw in self._plan():
            part = self._draw(*draw)
            for name in FastfoodArrays._fields:
                tensor = getattr(part, name)
                if tensor is not None:
                    start = draw.first * (length if name == "row_scale" else 1)
                    held[name][start : start + tensor.shape[0]] = tensor.numpy()
            del part, tensor
        shapes = {"row_scale": [-1], "block_scale": [groups, rows]}

        def stored(name: str) -> tf.Tensor | None:
            array = held.pop(name)
            if array is None:
                return None
            shape = shapes.get(name, [groups, rows, length])
            return tf.reshape(tf.convert_to_tensor(array), shape)

        return FastfoodArrays(**{name: stored(name) for name in FastfoodArrays._fields})

    def _draw(self, first: int, stop: int, stream: tuple[int, ...]) -> FastfoodArrays:
        """Blocks `first` to `stop - 1`: their signs, permutations (indices
        into each block), Gaussians and kept rows' scales (version 3: S
        alone, and each block's normalisation), drawn from the streams
        `(kind, *stream)`. Intermediates several times their size (int64
        sort keys, float64 draws) live one slice of blocks at a time, with
        the same results as whole. With `regenerate`, the signs are not
        drawn, and G only for the normalisations (`None` for both)."""
        length, shape = self.block_length, [stop - first, self.block_length]
        signs, key = None, fastfood_regen.keys(self.seed, stream)
        if not self.regenerate:
            signs = fastfood_regen.draw_signs(key[0], shape)
        perm = self._draw_permutation(shape, stream)
        gauss = fastfood_regen.draw_gauss(key[1], self.version, shape)
        block_scale = _by_rows(
            lambda rows, g=gauss: (
                1.0 / tf.sqrt(self.full_dim * tf.reduce_sum(g[rows] ** 2, axis=1))
            ),
            shape[0],
            length,
        )
        stored = None
        if not self.regenerate:
            stored = tf.cast(gauss, tf.float16 if self.version == 3 else tf.float32)
        del gauss
        row_scale, block_scale = self._draw_scales(block_scale, first, stop, stream)
        return FastfoodArrays(signs, perm, stored, row_scale, block_scale)

    def _draw_permutation(self, shape: list, stream: tuple[int, ...]) -> tf.Tensor:
        """The permutations of `shape[0]` blocks, as indices into each
        block: one shuffle for a single block, else the argsort of random
        keys per block."""
        length = self.block_length
        if self.blocks == "single":
            perm = tf.random.experimental.stateless_shuffle(
                tf.range(length, dtype=tf.int32), derive_seed(self.seed, 6)
            )[None, :]
        else:  # one random permutation per block: argsort of random keys
            seed = derive_seed(self.seed, 9, *stream)
            keys = tf.random.stateless_uniform(
                shape, seed, dtype=tf.int64, minval=None, maxval=None
            )
            perm = _by_rows(
                lambda rows: tf.argsort(
                    keys[rows], axis=1, stable=True, direction="ASCENDING"
                ),
                shape[0],
                length,
            )
            del keys
        return tf.cast(perm, self._index_dtype)

    def _draw_scales(self, block_scale, first: int, stop: int, stream) -> tuple:
        """`(row_scale, block_scale)` of blocks `first` to `stop - 1`'s kept
        rows, from their normalisations `block_scale` (float64) and S
        (`S_ii^2 ~ chi^2_B / B`): version 3, S alone as float16 and the
        normalisations as float32; before, their product as float32 and
        `None`."""
        length = self.block_length
        kept = min(stop * length, self.full_dim) - first * length
        if self.version == 3 and self.regenerate:  # S drawn in each product
            return None, tf.cast(block_scale, tf.float32)
        key = fastfood_regen.keys(self.seed, stream)[2]
        chi2 = fastfood_regen.draw_chi2(key, kept, length)
        if self.version == 3:  # S alone as float16; the blocks' scales apart
            scale = fastfood_regen.scale_16(chi2, length)
            return scale, tf.cast(block_scale, tf.float32)

        def row_scale(rows: slice) -> tf.Tensor:
            # S and the normalisation, folded into one vector over kept rows.
            scale = tf.sqrt(chi2[rows] / length)
            blocks = tf.range(rows.start, rows.stop) // length
            return tf.cast(scale * tf.gather(block_scale, blocks), tf.float32)

        return _by_rows(row_scale, kept, 1), None

    @property
    def _index_dtype(self) -> type:
        """The permutation's indices into a block: int16 when they fit."""
        return np.int16 if self.block_length <= 2**15 else np.int32

    @property
    def _padding(self) -> int:
        """Rows after the D kept ones, up to whole groups of blocks."""
        return self.num_groups * self.group_rows * self.block_length - self.full_dim

    # -- the products, in the backend ---------------------------------------

    @property
    def uses_kernel(self) -> bool:
        """Whether the products run in the compiled kernel (see
        `keras_idim.projections.kernel`), not in TensorFlow ops."""
        return self.backend.uses_kernel

    @property
    def supports_xla(self) -> bool:
        return self.backend.supports_xla

    @functools.cached_property
    def pieces(self) -> FastfoodPieces:
        """The products over pieces in the backend, which reads and writes
        them where they are (`FastfoodPieces`)."""
        return FastfoodPieces(self)

    def _maybe_compiled(self, name: str, fn):
        # The kernel is one pass already; XLA could not compile it.
        if not self.backend.supports_xla:
            return fn
        return super()._maybe_compiled(name, fn)

    def _kernel_args(self) -> tuple:
        """The stored tensors as the compiled kernel's ops take them."""
        return self.arrays.kernel_args()

    def call(self, v: tf.Tensor) -> tf.Tensor:
        return self.backend.forward(v)

    def _transpose(self, g: tf.Tensor) -> tf.Tensor:
        return self.backend.transpose(g)

    @property
    def memory_bytes(self) -> int:
        return self.arrays.memory_bytes

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            blocks=self.blocks, jit_compile=self.jit_compile, version=self.version
        )
        if self.regenerate:  # else as before (readable by earlier versions)
            config.update(regenerate=True)
        return config

    @classmethod
    def from_config(cls, config: dict) -> FastfoodProjection:
        # A configuration without `version` (keras_idim 0.1.0's) is drawn
        # as version 1 draws it (`fastfood_legacy`).
        return cls(**fastfood_legacy.with_version(config))
