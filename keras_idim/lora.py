"""LoRA beside random subspaces: Keras 3's own low-rank adapters, set up so
that a run of the d-search can train them (`search(method="lora")`).

Keras 3 gives `enable_lora(rank)` to Dense, EinsumDense, Embedding and the
convolution layers: the layer's kernel W (m x n) is frozen and two trainable
matrices A (m x r) and B (r x n), B starting at zero, add A B to it, so a
rank-r adapter on a Dense(m -> n) layer trains exactly r (m + n) numbers.
A keras-hub task model's backbone has an `enable_lora` of its own that picks
its attention projections; it is used when the model has one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from keras_idim import _compat
from keras_idim.utils.validation import check_positive_int, received

#: The names of the LoRA matrices Keras adds to a layer: `lora_kernel_a`
#: and `_b` (Dense, EinsumDense, convolutions), `lora_embeddings_a` and `_b`
#: (Embedding).
LORA_WEIGHTS = (
    "lora_kernel_a",
    "lora_kernel_b",
    "lora_embeddings_a",
    "lora_embeddings_b",
)

#: What `targets` and `train` accept besides `None`.
Selector = Sequence[str] | Callable[[keras.layers.Layer], bool]


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of `model`, nested ones included, each once."""
    seen, found = set(), []
    for layer in _compat.nested_layers(model):
        if id(layer) not in seen:
            seen.add(id(layer))
            found.append(layer)
    return found


def hub_backbone(model: keras.Model) -> Any:
    """The keras-hub backbone of a task model, if it has LoRA targets
    (`None` otherwise)."""
    backbone = getattr(model, "backbone", None)
    if backbone is not None and _hub_target_names(backbone) is not None:
        return backbone
    return None


def _hub_target_names(backbone: Any) -> list[str] | None:
    """The names of the layers a keras-hub backbone's own `enable_lora`
    adapts: `default_lora_layer_names()` (keras-hub 0.2x and later), or
    `get_lora_target_names()` (earlier releases); `None` without either."""
    for method in ("default_lora_layer_names", "get_lora_target_names"):
        if callable(getattr(backbone, method, None)):
            return list(getattr(backbone, method)())
    return None


def check_selector(name: str, value: Any) -> Selector | None:
    """`None`, a list of layer names, or a predicate on layers."""
    if value is None or callable(value):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(
        f"`{name}` should be None, a list of layer names, or a function "
        f"`layer -> bool`. {received(name, value)}"
    )


def select(model: keras.Model, selector: Selector, name: str) -> list:
    """The layers of `model` that `selector` picks (names, or a predicate);
    unknown names are refused, naming the argument `name`."""
    layers = all_layers(model)
    if callable(selector):
        return [layer for layer in layers if selector(layer)]
    by_name = {layer.name: layer for layer in layers}
    missing = [n for n in selector if n not in by_name]
    if missing:
        raise ValueError(
            f"`{name}` names layers that {model.name!r} does not have: "
            f"{missing}. Its layers: {sorted(by_name)}"
        )
    return [by_name[n] for n in selector]


def targets(model: keras.Model, selector: Selector | None = None) -> list:
    """The layers that get adapters: `selector`'s, or by default a keras-hub
    backbone's own targets, or else every built layer that supports LoRA.

    Raises:
        ValueError: a named layer is missing or cannot take LoRA, or no
            layer is left.
    """
    if selector is None:
        backbone = hub_backbone(model)
        if backbone is not None:
            names = set(_hub_target_names(backbone))
            chosen = [
                layer
                for layer in all_layers(backbone)
                if layer.name in names and hasattr(layer, "enable_lora")
            ]
        else:
            chosen = [
                layer
                for layer in all_layers(model)
                if hasattr(layer, "enable_lora")
                and not isinstance(layer, keras.Model)  # a backbone's own
                and layer.built
                and layer.weights
            ]
    else:
        chosen = select(model, selector, "lora_targets")
        unable = [layer.name for layer in chosen if not hasattr(layer, "enable_lora")]
        if unable:
            raise ValueError(
                f"`lora_targets` names layers that cannot take LoRA: {unable} "
                "(Keras 3 adapts Dense, EinsumDense, Embedding and convolutions)."
            )
    if not chosen:
        raise ValueError(
            f"No layer of {model.name!r} can take LoRA (Keras 3 adapts Dense, "
            "EinsumDense, Embedding and convolutions); pass `lora_targets`."
        )
    return chosen


def _kernel_shape(layer: keras.layers.Layer) -> tuple[int, int]:
    """(m, n): the kernel as the matrix that A (m x r) B (r x n) adds to."""
    kernel = getattr(layer, "embeddings", None)
    if kernel is None:
        kernel = layer.kernel
    shape = tuple(int(s) for s in kernel.shape)
    if type(layer).__name__ == "EinsumDense":
        return int(np.prod(shape[:-1])), shape[-1]  # keras' own A, B split
    return int(np.prod(shape[:-1])), shape[-1]


def max_rank(model: keras.Model, selector: Selector | None = None) -> int:
    """The largest useful rank: beyond min(m, n) of every targeted kernel a
    rank-r adapter can reach no more than a full-rank one."""
    return max(min(_kernel_shape(layer)) for layer in targets(model, selector))


def enable(
    model: keras.Model,
    rank: int,
    *,
    targets_: Selector | None = None,
    train: Selector | None = None,
) -> int:
    """Puts rank-`rank` adapters on the target layers and freezes the rest.

    Args:
        model: keras.Model. A fresh, built model (its weights are the base).
        rank: int. r, the adapters' rank.
        targets_: list, callable or None. The layers that get adapters (see
            `targets`). Defaults to `None`.
        train: list, callable or None. Layers whose own weights train too,
            fully (e.g. a new classification head). `None`: only the
            adapters train; every other weight is frozen, biases included.
            Defaults to `None`.

    Returns:
        The number of trainable numbers: the adapters' plus `train`'s.

    Example:

    >>> model = keras.Sequential([keras.Input((7,)), keras.layers.Dense(5)])
    >>> enable(model, 2)  # 2 * (7 + 5)
    24
    """
    rank = check_positive_int("rank", rank)
    chosen = targets(model, targets_)
    # Weights that can train at all, before the adapters freeze the kernels:
    # `train` never thaws a statistic (a BatchNorm's moving mean, variance).
    trainable_before = {id(v) for v in model.weights if v.trainable}
    backbone = hub_backbone(model)
    if targets_ is None and backbone is not None:
        backbone.enable_lora(rank)
    else:
        for layer in chosen:
            layer.enable_lora(rank)
    adapters = {id(v) for layer in chosen for v in layer.weights if is_lora(v)}
    extra = set()
    if train is not None:
        for layer in select(model, train, "lora_train"):
            extra |= {
                id(v)
                for v in layer.weights
                if not is_lora(v) and id(v) in trainable_before
            }
    for v in model.weights:
        if id(v) in extra:
            v.trainable = True
        elif id(v) not in adapters and v.trainable:
            v.trainable = False
    return trainable_count(model)


def is_lora(variable: Any) -> bool:
    """Whether a variable is one of Keras' LoRA matrices."""
    name = getattr(variable, "path", variable.name).rsplit("/", 1)[-1]
    return name in LORA_WEIGHTS


def adapters(layer: keras.layers.Layer) -> tuple[Any, Any]:
    """The adapter matrices (A, B) of a layer with LoRA enabled:
    `lora_kernel_a`/`_b`, or an Embedding's `lora_embeddings_a`/`_b`."""
    for stem in ("lora_kernel", "lora_embeddings"):
        a = getattr(layer, f"{stem}_a", None)
        if a is not None:
            return a, getattr(layer, f"{stem}_b")
    raise ValueError(f"The layer {layer.name!r} has no LoRA adapters.")


def trainable_count(model: keras.Model) -> int:
    """The number of trainable numbers of a model."""
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))


def lora_layers(model: keras.Model) -> list:
    """The layers of `model` that carry LoRA adapters."""
    return [
        layer for layer in all_layers(model) if getattr(layer, "lora_enabled", False)
    ]
