"""The file `keras-idim search` writes beside its results (`search.json`),
and what `keras-idim export OUT` rebuilds from it: the search's result and
its model function."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable


def model_fn(spec: str, info) -> Callable:
    """A builder of fresh base models for `--model`."""
    from keras_idim import models

    return models.from_spec(spec, info)


#: What `keras-idim search` writes beside results.json so that `keras-idim
#: export OUT` can rebuild model_fn (a results file holds no function).
SEARCH_SPEC = "search.json"
#: Version of its format (a file without `format_version`, written by
#: keras_idim 0.1.0, is of version 1).
SEARCH_SPEC_VERSION = 1


def write_search_spec(out: str, args: argparse.Namespace) -> None:
    """Writes `SEARCH_SPEC` into `out`: the `--model` (a .keras path made
    absolute) and `--dataset` of a search, for `keras-idim export OUT`."""
    import json

    from keras_idim.utils.io import atomic_write

    model = args.model
    if model.endswith(".keras"):  # a saved model: found again from anywhere
        model = os.path.abspath(model)
    os.makedirs(out, exist_ok=True)
    atomic_write(
        os.path.join(out, SEARCH_SPEC),
        json.dumps(
            {
                "format_version": SEARCH_SPEC_VERSION,
                "model": model,
                "dataset": args.dataset,
                "data_dir": args.data_dir,
            },
            indent=1,
        ),
    )


def search_model(folder: str, args: argparse.Namespace):
    """The result of a `keras-idim search` from its OUT folder, and its
    model_fn, from the `--model` and `--dataset` it recorded."""
    import json

    from keras_idim import data
    from keras_idim.dimsearch.result import SearchResult

    results = os.path.join(folder, "results.json")
    spec_path = os.path.join(folder, SEARCH_SPEC)
    if not os.path.isfile(results):
        raise ValueError(
            f"SOURCE {folder!r} is a folder without a results.json: give the "
            "OUT folder of a `keras-idim search`, a .keras or a .npz file."
        )
    if not os.path.isfile(spec_path):
        raise ValueError(
            f"SOURCE {folder!r} holds no {SEARCH_SPEC}: it was not written by "
            "`keras-idim search` (or by an older one), so its model function "
            "is unknown and its model cannot be rebuilt from the folder alone. "
            "In Python: `keras_idim.SearchResult.from_json(PATH)"
            ".model(model_fn=..., d=..., seed=...)`."
        )
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    if spec.get("format_version", 1) != SEARCH_SPEC_VERSION:
        raise ValueError(
            f"{spec_path!r} has format version {spec['format_version']!r}; this "
            f"keras_idim reads version {SEARCH_SPEC_VERSION}."
        )
    result = SearchResult.from_json(results)
    info = data.load(
        spec["dataset"], arrays=True, data_dir=spec.get("data_dir"), download=False
    )[2]
    return result, model_fn(spec["model"], info)
