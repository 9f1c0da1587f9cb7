"""`keras_idim_export`: the one decorator that exports and registers.

Modelled on keras-hub's `keras_hub_export`: every public object of
keras_idim is decorated where it is defined, with its public path(s):

    @keras_idim_export("keras_idim.SubspaceModel")
    class SubspaceModel(keras.Model): ...

    STATUSES = keras_idim_export("keras_idim.dimsearch.STATUSES")(("ok", ...))

The decorator does two things, and returns the object unchanged:

- It records each public path in a registry (`exported()`): this is the
  single list of keras_idim's public names.
- A Keras-serializable class (a class with `get_config`: a layer, a model,
  a callback, a `Projection`) is registered with
  `keras.saving.register_keras_serializable(package="keras_idim")`, under
  `keras_idim>ClassName`, the name every saved `.keras` file and config
  holds. Functions, exceptions and other objects are only recorded, so the
  modules that define them need not import Keras.

`import keras_idim` loads nothing until a name is touched, so the packages'
lazy tables (`keras_idim._EXPORTS`, `keras_idim.dimsearch._EXPORTS`,
`keras_idim.data._EXPORTS`) must say statically where each name lives.
They are checked against this registry, not written from it:
`tests/test_exports.py` imports every module of keras_idim and checks that
each decorated path resolves (through the lazy `__getattr__` where there
is one) to the decorated object, that each table entry is decorated or is
a module, and that each registered class round-trips through
`keras.saving.get_registered_object`.

Keras is imported only when a Keras-serializable class is decorated, so
modules without TensorFlow (`keras_idim.dimsearch.strategy`, `records`)
can export their names too.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

#: The package name of keras_idim's registered classes (`keras_idim>Name`).
PACKAGE = "keras_idim"

_PATH = re.compile(r"^keras_idim(\.[A-Za-z_][A-Za-z0-9_]*)+$")

#: Public path -> the object exported there, filled as modules are imported.
_REGISTRY: dict[str, Any] = {}

T = TypeVar("T")


def is_keras_serializable(symbol: Any) -> bool:
    """Whether `keras_idim_export` registers `symbol` with Keras: a class
    with `get_config` (keras-hub's rule, for classes only)."""
    return isinstance(symbol, type) and callable(getattr(symbol, "get_config", None))


class keras_idim_export:  # noqa: N801 (a decorator, named as keras-hub's)
    """Exports an object under its public path(s), registering it with
    Keras if it is a Keras-serializable class.

    Args:
        *paths: str. The public paths, e.g. `"keras_idim.SubspaceModel"`,
            `"keras_idim.dimsearch.search"`: each `keras_idim.` followed by
            dotted names. At least one.

    Example:

    ```python
    @keras_idim_export("keras_idim.dimsearch.RunRecord")
    @dataclasses.dataclass
    class RunRecord: ...
    ```
    """

    def __init__(self, *paths: str):
        if not paths:
            raise ValueError("`keras_idim_export` needs at least one public path.")
        for path in paths:
            if not isinstance(path, str) or not _PATH.match(path):
                raise ValueError(
                    "Each public path should be `keras_idim.` followed by "
                    f"dotted names, e.g. 'keras_idim.SubspaceModel'. Received: "
                    f"path={path!r}"
                )
        self.paths = paths

    def __call__(self, symbol: T) -> T:
        for path in self.paths:
            previous = _REGISTRY.get(path, symbol)
            if previous is not symbol and not _same_definition(previous, symbol):
                raise ValueError(
                    f"The public path {path!r} is taken by {previous!r}; it "
                    f"cannot also name {symbol!r}."
                )
        if is_keras_serializable(symbol):
            import keras

            keras.saving.register_keras_serializable(package=PACKAGE)(symbol)
        for path in self.paths:
            _REGISTRY[path] = symbol
        return symbol


def _same_definition(a: Any, b: Any) -> bool:
    """Whether `a` and `b` are one definition imported twice (a module
    reloaded), which may take its path again."""
    names = ("__module__", "__qualname__")
    return all(getattr(a, n, None) is not None for n in names) and all(
        getattr(a, n, None) == getattr(b, n, None) for n in names
    )


def exported() -> dict[str, Any]:
    """Every public path recorded so far, with its object.

    Only the modules imported so far have recorded theirs: import a module
    (or touch a lazy name) before looking its names up here.

    Returns:
        A new dict, public path -> object.

    Example:

    >>> import keras_idim.dimsearch.records
    >>> exported()["keras_idim.dimsearch.RunRecord"].__name__
    'RunRecord'
    """
    return dict(_REGISTRY)


__all__ = ["PACKAGE", "exported", "is_keras_serializable", "keras_idim_export"]
