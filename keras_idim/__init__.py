"""keras_idim: the intrinsic dimension of objective landscapes, in Keras 3.

Train any built Keras model only in a random d-dimensional subspace of its
D weights, theta = theta_0 + P theta_d (Li et al., ICLR 2018), and find the
smallest d that reaches 90 % of full training.

The public names load on first use: `import keras_idim` imports neither
TensorFlow nor tensorflow_datasets, Ray or matplotlib until a name that
needs them is touched.
"""

from __future__ import annotations

import importlib
from typing import Any

from keras_idim.version import __version__

#: Public name -> (module, attribute or None for the module itself). Each
#: attribute is decorated with `keras_idim_export("keras_idim.NAME")` where
#: it is defined (`keras_idim.utils.exports`); tests/test_exports.py checks
#: that this table and the decorator agree.
_EXPORTS = {
    "SubspaceModel": ("keras_idim.subspace", "SubspaceModel"),
    "search": ("keras_idim.dimsearch.api", "search"),
    "SearchResult": ("keras_idim.dimsearch.result", "SearchResult"),
    "compare": ("keras_idim.dimsearch.comparison", "compare"),
    "lora": ("keras_idim.lora", None),
    "spaces": ("keras_idim.spaces", None),
    "export_saved_model": ("keras_idim.export", "export_saved_model"),
    "save_compact": ("keras_idim.compact", "save_compact"),
    "load_compact": ("keras_idim.compact", "load_compact"),
    "callbacks": ("keras_idim.callbacks", None),
    "data": ("keras_idim.data", None),
    "dimsearch": ("keras_idim.dimsearch", None),
    "models": ("keras_idim.models", None),
    "projections": ("keras_idim.projections", None),
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_idim' has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
