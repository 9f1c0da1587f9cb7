"""`SubspaceModel`: train a built Keras model only in a random subspace."""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from keras_idim import _compat, lora, spaces
from keras_idim.projections.base import Projection
from keras_idim.subspace_checks import WRAPPED, check_arguments
from keras_idim.subspace_in_place import check_keep_theta_0, write_increment
from keras_idim.subspace_map import SubspaceMap, scales_optimizer
from keras_idim.subspace_saving import (  # FORMAT_VERSION: re-exported
    FORMAT_VERSION,  # noqa: F401
    LoraLayerWeights,
    Unsaved,
    export_base,
    init_arguments,
    make_own_variables,
    model_config,
    own_variables,
)
from keras_idim.utils.exports import keras_idim_export


@keras_idim_export("keras_idim.SubspaceModel")
class SubspaceModel(keras.Model):
    """Trains a built Keras model only in a random d-dimensional subspace.

    The base model's D trainable weights become
    `theta = theta_0 + P @ theta_d`, where `theta_0` holds their values when
    wrapped (a random init, or pretrained weights to measure the intrinsic
    dimension of fine-tuning), `P` is a fixed random D x d projection
    regenerated from `seed`, and `theta_d`, initialised to zeros, is the only
    trainable vector. Plain `compile`/`fit` then train `theta_d` alone: the
    optimizer holds slots for d numbers, not D.

    Each training step maps the gradient of the loss with respect to the
    base weights to the subspace (`P^T g`), lets the optimizer update
    `theta_d`, and writes `theta_0 + P theta_d` back into the base model's
    variables (`sync_base_weights`): two passes of the projection per step.
    So the base model's own variables hold the current weights, and
    `predict`, `evaluate`, `base_model(x)` and export need nothing special.
    Layers keep their training behaviour: Dropout drops, BatchNormalization
    uses batch statistics and updates its moving statistics.

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
        keep_theta_0: bool. `True`: hold theta_0, a (D,) variable, and
            write `theta_0 + P theta_d` after each step. `False`: hold no
            theta_0 (D floats fewer, for models of 10^9 weights): the base
            weights as wrapped are theta_0, and each step adds `lambda' P
            theta_d' - lambda P theta_d` since the values last written
            (kept in two small variables) piece by piece into them
            (`keras_idim.subspace_in_place`); gradients are the same.
            The weights then drift from `theta_0 + P theta_d` by one
            float32 rounding per add (one a step, two with SAID): at most
            N ulp(max|W|) / 2 after N adds, about sqrt(N) ulp typically.
            Needs float32 (or float64) weights. `save_compact` then stores
            theta_0 recovered from the weights (`include_base=True` only).
            Defaults to `True`.
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
        keep_theta_0: bool = True,
        **kwargs: Any,
    ):
        # Validate everything before any work.
        check_keep_theta_0(keep_theta_0)
        args = check_arguments(
            base_model,
            dim,
            projection,
            seed,
            structure_aware,
            projection_kwargs,
            said_learning_rate,
            space,
            wrapper=SubspaceModel,
        )
        self.keep_theta_0 = check_keep_theta_0(keep_theta_0, args.variables)
        super().__init__(**kwargs)
        self.base_model = base_model
        self.space = args.space
        self.dim = args.dim
        self.full_dim = args.full_dim
        self.seed = args.seed
        self.structure_aware = args.structure_aware
        self.said_learning_rate = args.said_learning_rate
        self._said_optimizer = None
        self.projection = args.projection
        self._map = SubspaceMap(args.projection, args.variables, args.structure_aware)
        # The format version it was loaded from (`from_config`); None in code.
        self._loaded_format: int | None = None
        # XLA cannot compile tf.sparse ops, nor Fastfood's compiled kernel:
        # Keras then refuses jit_compile.
        self.supports_jit = args.projection.supports_xla
        make_own_variables(self, args)
        for v in args.variables:
            v.trainable = False
        object.__setattr__(base_model, WRAPPED, True)
        if lora.lora_layers(base_model):
            self._lora_layer_weights = LoraLayerWeights(
                base_model, self.sync_base_weights, not self.keep_theta_0
            )
        self.built = True

    @property
    def base_variables(self) -> list:
        """The base model's weights that the subspace drives, in P's order.

        These were the base model's trainable variables when it was wrapped
        (now marked non-trainable); the rows of P follow this order, each
        variable flattened row-major.
        """
        return list(self._map.variables)

    @property
    def state_variables(self) -> list:
        """The base model's other variables, which the subspace does not
        drive (e.g. BatchNorm moving statistics; none for most models): with
        the seed and theta_d, what a saved subspace model must keep."""
        wrapped = {id(v) for v in self._map.variables}
        return [v for v in self.base_model.weights if id(v) not in wrapped]

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.base_model(inputs, training=training)

    # -- the subspace map (see `keras_idim.subspace_map`) ------------------

    @property
    def _offset(self):
        """With SAID, the kept P theta_d, or `None` (see `SubspaceMap`)."""
        return self._map.offset

    def sync_base_weights(self) -> None:
        """Writes `theta_0 + P theta_d` into the base model's variables.

        Runs after every training step (one pass of the projection); call it
        yourself only after assigning `theta_d` (or the lambdas) by hand.
        With `keep_theta_0=False` it adds the change since the values last
        written instead (one pass, two with SAID).
        With SAID, tensor t gets `theta_0,t + lambda_t (P theta_d)_t`, each
        piece scaled on its own. The variables are written one at a time,
        each piece made after the last was written, so that no second
        tensor of D floats is built (see `SubspaceMap.write`).
        """
        lambdas = self.lambdas if self.structure_aware else None
        if self.keep_theta_0:
            self._map.write(self.theta_0, self.theta_d, lambdas)
        else:  # the change since the values last written
            written = self.written_lambdas if self.structure_aware else None
            write_increment(
                self._map, self.theta_d, self.written_theta_d, lambdas, written
            )

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
        lambdas = self.lambdas if self.structure_aware else None
        return self._map.pull_back(grads, self.theta_d, lambdas)

    def load_own_variables(self, store: Any) -> None:
        # Version 1's layout may hold one more variable (see
        # `subspace_saving.own_variables`).
        if self.keep_theta_0:
            store = own_variables(store, self.structure_aware, self._loaded_format)
        super().load_own_variables(store)
        self._map.update_offset(
            self.theta_d if self.keep_theta_0 else self.written_theta_d
        )

    # -- training ----------------------------------------------------------

    def compile(self, optimizer: Any = "rmsprop", *args: Any, **kwargs: Any) -> None:
        """`keras.Model.compile`; with SAID, the scales also get an optimizer
        of their own: a copy of `optimizer` at `said_learning_rate`, or, by
        default, at `optimizer`'s rate times `sqrt(dim / full_dim)` (see
        `keras_idim.subspace_map.scales_optimizer`). The copy's state is not
        saved with the model: after loading, the scales' optimizer starts
        afresh."""
        super().compile(optimizer, *args, **kwargs)
        self._said_optimizer = None
        if not self.structure_aware or self.optimizer is None:
            return
        said = scales_optimizer(
            self.optimizer,
            self.lambdas,
            self.said_rate,
            fixed=self.said_learning_rate is not None,
        )
        self._said_optimizer = Unsaved(optimizer=said)
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
        return None if self._said_optimizer is None else self._said_optimizer.optimizer

    def train_step(self, data: Any) -> dict:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        # The tf.Variables behind the base model's (non-trainable) weights.
        base_vars = [v.value for v in self._map.variables]
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
            first = next(i for i in tf.nest.flatten(x) if i is not None)
            batch_size = tf.shape(first)[0]
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
            self._said_optimizer.optimizer.apply(grads[1:], [self.lambdas])
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
        return export_base(
            self.base_model,
            filepath,
            format,
            verbose,
            input_signature,
            overwrite,
            kwargs,
        )

    # -- serialisation -----------------------------------------------------

    def get_config(self) -> dict:
        return model_config(self)

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> SubspaceModel:
        """Rebuilds a SubspaceModel from `get_config`'s dict, of any format
        version this keras_idim reads (no `format_version`: version 1; see
        `keras_idim.subspace_saving.check_format_version`).

        Raises:
            ValueError: a format version this keras_idim does not read.
        """
        config, version = init_arguments(config, custom_objects)
        model = cls(**config)
        model._loaded_format = version
        return model
