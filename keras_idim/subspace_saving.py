"""What a `SubspaceModel` writes and reads besides its config's numbers.

- Its format version (`FORMAT_VERSION`), checked when a config is loaded,
  and the variables of version 1's layout.
- `LoraLayerWeights`: the own weights of the base model's LoRA layers.
  Keras saves a LoRA layer's kernel merged with its adapters, W + (alpha /
  r) A B, and zeroes A and B when it loads one. A loaded subspace model
  would then add its adapters (theta_0 + P theta_d) to a kernel that
  already holds them, and its frozen W would be lost. This object, in a
  private attribute of the SubspaceModel, saves the layers' own weights
  (kernel, bias) as they are; Keras loads it after the model's sublayers,
  and it writes them back and the adapters again from theta_d.
- `export_base`: the base network as a TensorFlow SavedModel, staged.
- `Unsaved`: a holder of what a model must neither track nor save.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from keras_idim import _compat, lora, spaces
from keras_idim.utils.io import check_target, staged

#: Version of a SubspaceModel's saved form: its config (`format_version`)
#: and the variables it saves. A config without `format_version` is of
#: version 1 (keras_idim 0.1.0); version 2 adds the field.
FORMAT_VERSION = 2
#: The version of a model that holds no theta_0 (`keep_theta_0=False`, its
#: config's key): its variables are theta_d, the lambdas, and their values
#: last written; a keras_idim that reads up to version 2 refuses it.
IN_PLACE_FORMAT_VERSION = 3


def check_format_version(config: dict) -> tuple[dict, int]:
    """(`config` without its `format_version`, that version: 1 where it has
    none); refuses a version this keras_idim does not read (3 only with
    `keep_theta_0=False`, which no older config has)."""
    config = dict(config)
    version = config.pop("format_version", 1)
    newest = FORMAT_VERSION
    if config.get("keep_theta_0") is False:
        newest = IN_PLACE_FORMAT_VERSION
    if isinstance(version, bool) or version not in range(1, newest + 1):
        raise ValueError(
            f"This SubspaceModel was saved in format version {version!r}; "
            f"this keras_idim reads versions 1 to {FORMAT_VERSION} (and "
            f"{IN_PLACE_FORMAT_VERSION} with `keep_theta_0=False`). Load it "
            "with the keras_idim that saved it, or a newer one."
        )
    return config, version


def model_config(model: Any) -> dict:
    """`SubspaceModel.get_config`: its arguments, and its format version."""
    config = {
        "name": model.name,
        "trainable": model.trainable,
        "base_model": keras.saving.serialize_keras_object(model.base_model),
        "dim": model.dim,
        "seed": model.seed,
        "structure_aware": model.structure_aware,
        "projection": keras.saving.serialize_keras_object(model.projection),
        "format_version": FORMAT_VERSION,
    }
    if model.said_learning_rate is not None:  # as files before it had it
        config["said_learning_rate"] = model.said_learning_rate
    if model.space != spaces.Weights():  # as files before it had it
        config["space"] = model.space.get_config()
    if not model.keep_theta_0:  # as files before it had it
        config["keep_theta_0"] = False
        config["format_version"] = IN_PLACE_FORMAT_VERSION
    return config


def init_arguments(config: dict, custom_objects: Any = None) -> tuple[dict, int]:
    """(A SubspaceModel's arguments from `config`, of any version that this
    keras_idim reads, its format version); see `check_format_version`."""
    config, version = check_format_version(config)
    config["base_model"] = keras.saving.deserialize_keras_object(
        config["base_model"], custom_objects=custom_objects
    )
    if isinstance(config["projection"], dict):
        config["projection"] = keras.saving.deserialize_keras_object(
            config["projection"], custom_objects=custom_objects
        )
    return config, version


def make_own_variables(model: Any, args: Any) -> None:
    """A SubspaceModel's own variables, in their saved order: theta_0 (unless
    `keep_theta_0=False`), theta_d, SAID's lambdas; without theta_0, the
    values of theta_d and of the lambdas last written into the weights."""
    if model.keep_theta_0:
        # Initialised with the joined weights themselves: a zero variable
        # assigned afterwards would hold a second (D,) buffer for a moment.
        model.theta_0 = model.add_weight(
            shape=(args.full_dim,),
            initializer=lambda shape, dtype: model._map.flatten(),
            trainable=False,
            name="theta_0",
        )
    else:
        model.theta_0 = None
    model.theta_d = model.add_weight(
        shape=(args.projection.dim,), initializer="zeros", name="theta_d"
    )
    if args.structure_aware:
        model.lambdas = model.add_weight(
            shape=(len(args.variables),), initializer="ones", name="said_lambdas"
        )
    if model.keep_theta_0:
        return
    # What the weights hold now: theta_d's and the lambdas' values written.
    model.written_theta_d = model.add_weight(
        shape=(args.projection.dim,),
        initializer="zeros",
        trainable=False,
        name="theta_d_written",
    )
    if args.structure_aware:
        model.written_lambdas = model.add_weight(
            shape=(len(args.variables),),
            initializer="ones",
            trainable=False,
            name="said_lambdas_written",
        )


def own_variables(store: Any, structure_aware: bool, loaded_format: int | None) -> Any:
    """The saved variables of a SubspaceModel (theta_d, SAID's lambdas,
    theta_0), from a `store` of any format version.

    The variables of version 1 of a SAID model may hold P theta_d as a
    fourth variable, after theta_d, the lambdas and theta_0: it is dropped
    (and made again from theta_d). A model built in code reads a weights
    file, which carries no version (`loaded_format` None): there the fourth
    variable tells the layout. A version 2 config never has it.
    """
    own = 3 if structure_aware else 2  # theta_d, lambdas, theta_0
    if structure_aware and loaded_format in (None, 1) and len(store.keys()) == own + 1:
        return {str(i): store[str(i)] for i in range(own)}
    return store


def export_base(
    base_model: keras.Model,
    filepath: Any,
    format: str,
    verbose: bool | None,
    input_signature: Any,
    overwrite: bool,
    kwargs: dict,
) -> str:
    """`SubspaceModel.export`'s work (see it): `base_model` exported to a
    temporary folder beside `filepath` and moved into place."""
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
        base_model.export(
            tmp,
            format="tf_saved_model",
            verbose=False,  # it would name `tmp`
            input_signature=input_signature,
        )
    if verbose is None or verbose:
        print(f"Saved artifact at '{filepath}'.")
    return filepath


class Unsaved:
    """Objects held where Keras' attribute tracking and saving walk do not
    see them, so that they are neither parts of a model nor saved (e.g.
    `Unsaved(optimizer=...).optimizer`)."""

    def __init__(self, **items: Any):
        self.__dict__.update(items)


class LoraLayerWeights(_compat.keras_saveable()):
    """The own weights (kernel, bias) of `base_model`'s LoRA layers, saved
    and loaded as they are, beside the model's other variables (see this
    module).

    Args:
        base_model: keras.Model. The wrapped base model.
        on_load: callable. Called after the weights are loaded, to write
            the adapters again (`SubspaceModel.sync_base_weights`).
        adapters: bool. Save and load the adapters too, as they are, and
            call no `on_load`: a model that holds no theta_0
            (`keep_theta_0=False`) could not write them again.
    """

    def __init__(
        self,
        base_model: keras.Model,
        on_load: Callable[[], None],
        adapters: bool = False,
    ):
        # In a plain object, which Keras' saving walk does not go into.
        self._parts = Unsaved(base_model=base_model, on_load=on_load)
        self._adapters = adapters

    def _obj_type(self) -> str:
        # The kind whose attributes Keras' saving walk skips; it accepts
        # only its own kinds, and this object has nothing more to walk.
        return "Loss"

    def _variables(self) -> list:
        return [
            v
            for layer in lora.lora_layers(self._parts.base_model)
            for v in layer.weights
            if self._adapters or not lora.is_lora(v)
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
        if not self._adapters:
            self._parts.on_load()
