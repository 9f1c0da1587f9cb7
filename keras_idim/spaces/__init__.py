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

import re
from typing import Any

from keras_idim import lora  # noqa: F401 (the LoRA helpers, as `spaces.lora`)
from keras_idim.spaces.base import Space, fixed_weights
from keras_idim.spaces.lora_space import LORA_STREAM, LoRA, lora_a
from keras_idim.spaces.weights import Weights
from keras_idim.utils.validation import received

#: The forms `get` accepts, quoted in its errors.
ACCEPTED = (
    "None (every trainable weight), a Space, a config dict, or a string: "
    "'weights', 'weights[include=GLOB,...;exclude=GLOB,...]', 'lora:RANK' "
    "or 'lora:RANK[alpha=A;targets=LAYER,...;train=LAYER,...]' "
    "(case-insensitive name)"
)


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
    space = kinds().get(kind)
    if space is None or space.ranked != (rank is not None):
        raise ValueError
    if rank is None:
        return space(**kwargs)
    if not rank.isdigit():
        raise ValueError
    return space(int(rank), **kwargs)


def kinds() -> dict[str, type[Space]]:
    """The Space classes by their `kind` (the name in specs and configs)."""
    return {space.kind: space for space in (Weights, LoRA)}


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
        classes = kinds()
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


__all__ = [
    "LORA_STREAM",
    "LoRA",
    "Space",
    "Weights",
    "fixed_weights",
    "get",
    "kinds",
    "lora_a",
]
