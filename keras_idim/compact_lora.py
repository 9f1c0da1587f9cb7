"""Compact files of models trained with LoRA adapters (`keras_idim.lora`).

`keras_idim.save_compact` of a model with LoRA adapters (a run of
`search(method="lora")`) writes its adapter matrices, the weights that
trained besides them and the fingerprint of its frozen base, without the
base; `keras_idim.load_compact` puts them back on that base.
"""

from __future__ import annotations

from typing import Any

import keras

from keras_idim import lora
from keras_idim.compact_format import LORA_FORMAT, fingerprint, write
from keras_idim.version import __version__


def _lora_parts(model: keras.Model, trained_layers: list[str] | None = None):
    """(adapted layers, layers with weights trained besides, frozen base
    weights in order) of a LoRA model; `trained_layers` names them on load."""
    adapted = lora.lora_layers(model)
    lora_ids = {id(v) for layer in adapted for v in layer.weights if lora.is_lora(v)}
    if trained_layers is None:
        trained_ids = {
            id(v) for v in model.trainable_variables if id(v) not in lora_ids
        }
        trained = [
            layer
            for layer in lora.all_layers(model)
            if any(id(v) in trained_ids for v in layer.weights)
        ]
    else:
        by_name = {layer.name: layer for layer in lora.all_layers(model)}
        trained = [by_name[name] for name in trained_layers]
    own = {id(v) for layer in trained for v in layer.weights if not lora.is_lora(v)}
    frozen = [v for v in model.weights if id(v) not in lora_ids | own]
    return adapted, trained, frozen


def save_lora(model: keras.Model, path: str) -> str:
    """Writes the compact file of a LoRA model at `path` (checked)."""
    adapted, trained, frozen = _lora_parts(model)
    header = {
        "format": LORA_FORMAT,
        "format_version": 1,
        "keras_idim_version": __version__,
        "adapters": [
            {"layer": layer.name, "rank": layer.lora_rank} for layer in adapted
        ],
        "trained_layers": [layer.name for layer in trained],
        "base_sha256": fingerprint(frozen),
    }
    arrays = {}
    for i, layer in enumerate(adapted):
        a, b = lora.adapters(layer)
        arrays[f"a_{i}"] = keras.ops.convert_to_numpy(a)
        arrays[f"b_{i}"] = keras.ops.convert_to_numpy(b)
    for i, layer in enumerate(trained):
        for j, v in enumerate(w for w in layer.weights if not lora.is_lora(w)):
            arrays[f"t_{i}_{j}"] = keras.ops.convert_to_numpy(v)
    return write(path, header, arrays)


def load_lora(path: str, header: dict, arrays: dict, base_model: Any) -> keras.Model:
    """Puts the adapters and trained weights of a LoRA model's compact file
    (read: `header`, `arrays`) on `base_model`, which it returns."""
    if not isinstance(base_model, keras.Model):
        raise ValueError(
            f"The compact file {path!r} holds LoRA adapters only: pass the "
            "base model they adapt (fresh, without adapters) as `base_model`."
        )
    names = {layer.name for layer in lora.all_layers(base_model)}
    wanted = [a["layer"] for a in header["adapters"]] + header["trained_layers"]
    missing = [n for n in wanted if n not in names]
    if missing:
        raise ValueError(
            f"`base_model` does not match the compact file {path!r}: it has no "
            f"layers {missing}."
        )
    _, _, frozen = _lora_parts(base_model, header["trained_layers"])
    if fingerprint(frozen) != header["base_sha256"]:
        raise ValueError(
            f"`base_model` does not match the compact file {path!r}: the "
            "SHA-256 of its frozen weights differs. Pass the exact base model "
            "(architecture and weights) that the adapters were trained on."
        )
    by_name = {layer.name: layer for layer in lora.all_layers(base_model)}
    for i, entry in enumerate(header["adapters"]):
        layer = by_name[entry["layer"]]
        layer.enable_lora(entry["rank"])
        a, b = lora.adapters(layer)
        a.assign(arrays[f"a_{i}"])
        b.assign(arrays[f"b_{i}"])
    for i, name in enumerate(header["trained_layers"]):
        own = [w for w in by_name[name].weights if not lora.is_lora(w)]
        for j, v in enumerate(own):
            v.assign(arrays[f"t_{i}_{j}"])
    return base_model
