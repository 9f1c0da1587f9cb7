"""The base class of the spaces: what `prepare` does to a model and
keeps on it."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_idim import lora
from keras_idim.utils.validation import check_seed


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
    #: Whether a spec string gives a rank after the kind (`lora:4`).
    ranked = False

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
                f"space {_spec_of(marked.config)!r}: it cannot become the "
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
        from keras_idim.spaces import get

        return get(config)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Space) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"<Space {self.spec}>"


def _spec_of(config: dict) -> str:
    from keras_idim.spaces import get

    return get(config).spec
