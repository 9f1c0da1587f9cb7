"""Spaces: the set of a model's weights that theta_d moves.

A `SubspaceModel` trains `theta = theta_0 + P theta_d` over the weights of
a *space*:

- `Weights()`: every trainable weight of the model (Li et al. 2018, the
  default), or, with `include` / `exclude` globs on the variables' paths,
  a subset of them (e.g. `Weights(include=["*bias"])`: BitFit's biases).
- `LoRA(rank)`: the low-rank adapters (A, B) that Keras 3's `enable_lora`
  puts on the target layers; the layers' own weights stay frozen, and
  theta_0 is the adapters' initialisation (A random, B zero), so that
  theta_d = 0 is the original model's function.

`Space.prepare(model, seed)` readies a model (enables LoRA, drawing each
new A from `seed`: a SubspaceModel passes its own) and returns the space's
variables in P's row order, leaving exactly them trainable.
`get(identifier)` turns `None`, a spec string (`"weights"`, `"lora:4"`),
a config dict or a `Space` into a `Space`.
"""

from __future__ import annotations

import fnmatch
import inspect
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from keras_idim import lora
from keras_idim.projections.base import derive_seed
from keras_idim.utils.validation import (
    check_positive_int,
    check_seed,
    is_number,
    received,
)

#: The forms `get` accepts, quoted in its errors.
ACCEPTED = (
    "None (every trainable weight), a Space, a config dict, or a string: "
    "'weights', 'weights[include=GLOB,...;exclude=GLOB,...]', 'lora:RANK' "
    "or 'lora:RANK[alpha=A;targets=LAYER,...;train=LAYER,...]' "
    "(case-insensitive name)"
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


class _Prepared:
    """What `prepare` did to a model (its space's config and variables, and
    the weights outside it that no training changes), kept where Keras'
    attribute tracking does not see it."""

    def __init__(self, config: dict, variables: list, fixed: set[int]):
        self.config = config
        self.variables = list(variables)
        self.fixed = set(fixed)


_MARK = "_keras_idim_space"


def fixed_weights(model: keras.Model) -> list:
    """The weights of a model readied by `Space.prepare` that lie outside
    its space and that training in the space never changes: those that
    could train before `prepare` froze them, and the layers' own weights
    under LoRA adapters (not, e.g., a BatchNorm's moving statistics).

    Raises:
        ValueError: `model` was not prepared.
    """
    marked = getattr(model, _MARK, None)
    if marked is None:
        raise ValueError(f"The model {model.name!r} was not prepared for a space.")
    return [v for v in model.weights if id(v) in marked.fixed]


class Space:
    """The weights of a model that a subspace moves (see the module doc)."""

    #: The name in spec strings and configs.
    kind = ""

    def prepare(self, model: keras.Model, seed: int | None = None) -> list:
        """Readies `model` and returns the space's variables, in P's order.

        Afterwards exactly those variables of `model` are trainable; every
        other one that was trainable is frozen (`trainable = False`). Called
        again on the model it prepared, or on one deserialised from a saved
        one, it returns the same variables in the same order (and draws
        nothing again).

        Args:
            model: keras.Model. A built model.
            seed: int or None. The seed of the random initial values that
                the space gives the weights it adds (LoRA's A matrices, see
                `LoRA`): with one, the same model, space and seed give the
                same theta_0 bit for bit in any process (a SubspaceModel
                passes its own `seed`). `None`: Keras' own draw, from its
                global random state. Weights the model already had (a layer
                whose LoRA was enabled before) keep their values. Defaults
                to `None`.

        Raises:
            ValueError: the model was prepared for another space, or the
                space selects nothing of it.
        """
        if seed is not None:
            seed = check_seed(seed)
        marked = getattr(model, _MARK, None)
        if marked is not None and marked.config != self.get_config():
            raise ValueError(
                f"`base_model` ({model.name!r}) was already prepared for the "
                f"space {get(marked.config).spec!r}: it cannot become the "
                f"space {self.spec!r}. Build a fresh model."
            )
        if marked is None:
            trainable_before = {id(v) for v in model.weights if v.trainable}
            variables = self._select(model, seed)
        else:
            variables = marked.variables
        chosen = {id(v) for v in variables}
        for v in model.weights:
            if id(v) in chosen:
                v.trainable = True
            elif v.trainable:
                v.trainable = False
        if marked is None:
            # Outside the space, what could train before (or sits under an
            # adapter, which Keras froze): training the space changes none
            # of it, unlike e.g. a BatchNorm's moving statistics.
            fixed = trainable_before | {
                id(v) for v in self._under_adapters(model) if not lora.is_lora(v)
            }
            object.__setattr__(
                model,
                _MARK,
                _Prepared(self.get_config(), variables, fixed - chosen),
            )
        return list(variables)

    def drawn(self, model: keras.Model, seed: int) -> dict[int, tf.Tensor]:
        """The initial values that `prepare(model, seed=seed)` draws for the
        weights it adds, by `id` of variable of the prepared `model` (for
        LoRA: A from `seed`, B zeros, of every target layer; none for
        `Weights`). A compact file without its base re-draws them."""
        return {}

    def _under_adapters(self, model: keras.Model) -> list:
        """The weights of the layers that carry the space's adapters."""
        return []

    def _select(self, model: keras.Model, seed: int | None) -> list:
        raise NotImplementedError

    @property
    def spec(self) -> str:
        """A short readable name, e.g. `"weights"` or `"lora:4"`."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"kind": self.kind}

    @classmethod
    def from_config(cls, config: dict) -> Space:
        return get(config)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Space) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"<Space {self.spec}>"


def _check_patterns(name: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, str) and v for v in value)
    ):
        return list(value)
    raise ValueError(
        f"`{name}` should be None, or a non-empty list of glob patterns "
        f"matched against the variables' paths (e.g. ['*bias']). "
        f"{received(name, value)}"
    )


class Weights(Space):
    """Every trainable weight of the model, or those whose `path` matches
    one of `include`'s globs (fnmatch, case-sensitive) and none of
    `exclude`'s.

    Args:
        include: list of str or None. Globs such as `"*bias"` (BitFit) or
            `"*attention*"`; `None`: every trainable weight.
        exclude: list of str or None. Globs of weights left out.
    """

    kind = "weights"

    def __init__(
        self,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
    ):
        self.include = _check_patterns("include", include)
        self.exclude = _check_patterns("exclude", exclude)

    def _select(self, model: keras.Model, seed: int | None) -> list:
        del seed  # nothing drawn
        candidates = list(model.trainable_variables)
        paths = [v.path for v in candidates]
        chosen = candidates
        for name, patterns, keep in (
            ("include", self.include, True),
            ("exclude", self.exclude, False),
        ):
            if patterns is None:
                continue
            if not any(fnmatch.fnmatchcase(p, q) for p in paths for q in patterns):
                raise ValueError(
                    f"`{name}` matches none of the trainable weights of "
                    f"{model.name!r}, whose paths are e.g. {paths[:6]}. "
                    f"{received(name, patterns)}"
                )
            chosen = [
                v
                for v in chosen
                if any(fnmatch.fnmatchcase(v.path, p) for p in patterns) == keep
            ]
        if not chosen and (self.include or self.exclude):
            raise ValueError(
                f"`include`/`exclude` leave no weight of {model.name!r} in "
                f"the space {self.spec!r}; its paths are e.g. {paths[:6]}."
            )
        return chosen

    @property
    def spec(self) -> str:
        """`"weights"`, or `"weights[include=GLOB,...;exclude=GLOB,...]"`."""
        parts = [
            f"{name}={','.join(value)}"
            for name, value in (("include", self.include), ("exclude", self.exclude))
            if value
        ]
        return "weights" + (f"[{';'.join(parts)}]" if parts else "")

    def get_config(self) -> dict:
        config = {"kind": self.kind}
        if self.include is not None:
            config["include"] = list(self.include)
        if self.exclude is not None:
            config["exclude"] = list(self.exclude)
        return config


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


_SPEC = re.compile(r"^\s*(\w+)(?::(\S+?))?\s*(?:\[(.*)\])?\s*$", re.DOTALL)


def _parse(identifier: str) -> Space:
    """A spec string (`Space.spec`'s form) as a Space; ValueError if not."""
    match = _SPEC.match(identifier)
    if match is None:
        raise ValueError
    kind, rank, options = match.groups()
    kind = kind.lower()
    kwargs: dict[str, Any] = {}
    for part in (options or "").split(";"):
        if not part.strip():
            continue
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if key == "alpha":
            try:
                kwargs[key] = float(value)
            except ValueError:
                raise ValueError from None
        elif key in ("include", "exclude", "targets", "train"):
            kwargs[key] = [v.strip() for v in value.split(",") if v.strip()]
        else:
            raise ValueError
    if kind == "weights" and rank is None:
        return Weights(**kwargs)
    if kind == "lora" and rank is not None and rank.isdigit():
        return LoRA(int(rank), **kwargs)
    raise ValueError


def get(identifier: Any) -> Space:
    """The Space for `identifier` (see `ACCEPTED`).

    Example:

    >>> get("lora:4").spec
    'lora:4'
    >>> get(None) == Weights()
    True
    """
    if identifier is None:
        return Weights()
    if isinstance(identifier, Space):
        return identifier
    if isinstance(identifier, dict):
        config = dict(identifier)
        kind = config.pop("kind", None)
        classes = {"weights": Weights, "lora": LoRA}
        if kind in classes:
            try:
                return classes[kind](**config)
            except TypeError as e:
                raise ValueError(
                    f"`space` config does not fit {classes[kind].__name__}: {e}. "
                    f"{received('space', identifier)}"
                ) from None
    elif isinstance(identifier, str):
        try:
            return _parse(identifier)
        except ValueError as e:
            if str(e):  # the space's own check (e.g. a rank of 0)
                raise ValueError(f"{e} (in `space={identifier!r}`)") from None
    raise ValueError(f"`space` should be {ACCEPTED}. {received('space', identifier)}")
