"""`SubspaceMap`: theta = theta_0 + (lambda *) P theta_d, and its pull-back.

A `SubspaceModel` keeps the variables (theta_0, theta_d, SAID's lambdas) and
the training loop; this class does the math between them and the base
model's weights: it writes theta into the base variables, and maps the
gradient with respect to them back to theta_d (and the lambdas).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_idim.projections.base import Projection
from keras_idim.projections.pieces import SparseRows
from keras_idim.utils.validation import is_number


class SubspaceMap:
    """The map from the subspace to the base model's weights, and back.

    Writes `theta_0 + P theta_d` (with SAID, `theta_0,t + lambda_t (P
    theta_d)_t` for each weight tensor t) into the base variables, and maps
    gradients with respect to those variables to theta_d (`P^T g`, with SAID
    `P^T (lambda * g)`) and to the lambdas. A plain object, so that Keras'
    attribute tracking does not count the base model's variables a second
    time as variables of the model that holds it.

    Args:
        projection: Projection. P, of shape (D, d) (with SAID, d the size of
            theta_d).
        variables: list. The base model's variables that theta drives, in
            P's order (each flattened row-major); D is their total size.
        structure_aware: bool. SAID's per-tensor scales.
    """

    def __init__(self, projection: Projection, variables: list, structure_aware: bool):
        self.projection = projection
        self.variables = list(variables)
        self.shapes = [tuple(v.shape) for v in self.variables]
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.full_dim = sum(self.sizes)
        self.structure_aware = structure_aware
        # With SAID, P theta_d, kept for the gradient of the lambdas where
        # the projection cannot make it again on the fly (`Pieces.fused`:
        # Fastfood gives those dot products beside its transpose, the kernel
        # in its pass, the TensorFlow ops group by group). It follows from
        # theta_d, so it is not a weight of the model and not saved.
        self.offset = (
            keras.Variable(tf.zeros([self.full_dim]), trainable=False, name="offset")
            if structure_aware and not projection.pieces.fused
            else None
        )

    def flatten(self) -> tf.Tensor:
        """The base variables' current values joined into one (D,) float32
        tensor, in P's order: theta_0 when wrapped."""
        return tf.concat(
            [tf.reshape(tf.cast(v, tf.float32), [-1]) for v in self.variables],
            axis=0,
        )

    def per_tensor(self, flat: tf.Tensor) -> list[tf.Tensor]:
        """A (D,) tensor cut into one flat piece per base tensor."""
        return tf.split(flat, self.sizes)

    def update_offset(self, theta_d: Any) -> None:
        """Makes the kept P theta_d again from `theta_d` (after theta_d was
        loaded); nothing without one."""
        if self.offset is not None:
            self.offset.assign(self.projection(theta_d))

    def write(self, theta_0: Any, theta_d: Any, lambdas: Any = None) -> None:
        """Writes `theta_0 + (lambda *) P theta_d` into the base variables.

        One pass of the projection. With SAID, tensor t gets `theta_0,t +
        lambda_t (P theta_d)_t`: each piece is scaled on its own, so that
        no tensor larger than D is built. The sum comes from the
        projection's own pass (`Projection.pieces`; Fastfood's
        TensorFlow ops make each piece when it is asked for, a group of rows
        at a time). The variables are written one at a time, each piece
        made after the last was written.

        Args:
            theta_0: The (D,) initial weights.
            theta_d: The (d,) subspace coordinates.
            lambdas: With SAID, the (number of tensors,) scales; else `None`.
        """
        theta_d = tf.convert_to_tensor(theta_d)
        theta_0 = tf.convert_to_tensor(theta_0)
        if self.structure_aware and self.offset is not None:
            # P theta_d, kept for the lambdas' gradient, and read back from
            # the variable: the product's own buffer is then free at once.
            self.offset.assign(self.projection(theta_d))
            with tf.control_dependencies([self.offset.value]):
                offset = tf.convert_to_tensor(self.offset)
            pieces = zip(
                self.per_tensor(theta_0),
                tf.unstack(tf.convert_to_tensor(lambdas)),
                self.per_tensor(offset),
            )
            theta = (base + lam * u for base, lam, u in pieces)
        else:
            # theta_0 + (lambda *) P theta_d, piece by piece as the
            # projection makes them (one pass; Fastfood's TensorFlow ops
            # make each piece when it is asked for, group by group).
            theta = self.projection.pieces.affine(
                theta_d,
                theta_0,
                self.sizes,
                lambdas if self.structure_aware else None,
            )
        # One tensor at a time: each piece is made after the last one is
        # written, so that the pieces never add up to another (D,) tensor.
        written = []
        for v, shape in zip(self.variables, self.shapes):
            with tf.control_dependencies(written[-1:]):
                piece = tf.reshape(next(theta), shape)
                written.append(v.value.assign(tf.cast(piece, v.dtype)))

    def pull_back(
        self, grads: list, theta_d: Any = None, lambdas: Any = None
    ) -> list[tf.Tensor]:
        """Maps gradients w.r.t. the base variables to the subspace.

        Args:
            grads: list. One gradient (or `None`) per base variable, in P's
                order.
            theta_d: With SAID, the (d,) subspace coordinates; else unused.
            lambdas: With SAID, the scales; else unused.

        Returns:
            `[P^T g]`, and with SAID `[P^T (lambda * g), sum_t(g * P
            theta_d)]`: the gradients of theta_d and of the lambdas.
        """
        # An embedding's gradient (`tf.IndexedSlices`) goes as its rows to a
        # projection that transposes them through their rows of P only.
        rows = self.projection.pieces.sparse_rows
        pieces = [
            tf.zeros([n], tf.float32)
            if g is None
            else SparseRows.of(g, shape)
            if rows and n and isinstance(g, tf.IndexedSlices)
            else tf.reshape(tf.cast(tf.convert_to_tensor(g), tf.float32), [-1])
            for g, n, shape in zip(grads, self.sizes, self.shapes)
        ]
        if not self.structure_aware:
            return [self.projection.pieces.transpose(pieces)[0]]
        # Per tensor: d/dlambda_t = g_t . (P theta_d)_t; the chain rule to
        # theta_d carries lambda_t * g_t.
        if self.offset is None:  # both from one pass of the projection
            return list(self.projection.pieces.transpose(pieces, lambdas, theta_d))
        # Scaled piece by piece (see `write`).
        lambdas = tf.unstack(tf.convert_to_tensor(lambdas))
        offsets = self.per_tensor(tf.convert_to_tensor(self.offset))
        # Dot products (no product tensor made); and only then the scaling,
        # which may then write into each gradient's own buffer.
        grad_lambdas = tf.stack(
            [tf.tensordot(g, u, axes=1) for g, u in zip(pieces, offsets)]
        )
        with tf.control_dependencies([grad_lambdas]):
            scaled = [lam * g for lam, g in zip(lambdas, pieces)]
        return [self.projection.pieces.transpose(scaled)[0], grad_lambdas]


def scales_optimizer(
    optimizer: keras.optimizers.Optimizer,
    lambdas: Any,
    rate: Callable[[Any], float],
    fixed: bool,
) -> keras.optimizers.Optimizer:
    """A copy of `optimizer` for SAID's scales, built for `lambdas`, at the
    rate `rate(r)` where `optimizer`'s rate r is a number or the rate is
    `fixed` (`rate` ignores r); else (a schedule) at `optimizer`'s schedule.

    A step of size r on each scale changes the whole of its tensor's offset
    by a factor 1 + r, while a step of size r on each of the d coordinates
    of theta_d moves each weight by about r * sqrt(d / D) (unit-norm
    columns): at theta_d's rate the m scales would move the weights far
    more than theta_d does, and flip sign. `SubspaceModel.said_rate` gives
    them `said_learning_rate`, or by default theta_d's rate times
    sqrt(d / D).

    Args:
        optimizer: The compiled optimizer of theta_d.
        lambdas: The scales' variable.
        rate: callable. The scales' rate from theta_d's.
        fixed: bool. Whether `rate` gives a fixed rate (`said_learning_rate`).
    """
    config = keras.optimizers.serialize(optimizer)
    main = config["config"].get("learning_rate")
    said = keras.optimizers.deserialize(config)
    if fixed or is_number(main):
        said.learning_rate = rate(main)
    # else a schedule: the scales follow it as it is
    said.build([lambdas])
    return said
