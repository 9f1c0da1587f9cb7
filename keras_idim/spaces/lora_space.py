"""`LoRA`: the low-rank adapters of a model's layers, A drawn from a seed."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from keras_idim import lora
from keras_idim.projections.base import derive_seed
from keras_idim.spaces.base import Space
from keras_idim.utils.validation import (
    check_positive_int,
    is_number,
    received,
)

#: The random stream of LoRA's A matrices under a seed (`derive_seed(seed,
#: LORA_STREAM, i)` for the i-th target layer), apart from the streams of
#: the projections drawn from the same seed (small integers): "LoRA".
LORA_STREAM = 0x4C6F5241


def lora_a(seed: int, index: int, shape: Sequence[int]) -> tf.Tensor:
    """The A matrix that a seeded `LoRA.prepare` gives its `index`-th
    target layer: Keras' default for it (He uniform: uniform in
    `[-limit, limit]`, `limit = sqrt(6 / fan_in)`, fans as Keras counts
    them), drawn by a stateless op from `seed`, so that the same seed,
    index and shape give the same float32 bits in any process.

    Example:

    >>> a = lora_a(0, 1, (6, 2))
    >>> bool(tf.reduce_all(a == lora_a(0, 1, (6, 2))))
    True
    """
    shape = [int(s) for s in shape]
    if len(shape) < 1:
        fan_in = 1
    elif len(shape) <= 2:
        fan_in = shape[0]
    else:  # a convolution's (..., input_depth, rank), as Keras' compute_fans
        fan_in = shape[-2] * math.prod(shape[:-2])
    limit = math.sqrt(3.0 * 2.0 / max(1.0, fan_in))
    with tf.device("/CPU:0"):  # the same bits wherever the model lives
        return tf.random.stateless_uniform(
            shape,
            derive_seed(seed, LORA_STREAM, index),
            minval=-limit,
            maxval=limit,
            dtype=tf.float32,
        )


def _supports_alpha(layer: keras.layers.Layer) -> bool:
    try:
        params = inspect.signature(layer.enable_lora).parameters
    except (TypeError, ValueError):
        return False
    return "lora_alpha" in params


class LoRA(Space):
    """The LoRA adapters (A, B) of the target layers (Keras 3's own
    `enable_lora`); the layers' weights, and every other weight, stay frozen.

    Prepared with a seed (as a SubspaceModel prepares its base, with its
    own `seed`), each adapter it enables gets its A from that seed (`lora_a`:
    Keras' He uniform, drawn by a stateless op from `seed` and the layer's
    index among the targets) and B = 0, as Keras makes it: theta_0 is then a
    function of the base model's weights, the space and the seed, which is
    what lets a compact file leave the base out. A layer whose LoRA was
    enabled before keeps its A.

    Args:
        rank: int. The adapters' rank r.
        targets: list of layer names, a function `layer -> bool`, or None:
            a keras-hub backbone's own LoRA targets, or else every built
            layer that takes LoRA (Dense, EinsumDense, Embedding,
            convolutions). A function is not serialisable (`get_config`
            raises).
        alpha: number or None. Keras' `lora_alpha`: the update is
            `(alpha / rank) A B`. `None`: `rank` (a scale of 1).
        train: list of layer names, a function `layer -> bool`, or None.
            Layers whose own trainable weights join the space beside the
            adapters (moved by P as well), e.g. a new classification head
            that fine-tuning must train. `None`: the adapters alone.
    """

    kind = "lora"
    ranked = True

    def __init__(
        self,
        rank: int,
        targets: Sequence[str] | Callable | None = None,
        alpha: float | None = None,
        train: Sequence[str] | Callable | None = None,
    ):
        self.rank = check_positive_int("rank", rank)
        self.targets = lora.check_selector("targets", targets)
        self.train = lora.check_selector("train", train)
        if alpha is not None and not (is_number(alpha) and alpha > 0):
            raise ValueError(
                "`alpha` should be a positive number or None. "
                f"{received('alpha', alpha)}"
            )
        self.alpha = alpha

    def _select(self, model: keras.Model, seed: int | None) -> list:
        layers = lora.targets(model, self.targets)
        alpha = self.rank if self.alpha is None else self.alpha
        fresh = [layer for layer in layers if not getattr(layer, "lora_enabled", False)]
        for layer in layers:
            if layer in fresh:
                continue
            if layer.lora_rank != self.rank:
                raise ValueError(
                    f"The layer {layer.name!r} of {model.name!r} already has "
                    f"LoRA of rank {layer.lora_rank}, not the space "
                    f"{self.spec!r}."
                )
            # Keras 3.15 rebuilds a saved LoRA layer with `lora_alpha =
            # lora_rank`, whatever its config said: the space's holds.
            layer.lora_alpha = alpha
        if self.alpha is not None:
            unable = [layer.name for layer in fresh if not _supports_alpha(layer)]
            if unable:
                raise ValueError(
                    f"This Keras ({keras.__version__}) has no `lora_alpha` "
                    f"for the layers {unable}. {received('alpha', self.alpha)}"
                )
        backbone = lora.hub_backbone(model)
        whole = fresh and len(fresh) == len(layers)
        if (
            self.targets is None
            and backbone is not None
            and self.alpha is None
            and whole
        ):
            backbone.enable_lora(self.rank)  # keras-hub's own (as lora.enable)
        else:
            for layer in fresh:
                if self.alpha is None:
                    layer.enable_lora(self.rank)
                else:
                    layer.enable_lora(self.rank, lora_alpha=self.alpha)
        if seed is not None:  # A from the seed in place of Keras' own draw
            for index, layer in enumerate(layers):
                if layer in fresh:
                    a, _ = lora.adapters(layer)
                    a.assign(lora_a(seed, index, a.shape))
        ids = {id(v) for layer in layers for v in lora.adapters(layer)}
        if self.train is not None:  # their weights that could train before
            ids |= {
                id(v)
                for layer in lora.select(model, self.train, "train")
                for v in layer.weights
                if v.trainable and not lora.is_lora(v)
            }
        return [v for v in model.weights if id(v) in ids]

    def drawn(self, model: keras.Model, seed: int) -> dict[int, tf.Tensor]:
        """A of every target layer drawn from `seed` (see `lora_a`), B
        zeros, by `id` of the prepared `model`'s variables."""
        values = {}
        for index, layer in enumerate(lora.targets(model, self.targets)):
            a, b = lora.adapters(layer)
            values[id(a)] = lora_a(seed, index, a.shape)
            values[id(b)] = tf.zeros(b.shape, b.dtype)
        return values

    def _under_adapters(self, model: keras.Model) -> list:
        return [
            v
            for layer in lora.targets(model, self.targets)
            if getattr(layer, "lora_enabled", False)
            for v in layer.weights
        ]

    @property
    def spec(self) -> str:
        """`"lora:RANK"`, with `[alpha=A;targets=...;train=...]` where they
        are not the defaults."""
        parts = []
        if self.alpha is not None:
            parts.append(f"alpha={self.alpha:g}")
        if callable(self.targets):
            parts.append(f"targets={getattr(self.targets, '__name__', 'function')}")
        elif self.targets is not None:
            parts.append(f"targets={','.join(self.targets)}")
        if callable(self.train):
            parts.append(f"train={getattr(self.train, '__name__', 'function')}")
        elif self.train is not None:
            parts.append(f"train={','.join(self.train)}")
        return f"lora:{self.rank}" + (f"[{';'.join(parts)}]" if parts else "")

    def get_config(self) -> dict:
        if callable(self.targets) or callable(self.train):
            raise ValueError(
                f"The space {self.spec!r} has a function as `targets` or "
                "`train`, which cannot be saved: pass a list of layer names "
                "instead."
            )
        config = {"kind": self.kind, "rank": self.rank}
        if self.targets is not None:
            config["targets"] = list(self.targets)
        if self.alpha is not None:
            config["alpha"] = self.alpha
        if self.train is not None:
            config["train"] = list(self.train)
        return config
