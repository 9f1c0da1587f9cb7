"""`Weights`: every trainable weight of a model, or a subset by globs."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import keras

from keras_idim.spaces.base import Space
from keras_idim.utils.validation import received


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
