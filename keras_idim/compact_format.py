"""The compact file format: its versions, header checks and fingerprints.

A compact file is a NumPy `.npz` archive of arrays and a JSON header (see
`keras_idim.compact` for what a SubspaceModel's file holds, and
`keras_idim.compact_lora` for a LoRA model's). This module writes and reads
the archive, refuses a corrupt or foreign one, and fingerprints weights.
"""

from __future__ import annotations

import hashlib
import json
import os

import keras
import numpy as np

from keras_idim.utils.io import header_npz, read_header_npz, staged

#: Newest version of the compact file format, which this code reads with
#: all before it (version 1: written by keras_idim 0.1.0 and 0.2.0, and
#: still for the default space; version 2 adds `space`, the config of a
#: `keras_idim.spaces.Space` other than every weight, so that a keras_idim
#: that knows no spaces refuses the file; version 3, a file of such a space
#: without its base: theta_0 is rebuilt from the base model and the seed,
#: checked by `base_sha256` (the base's weights that the space does not
#: draw, as they were when wrapped), and `state_positions` say which of
#: the base's weights the file holds).
COMPACT_VERSION = 3
#: The version of a file of a space other than every weight, with its base.
SPACE_VERSION = 2
COMPACT_FORMAT = "keras_idim.compact"
#: Format tag of a LoRA model's compact file (adapters, no base).
LORA_FORMAT = "keras_idim.compact_lora"


class CompactFileError(ValueError):
    """A compact file that cannot be read: corrupt, truncated, or foreign."""


def fingerprint(variables: list) -> str:
    """SHA-256 of weights (shapes, dtypes and little-endian float32 bytes)."""
    digest = hashlib.sha256()
    for v in variables:
        array = np.asarray(keras.ops.convert_to_numpy(v), dtype="<f4")
        digest.update(json.dumps([list(array.shape), "float32"]).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def sizes(variables: list) -> list[int]:
    """The number of entries of each of `variables`."""
    return [int(np.prod(v.shape, dtype=np.int64)) for v in variables]


def split(flat: np.ndarray, variables: list) -> list[np.ndarray]:
    """A flat vector cut into the shapes of `variables`, in order (P's order)."""
    pieces = np.split(flat, np.cumsum(sizes(variables))[:-1])
    return [p.reshape(v.shape) for p, v in zip(pieces, variables)]


def write(path: str, header: dict, arrays: dict) -> str:
    """The `.npz` archive: the arrays and the JSON header, written atomically."""
    with staged(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header_npz(header, arrays))
            f.flush()
            os.fsync(f.fileno())
    return path


def read(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) of the compact file at `path`, of a format and
    version that this keras_idim reads.

    Raises:
        FileNotFoundError: no file at `path`.
        CompactFileError: a corrupt, truncated or foreign file, or one of a
            newer format version.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"No compact file at `path={path!r}`.") from None
    try:
        header, arrays = read_header_npz(raw)
    except ValueError as e:
        raise CompactFileError(
            f"The compact file {path!r} is corrupt or truncated ({e})."
        ) from None
    if not isinstance(header, dict) or header.get("format") not in (
        COMPACT_FORMAT,
        LORA_FORMAT,
    ):
        raise CompactFileError(f"{path!r} is not a keras_idim compact file.")
    version = header.get("format_version")
    if isinstance(version, bool) or version not in range(1, COMPACT_VERSION + 1):
        raise CompactFileError(
            f"The compact file {path!r} has format version "
            f"{version!r}, written by keras_idim "
            f"{header.get('keras_idim_version')}; this keras_idim reads "
            f"versions 1 to {COMPACT_VERSION}. Load it with a matching keras_idim."
        )
    return header, arrays


def check_projection_fits(path: str, header: dict, arrays: dict, base_model) -> None:
    """Refuses, before P is drawn (its size comes from the file), a header
    whose projection or theta_d does not fit the base model's D and the
    file's d: a crafted `full_dim` would otherwise allocate its P."""
    full_dim = sum(sizes(base_model.trainable_variables))
    spec = header.get("projection")
    config = spec.get("config") if isinstance(spec, dict) else None
    config = config if isinstance(config, dict) else {}
    theta_d = arrays.get("theta_d")
    size = None if theta_d is None else int(theta_d.size)
    dim, sub_dim = header.get("dim"), config.get("dim")
    # With SAID, d counts the lambdas too: P has d - (number of tensors)
    # columns, as many as theta_d has numbers.
    fits = (
        config.get("full_dim") == full_dim
        and isinstance(sub_dim, int)
        and isinstance(dim, int)
        and sub_dim == size
        and 0 < sub_dim <= dim
    )
    if not fits:
        raise CompactFileError(
            f"The compact file {path!r} is corrupt: its projection is "
            f"full_dim={config.get('full_dim')!r} x dim={sub_dim!r} with {size} "
            f"numbers in theta_d, where its base model has D = {full_dim:,} "
            f"weights and the file says d = {dim!r}."
        )
