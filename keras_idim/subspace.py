"""`SubspaceModel`: train a built Keras model only in a random subspace."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_idim import _compat, lora, spaces
from keras_idim import projections as projections_module
from keras_idim.projections.base import Projection
from keras_idim.utils.io import check_target, staged
from keras_idim.utils.validation import (
    check_bool,
    check_positive_int,
    check_seed,
    is_number,
)

#: Version of a SubspaceModel's saved form: its config (`format_version`)
#: and the variables it saves. A config without `format_version` is of
#: version 1 (keras_idim 0.1.0); version 2 adds the field.
FORMAT_VERSION = 2


class _BaseVariables:
    """The base model's trainable variables at wrap time, in order.

    A plain holder, so that Keras' attribute tracking does not count the
    base model's variables a second time as variables of the wrapper.
    """

    def __init__(self, variables: list):
        self.variables = list(variables)
        self.shapes = [tuple(v.shape) for v in self.variables]
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]


class _Holder:
    """One variable, held where Keras' attribute tracking does not see it
    (so that it is neither a weight of the model nor saved)."""

    def __init__(self, variable):
        self.variable = variable


#: The attribute that marks a base model as wrapped by a SubspaceModel.
_WRAPPED = "_keras_idim_wrapped"


class _LoraLayerWeights(_compat.keras_saveable()):
    """The own weights (kernel, bias) of the base model's LoRA layers, saved
    and loaded as they are, beside the model's other variables.

    Keras saves a LoRA layer's kernel merged with its adapters, W + (alpha /
    r) A B, and zeroes A and B when it loads one. A loaded subspace model
    would then add its adapters (theta_0 + P theta_d) to a kernel that
    already holds them, and its frozen W would be lost. Keras loads this
    object after the model's sublayers (a private attribute): it writes the
    original weights back and the adapters from theta_d.
    """

    def __init__(self, model: SubspaceModel):
        self._model = _Holder(model)

    def _obj_type(self) -> str:
        # The kind whose attributes Keras' saving walk skips; it accepts
        # only its own kinds, and this object has nothing more to walk.
        return "Loss"

    def _variables(self) -> list:
        return [
            v
            for layer in lora.lora_layers(self._model.variable.base_model)
            for v in layer.weights
            if not lora.is_lora(v)
        ]

    def save_own_variables(self, store: Any) -> None:
        for i, v in enumerate(self._variables()):
            store[str(i)] = keras.ops.convert_to_numpy(v)

    def load_own_variables(self, store: Any) -> None:
        variables = self._variables()
        if len(store.keys()) != len(variables):  # a file from before
            return
        for i, v in enumerate(variables):
            v.assign(store[str(i)])
        self._model.variable.sync_base_weights()


@keras.saving.register_keras_serializable(package="keras_idim")
class SubspaceModel(keras.Model):
    """Trains a built Keras model only in a random d-dimensional subspace.

    The base model's D trainable weights become
    `theta = theta_0 + P @ theta_d`, where `theta_0` holds their values when
    wrapped (a random init, or pretrained weights to measure the intrinsic
    dimension of fine-tuning), `P` is a fixed random D x d projection
    regenerated from `seed`, and `theta_d`, initialised to zeros, is the only
    trainable vector. Plain `compile`/`fit` then train `theta_d` alone: the
    optimizer holds slots for d numbers, not D.

    Each training step takes the gradient of the loss with respect to the
    base weights, maps it to the subspace with the transposed projection
    (`P^T g`, one pass of the projection), lets the optimizer update
    `theta_d`, and writes `theta_0 + P theta_d` back into the base model's
    variables: two passes of the projection per step. So after every step
    the base model's own variables hold the current weights, and `predict`,
    `evaluate`, `base_model(x)` and export need nothing special. Layers keep
    their training behaviour: Dropout drops, BatchNormalization uses batch
    statistics and updates its moving statistics.

    With `structure_aware=True` (SAID, Aghajanyan et al. 2020), each weight
    tensor t of the base model gets a trainable scale `lambda_t` (initialised
    to 1): `theta_i = theta_0,i + lambda_t(i) * (P theta_d)_i`; `theta_d` then
    has `dim - m` entries (m tensors), so that exactly `dim` numbers train.

    The weights that the subspace moves are those of a *space* (see
    `keras_idim.spaces`): by default every trainable weight of the base
    model (D of them), or a subset (`Weights(include=["*bias"])`), or the
    LoRA adapters of its layers (`"lora:4"`: theta_0 is the adapters'
    initialisation, A random from `seed` and B zero, so that theta_d = 0 is
    the base model's function, and the layers' own weights stay frozen).

    Wrapping changes the caller's `base_model`: a LoRA space enables LoRA
    on its layers (Keras' `enable_lora`), every weight outside the space is
    frozen, and each weight of the space is then marked `trainable = False`
    too (the layers themselves stay trainable, so that BatchNormalization
    still runs in training mode during `fit`). A base model can be wrapped
    once.

    It runs on Keras' TensorFlow backend only: with another
    (`KERAS_BACKEND=jax`), building one raises a `RuntimeError` that says so.

    Args:
        base_model: keras.Model. A built model (called on data, or built with
            an input shape) with at least one trainable weight.
        dim: int. d, the number of trainable parameters of the subspace.
        projection: str or `Projection`. `"fastfood"`, `"dense"`,
            `"sparse"` or `"unilora"`; a `Projection` subclass; or an
            instance of shape
            (D, d) (or (D, d - m) with `structure_aware`), whose own seed
            is then used. Defaults to `"fastfood"`.
        seed: int. Seed of the projection, and, in a LoRA space, of the
            adapters' A matrices that wrapping enables (see
            `keras_idim.spaces.LoRA`): the same base weights, space and seed
            give the same theta_0 in any process. Defaults to `0`.
        structure_aware: bool. Use SAID's per-tensor scales. Defaults to
            `False`.
        projection_kwargs: dict. Extra arguments of the projection class,
            e.g. `{"memory_budget": 2**30, "over_budget": "raise"}` for
            `"dense"`. Defaults to `None`.
        said_learning_rate: float or None. With `structure_aware=True`, the
            learning rate of the per-tensor scales, which train with a copy
            of the compiled optimizer (see `compile`). `None`: the compiled
            optimizer's rate times `sqrt(dim / D)`. Defaults to `None`.
        space: str, dict, `keras_idim.spaces.Space` or None. The weights
            that theta_d moves (see `keras_idim.spaces.get`): `None` or
            `"weights"`, every trainable weight; `"lora:RANK"`, LoRA
            adapters; a `Weights(include=..., exclude=...)` subset. D
            (`full_dim`) counts the space's weights. Defaults to `None`.
        **kwargs: Passed to `keras.Model` (e.g. `name`).

    Example:

    >>> base = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    >>> model = SubspaceModel(base, dim=5, projection="dense", seed=0)
    >>> model.full_dim, [v.shape for v in model.trainable_variables]
    (27, [(5,)])
    >>> model.compile(optimizer="adam", loss="mse")
    """

    def __init__(
        self,
        base_model: keras.Model,
        dim: int,
        projection: str | Projection | type[Projection] = "fastfood",
        seed: int = 0,
        structure_aware: bool = False,
        projection_kwargs: dict | None = None,
        said_learning_rate: float | None = None,
        space: str | dict | spaces.Space | None = None,
        **kwargs: Any,
    ):
        # Validate everything before any work.
        _compat.check_backend("a SubspaceModel")
        if not isinstance(base_model, keras.Model):
            raise ValueError(
                "`base_model` should be a `keras.Model`. "
                f"Received: `base_model={base_model!r}` "
                f"of type {type(base_model).__name__}"
            )
        if isinstance(base_model, SubspaceModel):
            raise ValueError(
                f"`base_model` ({base_model.name!r}) is already a SubspaceModel: "
                "wrapping it again would train nothing (its only weights are "
                "theta_d). Wrap its base network instead: "
                "`SubspaceModel(model.base_model, dim)` (theta_0 is then the "
                "base's current weights, theta_0 + P theta_d of the old model)."
            )
        if not base_model.built:
            raise ValueError(
                f"`base_model` ({base_model.name!r}) is not built: its "
                "weights do not exist yet. Build it first, e.g. with "
                "`base_model.build(input_shape)` or by calling it on a batch "
                "of data, or give it a `keras.Input`."
            )
        dim = check_positive_int("dim", dim)
        seed = check_seed(seed)
        structure_aware = check_bool("structure_aware", structure_aware)
        if said_learning_rate is not None and (
            not structure_aware
            or not is_number(said_learning_rate)
            or not 0 < said_learning_rate < float("inf")
        ):
            raise ValueError(
                "`said_learning_rate` should be a positive number (the rate of "
                "SAID's per-tensor scales), and only with "
                "`structure_aware=True`. Received: "
                f"`said_learning_rate={said_learning_rate!r}` with "
                f"`structure_aware={structure_aware}`"
            )
        if not isinstance(projection, Projection):
            projection_cls = projections_module.get(projection)
        if projection_kwargs is not None and (
            not isinstance(projection_kwargs, dict)
            or isinstance(projection, Projection)
        ):
            raise ValueError(
                "`projection_kwargs` should be a dict of arguments of the "
                "projection class, and only with a projection name or class. "
                f"Received: `projection_kwargs={projection_kwargs!r}`"
            )
        space = spaces.get(space)
        no_weights = ValueError(
            f"`base_model` ({base_model.name!r}) has no trainable "
            "weights, so there is nothing to train in a subspace (was "
            "it already wrapped by a SubspaceModel, or frozen?)."
        )
        if getattr(base_model, _WRAPPED, False):
            raise no_weights
        if isinstance(projection, Projection):
            seed = projection.seed
        # The space's new weights (LoRA's A) are drawn from the seed too.
        base_vars = _BaseVariables(space.prepare(base_model, seed=seed))
        if not base_vars.variables:
            raise no_weights
        # The space's name in errors; today's wording for the default.
        in_space = "" if space == spaces.Weights() else f" in the space {space.spec!r}"
        num_tensors = len(base_vars.variables)
        if structure_aware and dim <= num_tensors:
            raise ValueError(
                "With `structure_aware=True`, `dim` should exceed the number "
                f"of trainable weight tensors of the base model{in_space} "
                f"({num_tensors}), one scale each. Received: `dim={dim}`"
            )
        full_dim = sum(base_vars.sizes)
        if dim > full_dim:
            raise ValueError(
                f"`dim` should be at most D={full_dim:,}, the number of "
                f"trainable weights of `base_model` ({base_model.name!r})"
                f"{in_space}: a larger subspace cannot reach more of the "
                f"weight space. Received: `dim={dim}`"
            )
        sub_dim = dim - num_tensors if structure_aware else dim
        if isinstance(projection, Projection):
            if (projection.full_dim, projection.dim) != (full_dim, sub_dim):
                raise ValueError(
                    f"`projection` should map R^{sub_dim} to R^{full_dim} for "
                    f"this base model and `dim`. Received: `projection={projection!r}`"
                )
        else:
            try:
                projection = projection_cls(
                    full_dim, sub_dim, seed=seed, **(projection_kwargs or {})
                )
            except TypeError as e:
                raise ValueError(
                    f"`projection_kwargs` do not fit {projection_cls.__name__}"
                    f": {e}. Received: `projection_kwargs={projection_kwargs!r}`"
                ) from None

        super().__init__(**kwargs)
        self.base_model = base_model
        self.space = space
        self.dim = dim
        self.full_dim = full_dim
        self.seed = seed
        self.structure_aware = structure_aware
        self.said_learning_rate = (
            None if said_learning_rate is None else float(said_learning_rate)
        )
        self._said_optimizer = None
        self.projection = projection
        self._base = base_vars
        # The format version of the config this model was loaded from (see
        # `from_config`); `None` when built in code.
        self._loaded_format: int | None = None
        # XLA cannot compile tf.sparse ops, nor Fastfood's compiled kernel:
        # Keras then refuses jit_compile.
        self.supports_jit = projection.supports_xla

        # Initialised with the joined weights themselves: a zero variable
        # assigned afterwards would hold a second (D,) buffer for a moment.
        self.theta_0 = self.add_weight(
            shape=(full_dim,),
            initializer=lambda shape, dtype: tf.concat(
                [tf.reshape(tf.cast(v, tf.float32), [-1]) for v in base_vars.variables],
                axis=0,
            ),
            trainable=False,
            name="theta_0",
        )
        self.theta_d = self.add_weight(
            shape=(sub_dim,),
            initializer="zeros",
            trainable=True,
            name="theta_d",
        )
        if structure_aware:
            self.lambdas = self.add_weight(
                shape=(num_tensors,),
                initializer="ones",
                trainable=True,
                name="said_lambdas",
            )
            # P theta_d, kept for the gradient of the lambdas where the
            # projection cannot make it again on the fly (`fuses_pieces`:
            # Fastfood gives those dot products beside its transpose, the
            # kernel in its pass, the TensorFlow ops group by group). It
            # follows from theta_d, so it is not a weight of the
            # model and not saved (`load_own_variables` reads files that
            # hold it).
            self._offset = (
                None
                if projection.fuses_pieces
                else _Holder(
                    keras.Variable(tf.zeros([full_dim]), trainable=False, name="offset")
                )
            )
        for v in base_vars.variables:
            v.trainable = False
        object.__setattr__(base_model, _WRAPPED, True)
        if lora.lora_layers(base_model):
            self._lora_layer_weights = _LoraLayerWeights(self)
        self.built = True

    @property
    def base_variables(self) -> list:
        """The base model's weights that the subspace drives, in P's order.

        These were the base model's trainable variables when it was wrapped
        (now marked non-trainable); the rows of P follow this order, each
        variable flattened row-major.
        """
        return list(self._base.variables)

    @property
    def state_variables(self) -> list:
        """The base model's other variables, which the subspace does not
        drive (e.g. BatchNorm moving statistics; none for most models): with
        the seed and theta_d, what a saved subspace model must keep."""
        wrapped = {id(v) for v in self._base.variables}
        return [v for v in self.base_model.weights if id(v) not in wrapped]

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.base_model(inputs, training=training)

    # -- the subspace map ------------------------------------------------

    def _per_tensor(self, flat: tf.Tensor) -> list[tf.Tensor]:
        """A (full_dim,) tensor cut into one flat piece per base tensor."""
        return tf.split(flat, self._base.sizes)

    def sync_base_weights(self) -> None:
        """Writes `theta_0 + P theta_d` into the base model's variables.

        Runs after every training step (one pass of the projection); call it
        yourself only after assigning `theta_d` (or the lambdas) by hand.
        With SAID, tensor t gets `theta_0,t + lambda_t (P theta_d)_t`: each
        piece is scaled on its own, so that no tensor larger than D is ever
        built (a per-weight (D,) scale from `tf.repeat` tiled to (number of
        tensors) x (largest tensor) floats). The sum comes from the
        projection's own pass (`Projection.affine_pieces`; Fastfood's
        TensorFlow ops make each piece when it is asked for, a group of rows
        at a time). The variables are written one at a time, each piece made
        after the last was written.
        """
        theta_d = tf.convert_to_tensor(self.theta_d)
        theta_0 = tf.convert_to_tensor(self.theta_0)
        if self.structure_aware and self._offset is not None:
            # P theta_d, kept for the lambdas' gradient, and read back from
            # the variable: the product's own buffer is then free at once.
            offset_var = self._offset.variable
            offset_var.assign(self.projection(theta_d))
            with tf.control_dependencies([offset_var.value]):
                offset = tf.convert_to_tensor(offset_var)
            pieces = zip(
                self._per_tensor(theta_0),
                tf.unstack(tf.convert_to_tensor(self.lambdas)),
                self._per_tensor(offset),
            )
            theta = (base + lam * u for base, lam, u in pieces)
        else:
            # theta_0 + (lambda *) P theta_d, piece by piece as the
            # projection makes them (one pass; Fastfood's TensorFlow ops
            # make each piece when it is asked for, group by group).
            theta = self.projection.affine_pieces(
                theta_d,
                theta_0,
                self._base.sizes,
                self.lambdas if self.structure_aware else None,
            )
        # One tensor at a time: each piece is made after the last one is
        # written, so that the pieces never add up to another (D,) tensor.
        written = []
        for v, shape in zip(self._base.variables, self._base.shapes):
            with tf.control_dependencies(written[-1:]):
                piece = tf.reshape(next(theta), shape)
                written.append(v.value.assign(tf.cast(piece, v.dtype)))

    def subspace_gradients(self, grads: list) -> list[tf.Tensor]:
        """Maps gradients w.r.t. the base weights to the trainable variables.

        Args:
            grads: list. One gradient (or `None`) per base trainable
                variable, in the order of `base_model`'s trainable variables
                at wrap time.

        Returns:
            Gradients for `self.trainable_variables`: `[P^T g]`, and with
            SAID `[P^T (lambda * g), sum_t(g * P theta_d)]`.
        """
        pieces = [
            tf.zeros([n], tf.float32)
            if g is None
            else tf.reshape(tf.cast(tf.convert_to_tensor(g), tf.float32), [-1])
            for g, n in zip(grads, self._base.sizes)
        ]
        if not self.structure_aware:
            return [self.projection.transpose_pieces(pieces)]
        # Per tensor: d/dlambda_t = g_t . (P theta_d)_t; the chain rule to
        # theta_d carries lambda_t * g_t.
        if self._offset is None:  # both from one pass of the projection
            return list(
                self.projection.transpose_and_dots(pieces, self.lambdas, self.theta_d)
            )
        # Scaled piece by piece (see `sync_base_weights`).
        lambdas = tf.unstack(tf.convert_to_tensor(self.lambdas))
        offsets = self._per_tensor(tf.convert_to_tensor(self._offset.variable))
        # Dot products (no product tensor made); and only then the scaling,
        # which may then write into each gradient's own buffer.
        grad_lambdas = tf.stack(
            [tf.tensordot(g, u, axes=1) for g, u in zip(pieces, offsets)]
        )
        with tf.control_dependencies([grad_lambdas]):
            scaled = [lam * g for lam, g in zip(lambdas, pieces)]
        return [self.projection.transpose_pieces(scaled), grad_lambdas]

    def load_own_variables(self, store: Any) -> None:
        # The variables of version 1 (a config without `format_version`) of
        # a SAID model may hold P theta_d as a fourth variable, after
        # theta_d, the lambdas and theta_0: it is dropped and made again
        # from theta_d. A model built in code reads a weights file, which
        # carries no version: there the fourth variable tells the layout.
        # A version 2 config never has it.
        own = 3 if self.structure_aware else 2  # theta_d, lambdas, theta_0
        if (
            self.structure_aware
            and self._loaded_format in (None, 1)
            and len(store.keys()) == own + 1
        ):
            store = {str(i): store[str(i)] for i in range(own)}
        super().load_own_variables(store)
        if self.structure_aware and self._offset is not None:
            self._offset.variable.assign(self.projection(self.theta_d))

    # -- training ----------------------------------------------------------

    def compile(self, optimizer: Any = "rmsprop", *args: Any, **kwargs: Any) -> None:
        """`keras.Model.compile`; with SAID, the scales also get an optimizer
        of their own: a copy of `optimizer` at `said_learning_rate`, or, by
        default, at `optimizer`'s rate times `sqrt(dim / full_dim)`.

        A step of size r on each scale changes the whole of its tensor's
        offset by a factor 1 + r, while a step of size r on each of the d
        coordinates of theta_d moves each weight by about r * sqrt(d / D)
        (unit-norm columns): at theta_d's rate the m scales would move the
        weights far more than theta_d does, and flip sign. The copy's state
        is not saved with the model: after loading, the scales' optimizer
        starts afresh."""
        super().compile(optimizer, *args, **kwargs)
        self._said_optimizer = None
        if not self.structure_aware or self.optimizer is None:
            return
        config = keras.optimizers.serialize(self.optimizer)
        main = config["config"].get("learning_rate")
        said = keras.optimizers.deserialize(config)
        if self.said_learning_rate is not None or is_number(main):
            said.learning_rate = self.said_rate(main)
        # else a schedule: the scales follow it as it is
        said.build([self.lambdas])
        self._said_optimizer = _Holder(said)
        # Built over every trainable variable, as Keras builds it (its slots
        # for the scales stay unused): saved files keep one layout.
        if not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config: dict) -> None:
        """Compiles a loaded model as it was (`compile` is this class's own)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def said_rate(self, rate: float) -> float:
        """The scales' rate when theta_d's is `rate`: `said_learning_rate`,
        or by default `rate * sqrt(dim / full_dim)`."""
        if self.said_learning_rate is not None:
            return self.said_learning_rate
        return float(rate) * math.sqrt(self.dim / self.full_dim)

    @property
    def said_optimizer(self):
        """The optimizer of SAID's scales (see `compile`), or `None`."""
        return None if self._said_optimizer is None else self._said_optimizer.variable

    def train_step(self, data: Any) -> dict:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        # The tf.Variables behind the base model's (non-trainable) weights.
        base_vars = [v.value for v in self._base.variables]
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(base_vars)
            y_pred = self(x, training=True)
            loss = self.compute_loss(
                x=x,
                y=y,
                y_pred=y_pred,
                sample_weight=sample_weight,
                training=True,
            )
            batch_size = tf.shape(next(i for i in tf.nest.flatten(x) if i is not None))[
                0
            ]
            _compat.loss_tracker(self).update_state(
                _compat.unscale_loss_for_distribution(loss), sample_weight=batch_size
            )
            loss = self.optimizer.scale_loss(loss)
        grads = tape.gradient(loss, base_vars)
        grads = self.subspace_gradients(grads)
        if self._said_optimizer is None:
            self.optimizer.apply(grads, self.trainable_variables)
        else:  # SAID's scales at their own rate
            self.optimizer.apply(grads[:1], [self.theta_d])
            self._said_optimizer.variable.apply(grads[1:], [self.lambdas])
        self.sync_base_weights()
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    # -- export --

    def export(
        self,
        filepath: str,
        format: str = "tf_saved_model",
        verbose: bool | None = None,
        input_signature: Any = None,
        overwrite: bool = False,
        **kwargs: Any,
    ) -> str:
        """Exports the trained network as a TensorFlow SavedModel.

        The base network with its materialised weights (`theta_0 + P
        theta_d`, written after every training step): the projection is
        not part of the graph, and serving needs TensorFlow alone (see
        `keras_idim.export_saved_model`). The SavedModel has the `serve`
        endpoint (and `serving_default`) of `keras.Model.export`, in
        inference mode. It is written to a temporary folder beside
        `filepath` and moved into place: a failed export leaves nothing
        at `filepath`, and an existing export is kept.

        Args:
            filepath: str. The SavedModel folder to create.
            format: str. Only `"tf_saved_model"`. Defaults to it.
            verbose: bool or None. Print the folder written, as Keras'
                `export` does (`None`, Keras' default, prints). Keras'
                own lines would name the temporary folder, so they are
                not shown.
            input_signature: Optional input signature, as for
                `keras.Model.export`.
            overwrite: bool. Replace an existing SavedModel folder (one
                holding `saved_model.pb`); any other folder is refused.
                Defaults to `False`.
            **kwargs: Not accepted; named in the error.

        Returns:
            The path written.
        """
        if format != "tf_saved_model" or kwargs:
            raise ValueError(
                "`SubspaceModel.export` writes TensorFlow SavedModels only "
                "(`format='tf_saved_model'`); for the compact form use "
                "`keras_idim.save_compact`. Received: "
                f"`format={format!r}`{', ' + str(kwargs) if kwargs else ''}"
            )
        filepath = check_target(
            filepath, overwrite, arg="filepath", folder_marker="saved_model.pb"
        )
        with staged(filepath) as tmp:
            self.base_model.export(
                tmp,
                format="tf_saved_model",
                verbose=False,  # it would name `tmp`
                input_signature=input_signature,
            )
        if verbose is None or verbose:
            print(f"Saved artifact at '{filepath}'.")
        return filepath

    # -- serialisation -----------------------------------------------------

    def get_config(self) -> dict:
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "base_model": keras.saving.serialize_keras_object(self.base_model),
            "dim": self.dim,
            "seed": self.seed,
            "structure_aware": self.structure_aware,
            "projection": keras.saving.serialize_keras_object(self.projection),
            "format_version": FORMAT_VERSION,
        }
        if self.said_learning_rate is not None:  # as files before it had it
            config["said_learning_rate"] = self.said_learning_rate
        if self.space != spaces.Weights():  # as files before it had it
            config["space"] = self.space.get_config()
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> SubspaceModel:
        """Rebuilds a SubspaceModel from `get_config`'s dict, of any format
        version up to `FORMAT_VERSION` (no `format_version`: version 1).

        Raises:
            ValueError: a format version this keras_idim does not read.
        """
        config = dict(config)
        version = config.pop("format_version", 1)
        if isinstance(version, bool) or version not in range(1, FORMAT_VERSION + 1):
            raise ValueError(
                f"This SubspaceModel was saved in format version {version!r}; "
                f"this keras_idim reads versions 1 to {FORMAT_VERSION}. Load it "
                "with the keras_idim that saved it, or a newer one."
            )
        config["base_model"] = keras.saving.deserialize_keras_object(
            config["base_model"], custom_objects=custom_objects
        )
        if isinstance(config["projection"], dict):
            config["projection"] = keras.saving.deserialize_keras_object(
                config["projection"], custom_objects=custom_objects
            )
        model = cls(**config)
        model._loaded_format = version
        return model
