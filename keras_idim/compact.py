"""Compact files: a SubspaceModel as its seed and d numbers.

`save_compact(model, path)` / `load_compact(path)`: the few numbers that
define the model (projection kind and seed, its space, `theta_d`, SAID's
lambdas), with either the base network itself or only a SHA-256
fingerprint of its weights, for many small adapters of one shared
pretrained base (in any space: a LoRA space's A matrices are drawn again
from the seed). A model trained with LoRA adapters is saved too (see
`keras_idim.compact_lora`); the file format is `keras_idim.compact_format`.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np

from keras_idim import lora, spaces
from keras_idim.compact_format import (
    COMPACT_FORMAT,
    COMPACT_VERSION,
    LORA_FORMAT,
    SPACE_VERSION,
    CompactFileError,
    check_projection_fits,
    fingerprint,
    read,
    sizes,
    split,
    write,
)
from keras_idim.compact_lora import load_lora, save_lora
from keras_idim.subspace import SubspaceModel
from keras_idim.subspace_in_place import theta_0_pieces
from keras_idim.utils.exports import keras_idim_export
from keras_idim.utils.io import check_target
from keras_idim.utils.validation import check_bool
from keras_idim.version import __version__


@keras_idim_export("keras_idim.save_compact")
def save_compact(
    model: SubspaceModel | keras.Model,
    path: str | os.PathLike,
    include_base: bool | None = None,
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

    A model in a space other than every weight (`SubspaceModel(...,
    space=...)`, e.g. LoRA adapters or a subset of the weights) is saved
    with its space's config too. With its base (`include_base=True`), the
    weights outside the space are kept as the base model's other state.
    Without it, the file holds the seed, the space, theta_d (and the
    lambdas), the base model's other state that training may change (e.g.
    BatchNorm moving statistics) and the SHA-256 fingerprint of the base
    model's weights as they were when wrapped: `load_compact` wraps the
    base model again in the same space with the same seed, which draws
    the same LoRA A matrices (B is zero). This needs a theta_0 that the
    seed made: a LoRA layer whose adapters were enabled before the model
    was wrapped (by hand, or by `Space.prepare` without a seed) has an A of
    Keras' own draw, and such a model is refused without its base.

    A model trained with LoRA adapters (a run of `search(method="lora")`,
    see `keras_idim.lora`) is saved the same way, without its base: the
    adapter matrices (`4 * trainable_params` bytes), the weights that
    trained besides them, and the fingerprint of the frozen base.

    The base weights are rederived from `theta_d` first
    (`model.sync_base_weights()`), so that a loaded model reproduces them,
    and its predictions, bit for bit on the same machine. The file is
    written to a temporary name and moved into place.

    Args:
        model: SubspaceModel. The model to save.
        path: str. The file to write (`.npz` is the usual suffix).
        include_base: bool or None. Store the base architecture and
            theta_0. `None`: yes for a SubspaceModel, no (the only choice)
            for a LoRA model. Defaults to `None`.
        overwrite: bool. Replace an existing file (never a folder: a
            `path` that is one is refused). Defaults to `False`.

    Returns:
        The path written.

    Example:

    >>> keras_idim.save_compact(model, "saved_models/adapter.npz",
    ...                         include_base=False)
    >>> model = keras_idim.load_compact("saved_models/adapter.npz",
    ...                                 base_model=pretrained)
    """
    if not isinstance(model, SubspaceModel):
        if isinstance(model, keras.Model) and lora.lora_layers(model):
            if include_base:
                raise ValueError(
                    "A LoRA compact file holds the adapters only: pass "
                    "`include_base=False` (or leave it None), and keep the base."
                )
            return save_lora(model, check_target(path, overwrite))
        raise ValueError(
            "`model` should be a keras_idim.SubspaceModel, or a model with "
            f"LoRA adapters. Received: `model` of type {type(model).__name__}"
        )
    include_base = True if include_base is None else include_base
    check_bool("include_base", include_base)
    default_space = model.space == spaces.Weights()
    seeded = not default_space and not include_base  # theta_0 from the seed
    path = check_target(path, overwrite)
    model.sync_base_weights()
    theta_0 = theta_0_pieces(model, include_base)
    state = model.state_variables
    if seeded:
        base_sha256, positions = _seeded_base(model, theta_0)
        weights = model.base_model.weights
        state = [weights[k] for k in positions]
    header = {
        "format": COMPACT_FORMAT,
        "format_version": (
            1 if default_space else COMPACT_VERSION if seeded else SPACE_VERSION
        ),
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
    if not default_space:
        header["space"] = model.space.get_config()
    if seeded:
        header["base_sha256"] = base_sha256
        header["base_weights"] = len(model.base_model.weights)
        header["state_positions"] = positions
    arrays = {
        "theta_d": keras.ops.convert_to_numpy(model.theta_d),
    }
    if model.structure_aware:
        arrays["lambdas"] = keras.ops.convert_to_numpy(model.lambdas)
    for i, v in enumerate(state):
        arrays[f"state_{i}"] = keras.ops.convert_to_numpy(v)
    if include_base:
        arrays["theta_0"] = np.concatenate([t.ravel() for t in theta_0])
    return write(path, header, arrays)


def _seeded_base(model: SubspaceModel, theta_0: list) -> tuple[str, list[int]]:
    """(the fingerprint of the base model's weights as they were when
    wrapped, the positions in `base_model.weights` of its other state) of a
    model whose file leaves its base out; refuses one whose theta_0 the seed
    did not make."""
    base, space = model.base_model, model.space
    drawn = space.drawn(base, model.seed)
    differ = [
        v.path
        for v, piece in zip(model.base_variables, theta_0)
        if id(v) in drawn
        and not np.array_equal(piece, keras.ops.convert_to_numpy(drawn[id(v)]))
    ]
    if differ:
        raise ValueError(
            f"A compact file without its base cannot rebuild the theta_0 of "
            f"this model in the space {space.spec!r}: the initial values of "
            f"{differ[:4]} are not those that the seed {model.seed} draws "
            "(LoRA was enabled on those layers before the model was wrapped, "
            "by hand or by `Space.prepare` without a seed), so the file must "
            "hold them. Pass `include_base=True` (or leave it None), or wrap "
            "a base model without adapters. Received: `include_base=False`"
        )
    by_id = {id(v): piece for v, piece in zip(model.base_variables, theta_0)}
    fixed = {id(v) for v in spaces.fixed_weights(base)}
    values, positions = [], []
    for k, v in enumerate(base.weights):
        if id(v) in drawn:
            continue
        if id(v) in by_id:  # the space's own weights, as they were
            values.append(by_id[id(v)])
        elif id(v) in fixed:  # frozen: as they were
            values.append(v)
        else:  # e.g. moving statistics: kept in the file
            positions.append(k)
    return fingerprint(values), positions


def _reseed(path: str, header: dict, space, base_model) -> tuple[list, list]:
    """Wraps `base_model` in the space of a file without its base (version
    3), drawing its new weights from the file's seed, and checks it against
    the file's fingerprint. Returns (the space's variables, those of the
    base model's state that the file holds)."""
    count, positions = header.get("base_weights"), header.get("state_positions")
    seed = header.get("seed")
    if (
        not isinstance(count, int)
        or not isinstance(seed, int)
        or not isinstance(positions, list)
        or not all(isinstance(k, int) and 0 <= k < count for k in positions)
        or not isinstance(header.get("base_sha256"), str)
    ):
        raise CompactFileError(
            f"The compact file {path!r} is corrupt: its seed, base weights or "
            "state positions are unreadable."
        )
    variables = space.prepare(base_model, seed=seed)
    weights = base_model.weights
    drawn = space.drawn(base_model, seed)
    kept = set(positions)
    values = [v for k, v in enumerate(weights) if id(v) not in drawn and k not in kept]
    theirs = fingerprint(values) if len(weights) == count else None
    if theirs != header["base_sha256"]:
        found = (
            f"{len(weights)} weights, not {count}"
            if theirs is None
            else f"the SHA-256 of its weights is {theirs[:16]}..., the file "
            f"expects {header['base_sha256'][:16]}..."
        )
        raise ValueError(
            f"`base_model` does not match the compact file {path!r}: {found} "
            f"(in the space {space.spec!r}). Pass the exact base model "
            "(architecture and weights) that was wrapped when saving, fresh."
        )
    return variables, [weights[k] for k in positions]


@keras_idim_export("keras_idim.load_compact")
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
            For a file of a space other than every weight (e.g. LoRA) saved
            with its base, the file's theta_0 and frozen weights are written
            into it: only its architecture counts. For one saved without
            it, it is wrapped in the file's space with the file's seed (a
            LoRA space draws its A matrices from it), and the fingerprint of
            its weights must match the file's: pass it fresh, without LoRA
            adapters.

    Returns:
        A `SubspaceModel` (not compiled).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"`path` should be a file path. Received: `path={path!r}`")
    path = os.fspath(path)
    header, arrays = read(path)
    if header["format"] == LORA_FORMAT:
        return load_lora(path, header, arrays, base_model)
    try:
        space = spaces.get(header.get("space"))
    except ValueError as e:
        raise CompactFileError(
            f"The compact file {path!r} is corrupt: its space is unreadable ({e})."
        ) from None
    # theta_0 of a space other than every weight (e.g. LoRA's random A) is
    # the file's, never the base model's own; or, in a file without its
    # base (version 3), drawn from the seed again.
    seeded = header["format_version"] == 3
    from_file = space != spaces.Weights() and not seeded
    if base_model is None:
        if not header["include_base"]:
            raise ValueError(
                f"The compact file {path!r} was saved with `include_base=False`"
                ": pass the base model it adapts as `base_model`."
            )
        base_model = keras.saving.deserialize_keras_object(header["base_model"])
        from_file = True
    else:
        _check_base_model(base_model)
    state = _set_theta_0(path, header, arrays, space, base_model, seeded, from_file)
    check_projection_fits(path, header, arrays, base_model)
    projection = keras.saving.deserialize_keras_object(header["projection"])
    model = SubspaceModel(
        base_model,
        header["dim"],
        projection=projection,
        structure_aware=header["structure_aware"],
        space=space,
    )
    model.theta_d.assign(arrays["theta_d"])
    if header["structure_aware"]:
        model.lambdas.assign(arrays["lambdas"])
    if state is None:
        state = model.state_variables
    if [list(v.shape) for v in state] != header["state_shapes"]:
        raise ValueError(
            f"`base_model` does not match the compact file {path!r}: its "
            "non-trainable variables differ from those saved."
        )
    for i, v in enumerate(state):
        v.assign(arrays[f"state_{i}"])
    model.sync_base_weights()
    return model


def _check_base_model(base_model: Any) -> None:
    """Refuses a `base_model` that is not a Keras model with weights to wrap."""
    if not isinstance(base_model, keras.Model):
        raise ValueError(
            "`base_model` should be a keras.Model or None. Received: "
            f"`base_model` of type {type(base_model).__name__}"
        )
    if not base_model.trainable_variables:
        raise ValueError(
            f"`base_model` ({base_model.name!r}) has no trainable weights: pass "
            "the pretrained model itself, not one already wrapped by a "
            "SubspaceModel."
        )


def _set_theta_0(
    path: str,
    header: dict,
    arrays: dict,
    space: spaces.Space,
    base_model: keras.Model,
    seeded: bool,
    from_file: bool,
) -> list | None:
    """Prepares `space` on `base_model` with the file's theta_0: the file's
    own (`from_file`), drawn from its seed (`seeded`), or the base model's
    weights; and checks it against the file's fingerprint. Returns the base
    model's state that a `seeded` file holds (else `None`: the model's
    `state_variables`)."""
    state = None
    if seeded:
        variables, state = _reseed(path, header, space, base_model)
    else:
        variables = space.prepare(base_model)
    if from_file:
        theta_0 = arrays.get("theta_0")
        if theta_0 is None or sum(sizes(variables)) != theta_0.size:
            raise CompactFileError(
                f"The compact file {path!r} is corrupt: its theta_0 does not "
                f"fit its base architecture in the space {space.spec!r}."
            )
        for v, piece in zip(variables, split(theta_0, variables)):
            v.assign(piece)
    theirs = fingerprint(variables)
    if seeded and theirs != header["theta_0_sha256"]:
        raise ValueError(
            f"`base_model` matches the compact file {path!r}, but the initial "
            f"values of its space {space.spec!r} do not: the SHA-256 of theta_0 "
            f"is {theirs[:16]}..., the file expects "
            f"{header['theta_0_sha256'][:16]}... Its LoRA A matrices, drawn "
            f"from the seed {header['seed']}, differ from the saved model's "
            "(a base model whose LoRA was enabled already keeps its own; or "
            "another TensorFlow's random numbers). Pass the base model "
            "without adapters."
        )
    if theirs != header["theta_0_sha256"]:
        raise ValueError(
            f"`base_model` does not match the compact file {path!r}: the "
            f"SHA-256 of its trainable weights is {theirs[:16]}..., the file "
            f"expects {header['theta_0_sha256'][:16]}... Pass the exact base "
            "model (architecture and weights) that was wrapped when saving."
        )
    return state
