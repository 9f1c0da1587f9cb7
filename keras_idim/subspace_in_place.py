"""Weights written in place: a `SubspaceModel(..., keep_theta_0=False)`.

Such a model holds no theta_0: the base weights W, as wrapped, are theta_0
at theta_d = 0 (and lambdas = 1). After each step it adds to W the change
of `(lambda *) P theta_d` since the values last written, which it keeps in
two small variables (theta_d's and the lambdas' last written values):

- plain: `W += P (theta_d' - theta_d)`;
- SAID: `W_t += lambda'_t (P (theta_d' - theta_d))_t + (lambda'_t -
  lambda_t) (P theta_d)_t`, in two passes (each one add into W).

The increments are made piece by piece, one weight tensor at a time, and
added into their variable before the next piece is made: with Fastfood's
TensorFlow ops or Uni-LoRA no tensor of D floats is made besides the
weights; Fastfood's compiled kernel makes one (its whole output), and a
projection that is not fused (dense, sparse) makes `P v` whole, as it does
anyway. W then drifts from `theta_0 + (lambda *) P theta_d` by rounding:
one float32 add a step (two with SAID), see `SubspaceModel`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_idim.compact_format import split
from keras_idim.utils.validation import received

#: The dtypes of weights that can take small increments in place.
IN_PLACE_DTYPES = ("float32", "float64")


def check_keep_theta_0(value: Any, variables: list = ()) -> bool:
    """`keep_theta_0` checked: a bool; `False` only with float weights of at
    least 32 bits (an increment of a step is far below a bfloat16 ulp)."""
    if not isinstance(value, bool):
        raise ValueError(
            "`keep_theta_0` should be a bool: True holds theta_0 (D more "
            "floats), False updates the base weights in place. "
            f"{received('keep_theta_0', value)}"
        )
    if not value:
        low = sorted({str(v.dtype) for v in variables} - set(IN_PLACE_DTYPES))
        if low:
            raise ValueError(
                "`keep_theta_0=False` adds each step's increment into the "
                f"base weights, which should then be float32 (or float64); "
                f"these are {low}: the increments would round away. Use "
                "`keep_theta_0=True`, or float32 weights."
            )
    return value


def projected_pieces(
    projection: Any, v: Any, sizes: list, scales: Any = None
) -> Iterator[tf.Tensor]:
    """`s_t (P v)_t` for consecutive pieces of `sizes` rows (s_t =
    `scales[t]`, or 1), one at a time, with no base added
    (`projection.pieces.affine` with `base=None`): Fastfood's TensorFlow
    ops make each group of rows when a piece first needs it, Uni-LoRA
    gathers each piece from its rows of the index, Fastfood's kernel makes
    `P v` whole in one pass, and other projections make `P v` whole and
    cut it."""
    return projection.pieces.affine(v, None, sizes, scales)


def _scaled(parts, scales) -> Iterator[tf.Tensor]:
    if scales is None:
        return iter(parts)
    scales = tf.unstack(tf.convert_to_tensor(scales, tf.float32))
    return (s * u for s, u in zip(scales, parts))


def add_pieces(variables: list, pieces: Iterator[tf.Tensor], after: list) -> list:
    """Adds each piece into its variable, one at a time, each piece made
    after the last was added (and the first after `after`); returns the
    last add, to order what follows."""
    done = list(after)
    for v in variables:
        with tf.control_dependencies(done[-1:]):
            piece = tf.reshape(next(pieces), v.shape)
            done.append(v.value.assign_add(tf.cast(piece, v.dtype)))
    return done[-1:]


def write_increment(
    subspace_map: Any,
    theta_d: Any,
    written_theta_d: Any,
    lambdas: Any = None,
    written_lambdas: Any = None,
) -> None:
    """Adds the change of `(lambda *) P theta_d` since the values last
    written (`written_theta_d`, `written_lambdas`) into the base variables
    of `subspace_map` (a `SubspaceMap`), then records the new values as
    written (and, with a kept `P theta_d`, makes it again)."""
    p, sizes = subspace_map.projection, subspace_map.sizes
    variables = subspace_map.variables
    theta_d = tf.convert_to_tensor(theta_d)
    old = tf.convert_to_tensor(written_theta_d)
    delta = theta_d - old
    if lambdas is None:
        after = add_pieces(variables, projected_pieces(p, delta, sizes), [])
        with tf.control_dependencies(after):
            written_theta_d.assign(theta_d)
        return
    lambdas = tf.convert_to_tensor(lambdas)
    change = lambdas - tf.convert_to_tensor(written_lambdas)
    offset = subspace_map.offset
    if offset is None:  # (lambda' - lambda) P theta_d, a product again
        first = projected_pieces(p, old, sizes, change)
    else:  # the kept P theta_d
        first = _scaled(tf.split(tf.convert_to_tensor(offset), sizes), change)
    after = add_pieces(variables, first, [])
    after = add_pieces(variables, projected_pieces(p, delta, sizes, lambdas), after)
    with tf.control_dependencies(after):
        written_theta_d.assign(theta_d)
        written_lambdas.assign(lambdas)
        if offset is not None:
            offset.assign(p(theta_d))


def recovered_theta_0(model: Any) -> list[np.ndarray]:
    """theta_0 of a model that does not hold it, piece by piece (one array
    per base variable): `W_t - lambda_t (P theta_d)_t` of the values last
    written, equal to the weights when wrapped up to W's drift."""
    m = model._map
    scales = None
    if model.structure_aware:
        scales = -tf.convert_to_tensor(model.written_lambdas)
    else:
        scales = -tf.ones([len(m.sizes)])
    pieces = projected_pieces(m.projection, model.written_theta_d, m.sizes, scales)
    out = []
    for v in m.variables:
        piece = tf.reshape(next(pieces), v.shape) + tf.cast(v.value, tf.float32)
        out.append(np.asarray(piece.numpy(), np.float32))
    return out


def theta_0_pieces(model: Any, include_base: bool) -> list[np.ndarray]:
    """`save_compact`'s theta_0, piece by piece: the model's, or, where it holds none
    (`keep_theta_0=False`), recovered from the weights (`W - lambda P
    theta_d`, up to their drift), which a file without its base cannot use:
    its fingerprint must be that of the base it adapts."""
    if model.keep_theta_0:
        return split(keras.ops.convert_to_numpy(model.theta_0), model.base_variables)
    if not include_base:
        raise ValueError(
            "A compact file without its base needs theta_0's exact "
            "fingerprint, and this model holds no theta_0 "
            "(`keep_theta_0=False`): recovered from its weights, theta_0 "
            "differs from the base's by rounding. Pass `include_base=True` "
            "(the file then holds the recovered theta_0), or wrap with "
            "`keep_theta_0=True`. Received: `include_base=False`"
        )
    return recovered_theta_0(model)
