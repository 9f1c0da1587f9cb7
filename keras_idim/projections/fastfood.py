"""Fastfood projection (Le, Sarlos, Smola, ICML 2013)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_idim.projections import kernel
from keras_idim.projections.base import Projection, derive_seed, tensor_bytes
from keras_idim.projections.fastfood_ops import (  # noqa: F401 (re-exported)
    HADAMARD_FACTOR_BITS,
    OpsBackend,
    fwht,
    hadamard_matrix,
)
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
    ):
        super().__init__(full_dim, dim, seed)
        self.jit_compile = check_bool("jit_compile", jit_compile)
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
        # The products run over groups of `group_rows` blocks, one at a time
        # (`PASS_CHUNK`): their workspace is a group's, not D's. The blocks
        # are padded to whole groups with zero signs and Gaussians (rows
        # that are cut off), each block's permutation kept as indices into
        # the block (int16 up to blocks of 2^15), the signs as int8 (+-1).
        self.group_rows = min(self.num_blocks, max(1, PASS_CHUNK // self.block_length))
        self.num_groups = -(-self.num_blocks // self.group_rows)
        if version == 1 or blocks == "single":
            draws = [(0, self.num_blocks, ())]
        else:
            step = max(1, BUILD_CHUNK // self.block_length)
            draws = [  # the first group from version 1's streams
                (start, min(start + step, self.num_blocks), (i,) if i else ())
                for i, start in enumerate(range(0, self.num_blocks, step))
            ]
        # Each group of blocks is copied into place as it is drawn, and
        # freed: TensorFlow's allocator (oneDNN's, a pool that it keeps)
        # then holds one group's intermediates, not every part of P twice
        # (as joining the parts took).
        rows, length = self.num_groups * self.group_rows, self.block_length
        real = np.float16 if version == 3 else np.float32
        arrays = [
            np.zeros([rows, length], np.int8),
            np.empty([rows, length], self._index_dtype),
            np.zeros([rows, length], real),
            np.zeros([rows * length], real),
        ]
        if version == 3:  # the blocks' normalisations, apart from S
            arrays.append(np.zeros([rows], np.float32))
        cut = self.num_blocks
        arrays[1][cut:] = np.arange(length)  # cut-off blocks: the identity
        for first, stop, stream in draws:
            parts = self._draw(first, stop, stream)
            for i, (array, part) in enumerate(zip(arrays, parts)):
                start = first * length if i == 3 else first
                array[start : start + part.shape[0]] = part.numpy()
            del parts
        grouped = [self.num_groups, self.group_rows, length]
        whole = []
        for shape in (grouped, grouped, grouped, [-1], grouped[:2])[: len(arrays)]:
            whole.append(tf.reshape(tf.convert_to_tensor(arrays.pop(0)), shape))
        self.signs, self.permutation, self.gauss, self.row_scale = whole[:4]
        #: Version 3: each block's normalisation, float32 (`row_scale` then
        #: holds S alone, float16); `None` before (folded into `row_scale`).
        self.block_scale = whole[4] if version == 3 else None
        self._ops = self._kernel_ops()
        #: The TensorFlow-ops backend (`fastfood_ops.OpsBackend`), `None`
        #: where the compiled kernel makes the products.
        self._tf = OpsBackend(self) if self._ops is None else None

    def _kernel_ops(self):
        """The compiled kernel's ops (`keras_idim.projections.kernel`) when
        this P's products should use them, else `None`."""
        if not kernel.wanted(self.full_dim):
            return None
        ops = kernel.load()
        if ops is None and kernel.mode() == "on":
            raise RuntimeError(
                f"{kernel.ENV}=1 asks for Fastfood's compiled kernel, which is "
                f"unavailable: {kernel.unavailable_reason()}. Set {kernel.ENV}"
                "=auto (or 0) to use TensorFlow ops instead."
            )
        if ops is None:
            kernel.warn_once(self.full_dim)
        return ops

    @property
    def uses_kernel(self) -> bool:
        """Whether the products run in the compiled kernel (see
        `keras_idim.projections.kernel`), not in TensorFlow ops."""
        return self._ops is not None

    @property
    def supports_xla(self) -> bool:
        # XLA cannot compile the kernel's op.
        return self._ops is None

    #: Both backends read and write the pieces where they are: the kernel in
    #: one pass, the TensorFlow ops group by group (`fastfood_ops`).
    fuses_pieces = True

    def _maybe_compiled(self, name: str, fn):
        # The kernel is one pass already; XLA could not compile it.
        return fn if self._ops is not None else super()._maybe_compiled(name, fn)

    def _kernel_args(self) -> tuple:
        block_scale = tf.zeros([0]) if self.block_scale is None else self.block_scale
        return self.signs, self.permutation, self.gauss, self.row_scale, block_scale

    def _draw(
        self, first: int, stop: int, stream: tuple[int, ...]
    ) -> tuple[tf.Tensor, ...]:
        """Blocks `first` to `stop - 1`: their signs, permutations (indices
        into each block), Gaussians and kept rows' scales (version 3: S
        alone, then each block's normalisation), drawn from the streams
        `(kind, *stream)`. Intermediates several times
        their size (int64 sort keys, float64 draws) live one slice of
        blocks at a time, with the same results as whole."""
        length = self.block_length
        shape = [stop - first, length]
        uniform = tf.random.stateless_uniform(
            shape,
            derive_seed(self.seed, 5, *stream),
            minval=0,
            maxval=2,
            dtype=tf.int32,
        )
        signs = tf.cast(uniform * 2 - 1, tf.int8)
        del uniform
        if self.blocks == "single":
            perm = tf.random.experimental.stateless_shuffle(
                tf.range(length, dtype=tf.int32), derive_seed(self.seed, 6)
            )[None, :]
        else:  # one random permutation per block: argsort of random keys
            keys = tf.random.stateless_uniform(
                shape,
                derive_seed(self.seed, 9, *stream),
                dtype=tf.int64,
                minval=None,
                maxval=None,
            )
            perm = _by_rows(
                lambda rows: tf.argsort(
                    keys[rows], axis=1, stable=True, direction="ASCENDING"
                ),
                shape[0],
                length,
            )
            del keys
        perm = tf.cast(perm, self._index_dtype)  # indices into the block
        gauss = tf.random.stateless_normal(
            shape, derive_seed(self.seed, 7, *stream), dtype=tf.float64
        )
        if self.version == 3:  # G stored as float16, normalised as stored
            gauss = tf.cast(tf.cast(gauss, tf.float16), tf.float64)
        block_scale = _by_rows(
            lambda rows, g=gauss: (
                1.0 / tf.sqrt(self.full_dim * tf.reduce_sum(g[rows] ** 2, axis=1))
            ),
            shape[0],
            length,
        )
        stored = tf.cast(gauss, tf.float16 if self.version == 3 else tf.float32)
        del gauss
        kept = min(stop * length, self.full_dim) - first * length
        chi2 = 2.0 * tf.random.stateless_gamma(
            [kept],
            derive_seed(self.seed, 8, *stream),
            alpha=length / 2.0,
            dtype=tf.float64,
        )

        if self.version == 3:  # S alone as float16; the blocks' scales apart
            scale = _by_rows(
                lambda rows: tf.cast(tf.sqrt(chi2[rows] / length), tf.float16),
                kept,
                1,
            )
            return signs, perm, stored, scale, tf.cast(block_scale, tf.float32)

        def row_scale(rows: slice) -> tf.Tensor:
            # S and the normalisation, folded into one vector over kept rows.
            scale = tf.sqrt(chi2[rows] / length)
            blocks = tf.range(rows.start, rows.stop) // length
            return tf.cast(scale * tf.gather(block_scale, blocks), tf.float32)

        return signs, perm, stored, _by_rows(row_scale, kept, 1)

    def call(self, v: tf.Tensor) -> tf.Tensor:
        if self._ops is not None:
            return self._kernel_call(v)
        return self._tf.forward(v)

    @property
    def _index_dtype(self) -> type:
        """The permutation's indices into a block: int16 when they fit."""
        return np.int16 if self.block_length <= 2**15 else np.int32

    @property
    def _padding(self) -> int:
        """Rows after the D kept ones, up to whole groups of blocks."""
        return self.num_groups * self.group_rows * self.block_length - self.full_dim

    def _kernel_call(self, v: tf.Tensor) -> tf.Tensor:
        """`P v` in the kernel, differentiable: the kernel's op has no
        registered gradient, so autodiff is told that the map's
        vector-Jacobian product is the kernel's own transpose, `P^T g`."""

        @tf.custom_gradient
        def forward(v):
            def grad(upstream):
                return self._kernel_transpose([upstream], None, None)[0]

            return self._kernel_forward(v, tf.zeros([0]), tf.zeros([0]), []), grad

        return forward(v)

    def _kernel_forward(self, v, base, scales, sizes: list) -> tf.Tensor:
        return self._ops.keras_idim_fastfood_forward(
            v,
            base,
            scales,
            *self._kernel_args(),
            full_dim=self.full_dim,
            sizes=[int(n) for n in sizes],
        )

    def _affine(self, v: tf.Tensor, base: tf.Tensor) -> tf.Tensor:
        if self._ops is not None:  # the sum made in the kernel's pass
            return self._kernel_forward(v, base, tf.zeros([0]), [])
        return super()._affine(v, base)

    def scaled_affine(self, v, base, scales, sizes: list) -> tf.Tensor:
        if self._ops is None:
            return tf.concat(list(self.affine_pieces(v, base, sizes, scales)), 0)
        return self._kernel_forward(
            self._checked(v),
            tf.convert_to_tensor(base, tf.float32),
            tf.convert_to_tensor(scales, tf.float32),
            sizes,
        )

    def affine_pieces(self, v, base, sizes: list, scales=None):
        if self._ops is not None:
            return super().affine_pieces(v, base, sizes, scales)
        base = tf.convert_to_tensor(base, tf.float32)
        return self._tf.affine_pieces(self._checked(v), base, sizes, scales)

    def piece_dots(self, v, pieces: list) -> tf.Tensor:
        return self.transpose_and_dots(pieces, None, v)[1]

    def transpose_and_dots(self, pieces: list, scales, v) -> tuple:
        if self._ops is None:
            return self._tf.transpose_pieces(pieces, scales, self._checked(v))
        return self._kernel_transpose(pieces, scales, self._checked(v))

    def _kernel_transpose(self, pieces: list, scales, v) -> tuple:
        """The kernel's `(P^T (scales * g), dots of the pieces with P v)`,
        the dots zero without v."""
        return self._ops.keras_idim_fastfood_transpose(
            [tf.cast(p, tf.float32) for p in pieces],
            tf.zeros([0])
            if scales is None
            else tf.convert_to_tensor(scales, tf.float32),
            tf.zeros([0]) if v is None else v,
            *self._kernel_args(),
            full_dim=self.full_dim,
            dim=self.dim,
        )

    def transpose_pieces(self, pieces: list, scales=None) -> tf.Tensor:
        if self._ops is not None:  # read where they are, scaled as read
            return self._kernel_transpose(pieces, scales, None)[0]
        # Cut from the pieces group by group, scaled as cut.
        return self._tf.transpose_pieces(pieces, scales)[0]

    def _transpose(self, g: tf.Tensor) -> tf.Tensor:
        if self._ops is not None:
            return self.transpose_pieces([g])
        return self._tf.transpose_padded(tf.pad(g, [[0, self._padding]]))

    @property
    def memory_bytes(self) -> int:
        return tensor_bytes(*self._kernel_args())

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            blocks=self.blocks, jit_compile=self.jit_compile, version=self.version
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> FastfoodProjection:
        # A configuration without `version` (keras_idim 0.1.0's) is drawn
        # as version 1 draws it.
        return cls(**{"version": 1, **config})
