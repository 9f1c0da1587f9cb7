"""Dense Gaussian projection with columns of unit L2 norm."""

from __future__ import annotations

import tensorflow as tf

from keras_idim.projections.base import Projection, derive_seed, tensor_bytes
from keras_idim.utils.exports import keras_idim_export
from keras_idim.utils.validation import check_choice, is_int, received

#: Elements of one generated column block (16 MiB of float32).
BLOCK_ELEMENTS = 2**22
#: Default `memory_budget` of `DenseProjection`: 2 GiB.
DEFAULT_MEMORY_BUDGET = 2**31
_OVER_BUDGET = ("blocks", "raise")
#: Estimated seconds per training step above which an on-the-fly P warns.
SLOW_STEP_SECONDS = 60.0


@keras_idim_export("keras_idim.projections.DenseProjection")
class DenseProjection(Projection):
    """Dense random projection: N(0, 1) entries, every column of unit norm.

    One global D x d matrix over all the model's parameters. Columns are drawn
    in blocks of `block_columns = max(1, 2**22 // full_dim)` from the integer
    seed; each block is generated at full width and sliced, so the first k
    columns of P do not depend on `dim` (a larger d extends a smaller one).

    When `4 * full_dim * dim` bytes fit in `memory_budget`, P is generated
    once and stored (transposed, d x D). Above the budget, P is never stored:
    each call regenerates the column blocks from the seed on the fly (the
    same matrix, bit for bit, at the cost of generating D x d normals in
    every forward and every transposed product). With `over_budget="raise"`
    it refuses instead, naming the `sparse` and `fastfood` projections, whose
    memory is O(d sqrt(D)) and O(D).

    Args:
        full_dim: int. D, the number of rows.
        dim: int. d, the number of columns.
        seed: int. Seed of the matrix. Defaults to `0`.
        memory_budget: int. Bytes P may occupy when stored. Defaults to
            `2**31` (2 GiB).
        over_budget: str. `"blocks"` (regenerate on the fly) or `"raise"`
            when P is over `memory_budget`. Defaults to `"blocks"`.

    Example:

    >>> proj = DenseProjection(full_dim=1000, dim=10, seed=0)
    >>> proj(tf.ones([10])).shape
    TensorShape([1000])
    """

    name = "dense"

    def __init__(
        self,
        full_dim: int,
        dim: int,
        seed: int = 0,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        over_budget: str = "blocks",
    ):
        super().__init__(full_dim, dim, seed)
        if not is_int(memory_budget) or memory_budget < 0:
            raise ValueError(
                "`memory_budget` should be a non-negative integer number of "
                f"bytes. {received('memory_budget', memory_budget)}"
            )
        self.memory_budget = int(memory_budget)
        self.over_budget = check_choice("over_budget", over_budget, _OVER_BUDGET)
        self.block_columns = max(1, BLOCK_ELEMENTS // self.full_dim)
        self.num_blocks = -(-self.dim // self.block_columns)
        needed = 4 * self.full_dim * self.dim
        self.stored = needed <= memory_budget
        if not self.stored and over_budget == "raise":
            raise ValueError(
                f"A dense projection of D={self.full_dim} x d={self.dim} "
                f"float32 needs {needed / 2**30:.2f} GiB, over "
                f"`memory_budget={memory_budget}` bytes. Use "
                "`projection='sparse'` or `projection='fastfood'` (memory "
                "O(d sqrt(D)) and O(D)), raise `memory_budget`, or pass "
                "`over_budget='blocks'` to regenerate P on the fly."
            )
        if self.stored:
            self._pt = tf.concat(
                [self._block(b) for b in range(self.num_blocks)], axis=0
            )
        else:
            self._warn_if_slow()

    def _warn_if_slow(self) -> None:
        """Warns once when regenerating P on the fly would take a minute or
        more per training step (two passes: forward and transposed)."""
        import time
        import warnings

        self._block(0)  # warm up
        started = time.perf_counter()
        self._block(0)
        per_step = 2 * self.num_blocks * (time.perf_counter() - started)
        if per_step >= SLOW_STEP_SECONDS:
            warnings.warn(
                f"A dense projection of D={self.full_dim:,} x d={self.dim:,} is "
                f"over `memory_budget` and is regenerated on the fly: about "
                f"{per_step / 60:.0f} minutes of random numbers per training "
                "step on this machine. Use `projection='fastfood'` or "
                "`'sparse'` (O(D log D) and O(d sqrt(D)) per step) instead.",
                UserWarning,
                stacklevel=3,
            )

    def _block(self, b: int | tf.Tensor) -> tf.Tensor:
        """Columns [b*c, b*c + c) of P as the rows of a (c', D) tensor."""
        c = self.block_columns
        # Stream 1 of the seed, shifted by the block index.
        seed = derive_seed(self.seed, 1) + tf.stack(
            [tf.constant(0, tf.int64), tf.cast(b, tf.int64)]
        )
        rows = tf.random.stateless_normal([c, self.full_dim], seed, dtype=tf.float32)
        rows = rows / tf.norm(rows, axis=1, keepdims=True)
        width = tf.minimum(c, self.dim - tf.cast(b, tf.int32) * c)
        return rows[:width]

    def call(self, v: tf.Tensor) -> tf.Tensor:
        if self.stored:
            return tf.linalg.matvec(self._pt, v, transpose_a=True)
        return self._on_the_fly(v)

    def _on_the_fly(self, v: tf.Tensor) -> tf.Tensor:
        c, d = self.block_columns, self.dim
        pad = self.num_blocks * c - d

        @tf.custom_gradient
        def project(v):
            vb = tf.reshape(tf.pad(v, [[0, pad]]), [self.num_blocks, c])

            def body(b, acc):
                block = self._block(b)
                coeffs = vb[b, : tf.shape(block)[0]]
                return b + 1, acc + tf.linalg.matvec(block, coeffs, transpose_a=True)

            _, out = tf.while_loop(
                lambda b, _: b < self.num_blocks,
                body,
                (tf.constant(0), tf.zeros([self.full_dim], tf.float32)),
            )

            def grad(g):
                # The transposed product, block by block: P_b^T g.
                def body_t(b, ta):
                    block = self._block(b)
                    part = tf.linalg.matvec(block, g)
                    part = tf.pad(part, [[0, c - tf.shape(part)[0]]])
                    return b + 1, ta.write(b, part)

                _, ta = tf.while_loop(
                    lambda b, _: b < self.num_blocks,
                    body_t,
                    (
                        tf.constant(0),
                        tf.TensorArray(
                            tf.float32, size=self.num_blocks, element_shape=[c]
                        ),
                    ),
                )
                # A static (d,) shape, as the stored product gives: the
                # all-reduce under tf.distribute and XLA see a known size.
                return tf.reshape(ta.stack(), [self.num_blocks * c])[:d]

            return out, grad

        return project(v)

    @property
    def memory_bytes(self) -> int:
        return tensor_bytes(self._pt) if self.stored else 0

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(memory_budget=self.memory_budget, over_budget=self.over_budget)
        return config
