"""Export: a TensorFlow SavedModel of the trained network, and a compact file.

Two ways for a measured subspace model to leave the lab:

- `export_saved_model(model, path)`: the base network with its weights
  materialised (`theta_0 + P theta_d` written into ordinary variables), as a
  TensorFlow SavedModel with a `serve` endpoint. Serving it needs TensorFlow
  only: neither keras_idim nor the projection is part of it.
- `save_compact(model, path)` / `load_compact(path)`: the few numbers that
  define the model (projection kind and seed, `theta_d`, SAID's lambdas),
  with either the base network itself or only a SHA-256 fingerprint of its
  `theta_0`, for many small adapters of one shared pretrained base.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from typing import Any

import keras
import numpy as np

from keras_idim.subspace import SubspaceModel
from keras_idim.utils.io import check_target, staged
from keras_idim.utils.validation import check_bool
from keras_idim.version import __version__

#: Version of the compact file format that this code writes and reads.
COMPACT_VERSION = 1
COMPACT_FORMAT = "keras_idim.compact"


class CompactFileError(ValueError):
    """A compact file that cannot be read: corrupt, truncated, or foreign."""


# -- SavedModel --------------------------------------------------------------


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
        overwrite: bool. Replace an existing `path`. Defaults to `False`.
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
    path = check_target(path, overwrite)
    return model.export(
        path, overwrite=overwrite, input_signature=input_signature, verbose=verbose
    )


# -- compact -----------------------------------------------------------------


def fingerprint(variables: list) -> str:
    """SHA-256 of weights (shapes, dtypes and little-endian float32 bytes)."""
    digest = hashlib.sha256()
    for v in variables:
        array = np.asarray(keras.ops.convert_to_numpy(v), dtype="<f4")
        digest.update(json.dumps([list(array.shape), "float32"]).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _split(flat: np.ndarray, variables: list) -> list[np.ndarray]:
    """A flat vector cut into the shapes of `variables`, in order (P's order)."""
    sizes = [int(np.prod(v.shape, dtype=np.int64)) for v in variables]
    pieces = np.split(flat, np.cumsum(sizes)[:-1])
    return [p.reshape(v.shape) for p, v in zip(pieces, variables)]


def _base_state(model: SubspaceModel) -> list:
    """The base model's other variables (e.g. BatchNorm moving statistics)."""
    wrapped = {id(v) for v in model.base_variables}
    return [v for v in model.base_model.weights if id(v) not in wrapped]


def save_compact(
    model: SubspaceModel,
    path: str | os.PathLike,
    include_base: bool = True,
    *,
    overwrite: bool = False,
) -> str:
    """Saves a SubspaceModel as its seed and d numbers (plus, maybe, its base).

    The file (a NumPy `.npz` archive, readable with `np.load`) holds a JSON
    header (keras_idim version, format version, projection kind and config
    with its seed, dim, full_dim, structure_aware, the SHA-256 fingerprint
    of theta_0), `theta_d`, SAID's lambdas, and the base model's other state
    (BatchNorm moving statistics; none for most adapters). With
    `include_base=True` it also holds the base architecture and theta_0, so
    it loads alone. With `include_base=False` it holds only the fingerprint
    of theta_0: `load_compact` then needs the same pretrained base model,
    and the file takes about `4 * dim` bytes plus a few KiB.

    The base weights are rederived from `theta_d` first
    (`model.sync_base_weights()`), so that a loaded model reproduces them,
    and its predictions, bit for bit on the same machine. The file is
    written to a temporary name and moved into place.

    Args:
        model: SubspaceModel. The model to save.
        path: str. The file to write (`.npz` is the usual suffix).
        include_base: bool. Store the base architecture and theta_0.
            Defaults to `True`.
        overwrite: bool. Replace an existing file. Defaults to `False`.

    Returns:
        The path written.

    Example:

    >>> keras_idim.save_compact(model, "saved_models/adapter.npz",
    ...                         include_base=False)
    >>> model = keras_idim.load_compact("saved_models/adapter.npz",
    ...                                 base_model=pretrained)
    """
    if not isinstance(model, SubspaceModel):
        raise ValueError(
            "`model` should be a keras_idim.SubspaceModel. Received: "
            f"`model` of type {type(model).__name__}"
        )
    check_bool("include_base", include_base)
    path = check_target(path, overwrite)
    model.sync_base_weights()
    theta_0 = _split(keras.ops.convert_to_numpy(model.theta_0), model.base_variables)
    state = _base_state(model)
    header = {
        "format": COMPACT_FORMAT,
        "format_version": COMPACT_VERSION,
        "keras_idim_version": __version__,
        "projection": keras.saving.serialize_keras_object(model.projection),
        "seed": model.seed,
        "dim": model.dim,
        "full_dim": model.full_dim,
        "structure_aware": model.structure_aware,
        "theta_0_sha256": fingerprint(theta_0),
        "include_base": include_base,
        "state_shapes": [list(v.shape) for v in state],
        "base_model": (
            keras.saving.serialize_keras_object(model.base_model)
            if include_base
            else None
        ),
    }
    arrays = {
        "theta_d": keras.ops.convert_to_numpy(model.theta_d),
    }
    if model.structure_aware:
        arrays["lambdas"] = keras.ops.convert_to_numpy(model.lambdas)
    for i, v in enumerate(state):
        arrays[f"state_{i}"] = keras.ops.convert_to_numpy(v)
    if include_base:
        arrays["theta_0"] = keras.ops.convert_to_numpy(model.theta_0)
    header_bytes = json.dumps(header, sort_keys=True).encode()
    arrays["header"] = np.frombuffer(header_bytes, dtype=np.uint8)
    with staged(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
    return path


def _read_compact(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"No compact file at `path={path!r}`.") from None
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        header = json.loads(arrays.pop("header").tobytes().decode())
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as e:
        raise CompactFileError(
            f"The compact file {path!r} is corrupt or truncated "
            f"({type(e).__name__}: {e})."
        ) from None
    if not isinstance(header, dict) or header.get("format") != COMPACT_FORMAT:
        raise CompactFileError(f"{path!r} is not a keras_idim compact file.")
    if header.get("format_version") != COMPACT_VERSION:
        raise CompactFileError(
            f"The compact file {path!r} has format version "
            f"{header.get('format_version')!r}, written by keras_idim "
            f"{header.get('keras_idim_version')}; this keras_idim reads "
            f"version {COMPACT_VERSION}. Load it with a matching keras_idim."
        )
    return header, arrays


def load_compact(
    path: str | os.PathLike, base_model: keras.Model | None = None
) -> SubspaceModel:
    """Rebuilds a SubspaceModel saved by `save_compact`.

    P is regenerated from the stored seed, `theta_d` (and the lambdas) and
    the base model's other state are restored, and the base weights are set
    to `theta_0 + P theta_d`: the predictions equal the saved model's bit for
    bit on the same machine.

    Args:
        path: str. The compact file.
        base_model: keras.Model or None. The base network holding theta_0
            (e.g. the pretrained model), not yet wrapped. Required for a file
            saved with `include_base=False`; optional otherwise. Its weights'
            fingerprint must match the file's. It becomes the returned
            model's `base_model` (its weights are then driven by the subspace).

    Returns:
        A `SubspaceModel` (not compiled).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`path` should be a file path. Received: `path={path!r}`")
    path = os.fspath(path)
    header, arrays = _read_compact(path)
    if base_model is None:
        if not header["include_base"]:
            raise ValueError(
                f"The compact file {path!r} was saved with `include_base=False`"
                ": pass the base model it adapts as `base_model`."
            )
        base_model = keras.saving.deserialize_keras_object(header["base_model"])
        theta_0 = arrays["theta_0"]
        variables = base_model.trainable_variables
        if sum(int(np.prod(v.shape)) for v in variables) != theta_0.size:
            raise CompactFileError(
                f"The compact file {path!r} is corrupt: its theta_0 does not "
                "fit its base architecture."
            )
        for v, piece in zip(variables, _split(theta_0, variables)):
            v.assign(piece)
    elif not isinstance(base_model, keras.Model):
        raise ValueError(
            "`base_model` should be a keras.Model or None. Received: "
            f"`base_model` of type {type(base_model).__name__}"
        )
    elif not base_model.trainable_variables:
        raise ValueError(
            f"`base_model` ({base_model.name!r}) has no trainable weights: pass "
            "the pretrained model itself, not one already wrapped by a "
            "SubspaceModel."
        )
    theirs = fingerprint(base_model.trainable_variables)
    if theirs != header["theta_0_sha256"]:
        raise ValueError(
            f"`base_model` does not match the compact file {path!r}: the "
            f"SHA-256 of its trainable weights is {theirs[:16]}..., the file "
            f"expects {header['theta_0_sha256'][:16]}... Pass the exact base "
            "model (architecture and weights) that was wrapped when saving."
        )
    projection = keras.saving.deserialize_keras_object(header["projection"])
    model = SubspaceModel(
        base_model,
        header["dim"],
        projection=projection,
        structure_aware=header["structure_aware"],
    )
    model.theta_d.assign(arrays["theta_d"])
    if header["structure_aware"]:
        model.lambdas.assign(arrays["lambdas"])
    state = _base_state(model)
    if [list(v.shape) for v in state] != header["state_shapes"]:
        raise ValueError(
            f"`base_model` does not match the compact file {path!r}: its "
            "non-trainable variables differ from those saved."
        )
    for i, v in enumerate(state):
        v.assign(arrays[f"state_{i}"])
    model.sync_base_weights()
    return model
