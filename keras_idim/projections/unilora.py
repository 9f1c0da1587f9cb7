"""Uni-LoRA's isometric projection: one nonzero per row (Li et al. 2025)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import tensorflow as tf

from keras_idim.projections.base import Projection, derive_seed, tensor_bytes
from keras_idim.projections.pieces import Pieces, dense
from keras_idim.utils.exports import keras_idim_export
from keras_idim.utils.validation import check_bool, received

#: Rows mapped to their columns at once while building (bounds the
#: temporaries beside the index).
CHUNK_ELEMENTS = 2**22


@keras_idim_export("keras_idim.projections.UniLoRAProjection")
class UniLoRAProjection(Projection):
    """Uni-LoRA's projection: one nonzero per row, orthonormal columns.

    Each row of the D x d matrix has exactly one nonzero, in column `j`, and
    the nonzeros of column `j` all equal `1 / sqrt(n_j)`, `n_j` the number of
    rows in that column; no signs. The columns then have disjoint supports
    and unit norms: `P^T P = I` (up to float32 rounding), so `P` is an
    isometry of R^d into R^D. That is the projection of Uni-LoRA (Li, Han,
    Su, Li, Cai, Ji, "Uni-LoRA: One Vector is All You Need", NeurIPS 2025,
    arXiv:2506.00799), there applied to the flattened LoRA weights.

    The columns are drawn as Hugging Face PEFT's Uni-LoRA tuner draws them
    (`peft/tuners/unilora/model.py`, `UniLoraModel.generate_index`):
    balanced, every column gets `floor(D / d)` or `ceil(D / d)` rows, the
    `D mod d` columns that get one more chosen at random, and the rows are
    shuffled. So each row's column is uniform on the d columns, yet no
    column is empty (`dim` must be at most `full_dim`): unit column norms
    hold for every column. Here the rows are a random permutation `pi` of
    `0 .. D-1` (one `tf.random.experimental.stateless_shuffle`), row `i`
    going to column `tau[pi(i) mod d]` with `tau` a random permutation of
    the columns (another stream of the seed): the same law, drawn by
    stateless ops, so the same seed gives the same P bit for bit in any
    process (not PEFT's NumPy stream: the same law, another matrix).

    Stored: the column of every row (int32) and the d scales (float32), 4
    bytes per row and 4 per column; building holds the permutation and the
    index besides (a few times the index, never D x d). Products are a
    gather and a segment sum, O(D): `P v = (v * scale)[index]`, `P^T g =
    segment_sum(g, index) * scale`. The pieces of a subspace model (its
    weight tensors) are read and written where they are (`pieces`);
    SAID's dot products with `P v` come from the same segment sums.

    Unlike the other kinds, P is not nested: which rows a column holds
    depends on d, so the first k columns change with `dim`.

    Args:
        full_dim: int. D, the number of rows.
        dim: int. d, the number of columns, at most D.
        seed: int. Seed of the matrix. Defaults to `0`.
        jit_compile: bool. Run `P v`, `P^T g`, the sum `base + P v` and the
            transpose of a subspace model's pieces as XLA-compiled functions
            (TensorFlow's own segment sum on the CPU is several times slower:
            bench/RESULTS.md). Defaults to `True`.

    Example:

    >>> proj = UniLoRAProjection(full_dim=1_000, dim=30, seed=0)
    >>> proj.memory_bytes == 4 * 1_000 + 4 * 30
    True
    >>> sorted(set(np.bincount(proj.index.numpy(), minlength=30).tolist()))
    [33, 34]
    """

    name = "unilora"

    def __init__(
        self, full_dim: int, dim: int, seed: int = 0, jit_compile: bool = True
    ):
        super().__init__(full_dim, dim, seed)
        if self.dim > self.full_dim:
            raise ValueError(
                f"`dim` should be at most `full_dim` ({self.full_dim}) for a "
                "UniLoRAProjection: with one nonzero per row, a column beyond "
                f"the D-th would be empty. {received('dim', dim)}"
            )
        self.jit_compile = check_bool("jit_compile", jit_compile)
        index, scale = self._draw()
        self.index = tf.constant(index, tf.int32)
        self.scale = tf.constant(scale, tf.float32)

    def _draw(self) -> tuple[np.ndarray, np.ndarray]:
        """The column of every row (int32, (D,)) and the d scales."""
        full_dim, dim = self.full_dim, self.dim
        # Drawn on the CPU, where the stateless shuffle runs (the same bits
        # whichever device the products then use).
        with tf.device("/CPU:0"):
            rows = tf.random.experimental.stateless_shuffle(
                tf.range(full_dim, dtype=tf.int32), derive_seed(self.seed, 1)
            ).numpy()
            columns = tf.random.experimental.stateless_shuffle(
                tf.range(dim, dtype=tf.int32), derive_seed(self.seed, 2)
            ).numpy()
        index = np.empty(full_dim, np.int32)
        for start in range(0, full_dim, CHUNK_ELEMENTS):
            stop = min(start + CHUNK_ELEMENTS, full_dim)
            index[start:stop] = columns[rows[start:stop] % dim]
        del rows
        # Column columns[k] holds the rows i with pi(i) mod d == k: there are
        # q + 1 of them for k < r (D = q d + r), q otherwise.
        q, r = divmod(full_dim, dim)
        counts = np.full(dim, q, np.int64)
        counts[columns[:r]] += 1
        return index, 1.0 / np.sqrt(counts.astype(np.float64))

    # -- the products -----------------------------------------------------

    def call(self, v: tf.Tensor) -> tf.Tensor:
        return tf.gather(v * self.scale, self.index)

    def _transpose(self, g: tf.Tensor) -> tf.Tensor:
        return tf.math.unsorted_segment_sum(g, self.index, self.dim) * self.scale

    @functools.cached_property
    def pieces(self) -> UniLoRAPieces:
        """The products over pieces read and written where they are
        (`UniLoRAPieces`)."""
        return UniLoRAPieces(self)

    @property
    def memory_bytes(self) -> int:
        return tensor_bytes(self.index, self.scale)

    def get_config(self) -> dict:
        config = super().get_config()
        config["jit_compile"] = self.jit_compile
        return config


class UniLoRAPieces(Pieces):
    """A `UniLoRAProjection`'s products over pieces, read and written where
    they are: each piece of `base + s * (P v)` gathered from its own rows
    of the index when asked for; the transpose a segment sum per piece,
    from which SAID's dot products come too."""

    fused = True

    def _offsets(self, sizes: list) -> list[int]:
        sizes = [int(n) for n in sizes]
        full_dim = self.projection.full_dim
        if sum(sizes) != full_dim:
            raise ValueError(
                f"The pieces should add up to full_dim={full_dim} rows. "
                f"{received('sizes', sizes)}"
            )
        return [sum(sizes[:t]) for t in range(len(sizes) + 1)]

    def affine(self, v: Any, base: Any, sizes: list, scales: Any = None):
        # Each piece gathered from its own rows of the index when asked for.
        w = self.projection._checked(v) * self.projection.scale
        if base is not None:
            base = tf.convert_to_tensor(base, tf.float32)
        offsets = self._offsets(sizes)
        if scales is not None:
            scales = tf.unstack(tf.convert_to_tensor(scales, tf.float32))

        def pieces():
            for t, (start, stop) in enumerate(zip(offsets, offsets[1:])):
                u = tf.gather(w, self.projection.index[start:stop])
                if scales is not None:
                    u = scales[t] * u
                yield u if base is None else base[start:stop] + u

        return pieces()

    def _segment_sums(self, pieces: list) -> list[tf.Tensor]:
        """`P_t^T`-before-scaling of each piece: its rows summed by column."""
        offsets = self._offsets([int(p.shape[0]) for p in pieces])
        return [
            tf.math.unsorted_segment_sum(
                p, self.projection.index[start:stop], self.projection.dim
            )
            for p, start, stop in zip(pieces, offsets, offsets[1:])
        ]

    def transpose(self, pieces: list, scales: Any = None, v: Any = None) -> tuple:
        pieces = [dense(p) for p in pieces]
        if scales is not None:
            scales = tf.convert_to_tensor(scales, tf.float32)
        if v is not None:
            v = self.projection._checked(v)
        return self.projection._maybe_compiled("pieces", self._transpose_and_dots)(
            pieces, scales, v
        )

    def _transpose_and_dots(self, pieces: list, scales: Any, v: Any) -> tuple:
        # c_t = segment sums of piece t: P^T (s * g) = scale * sum_t s_t c_t
        # and g_t . (P v)_t = c_t . (v * scale), from the same pass.
        sums = self._segment_sums(pieces)
        if scales is None:
            total = tf.add_n(sums)
        else:
            scales = tf.unstack(scales)
            total = tf.add_n([s * c for s, c in zip(scales, sums)])
        dots = None
        if v is not None:
            w = v * self.projection.scale
            dots = tf.stack([tf.tensordot(c, w, axes=1) for c in sums])
        return total * self.projection.scale, dots
