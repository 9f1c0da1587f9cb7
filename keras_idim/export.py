"""Export: a TensorFlow SavedModel of the trained network, and a compact file.

Two ways for a measured subspace model to leave the lab:

- `export_saved_model(model, path)`: the base network with its weights
  materialised (`theta_0 + P theta_d` written into ordinary variables), as a
  TensorFlow SavedModel with a `serve` endpoint. Serving it needs TensorFlow
  only: neither keras_idim nor the projection is part of it.
- `save_compact(model, path)` / `load_compact(path)`: the few numbers that
  define the model, with its base network or only its fingerprint. They
  live in `keras_idim.compact` and are importable from here too.
"""

from __future__ import annotations

import os
from typing import Any

from keras_idim.compact import load_compact as load_compact
from keras_idim.compact import save_compact as save_compact
from keras_idim.compact_format import COMPACT_FORMAT as COMPACT_FORMAT
from keras_idim.compact_format import COMPACT_VERSION as COMPACT_VERSION
from keras_idim.compact_format import LORA_FORMAT as LORA_FORMAT
from keras_idim.compact_format import SPACE_VERSION as SPACE_VERSION
from keras_idim.compact_format import CompactFileError as CompactFileError
from keras_idim.compact_format import fingerprint as fingerprint
from keras_idim.subspace import SubspaceModel
from keras_idim.utils.exports import keras_idim_export
from keras_idim.utils.io import check_target

# -- SavedModel --------------------------------------------------------------


@keras_idim_export("keras_idim.export_saved_model")
def export_saved_model(
    model: SubspaceModel,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    input_signature: Any = None,
    verbose: bool = False,
) -> str:
    """Exports the trained network as a TensorFlow SavedModel.

    The base network is exported with its current weights, which are
    `theta_0 + P theta_d` (written after every training step): the
    projection is not part of the graph, and serving needs TensorFlow only.
    The SavedModel has the `serve` endpoint (and `serving_default`) of
    `keras.Model.export`, in inference mode, with a batch dimension of None.

    Load it anywhere with TensorFlow alone:

        reloaded = tf.saved_model.load(path)
        probabilities = reloaded.serve(images)

    Args:
        model: SubspaceModel. The trained model.
        path: str. The SavedModel folder to create.
        overwrite: bool. Replace an existing `path`, a SavedModel folder
            (one holding `saved_model.pb`); any other folder is refused.
            Defaults to `False`.
        input_signature: Optional input signature, as for
            `keras.Model.export`; needed only when the base model's inputs
            are not known (some subclassed models). Defaults to `None`.
        verbose: bool. Let Keras print what it exports. Defaults to `False`.

    Returns:
        The path written.

    Example:

    >>> model.export("saved_models/digits_fc_d200")  # same as this function
    """
    if not isinstance(model, SubspaceModel):
        raise ValueError(
            "`model` should be a keras_idim.SubspaceModel. Received: "
            f"`model` of type {type(model).__name__}"
        )
    path = check_target(path, overwrite, folder_marker="saved_model.pb")
    return model.export(
        path, overwrite=overwrite, input_signature=input_signature, verbose=verbose
    )
