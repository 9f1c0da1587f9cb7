"""How many trained parameters does digits need: a random subspace or LoRA?

Runs two d-searches on the same data, recipe and baseline (the `keras-idim
search` defaults: the FC network on scikit-learn's digits, offline):

1. a random Fastfood subspace, searching its dimension d;
2. Keras 3's LoRA adapters on every Dense layer (`enable_lora(r)`, all other
   weights frozen), searching their rank r;

then prints the comparison table (d_int90 and r_int90, and the trained
parameters at each), the wall time of each search, and the size of each
compact file (the subspace's seed and d numbers; LoRA's adapter matrices),
and writes OUT/compare.png: the metric against trained parameters.

    python examples/lora_vs_subspace.py [--out runs/lora_vs_subspace]

The same from the command line:

    keras-idim search --out runs/subspace
    keras-idim search --method lora --out runs/lora
    keras-idim compare runs/subspace runs/lora --out runs/compare.png
"""

from __future__ import annotations

import argparse
import os
import time

import keras

import keras_idim


def main(
    out: str = "runs/lora_vs_subspace",
    epochs: int = 10,
    subspace_dims: str | list[int] = "auto",
    lora_ranks: str | list[int] = "auto",
    verbose: int = 1,
) -> dict:
    """Runs both searches and the comparison.

    Args:
        out: str. Output folder. Defaults to `"runs/lora_vs_subspace"`.
        epochs: int. Epochs per run at most. Defaults to `10`.
        subspace_dims: str or list of int. The d to try. Defaults to `"auto"`.
        lora_ranks: str or list of int. The r to try. Defaults to `"auto"`.
        verbose: int. 0: silent; 1: a line per run. Defaults to `1`.

    Returns:
        A dict: `"subspace"` and `"lora"` (the SearchResults), `"seconds"`
        (wall time of each search), `"compact_bytes"` (each compact file's
        size, `None` when nothing passed) and `"table"` (the comparison).
    """
    train, val, info = keras_idim.data.load("digits", arrays=True)
    model_fn = keras_idim.models.from_spec("fc", info)
    recipe = dict(
        epochs=epochs,
        batch_size=32,
        learning_rate=0.03,
        baseline_learning_rate=1e-3,
        name="fc on digits",
        verbose=verbose,
    )
    results, seconds, sizes = {}, {}, {}
    for method, dims, start in (
        ("subspace", subspace_dims, 10),
        ("lora", lora_ranks, 1),
    ):
        started = time.perf_counter()
        results[method] = keras_idim.search(
            model_fn,
            train,
            val,
            method=method,
            dims=dims,
            start_dim=start,
            results_path=os.path.join(out, method, "results.json"),
            **recipe,
        )
        seconds[method] = time.perf_counter() - started
        sizes[method] = _compact_size(results[method], model_fn, train, out, method)
    table = keras_idim.compare(
        [results["subspace"], results["lora"]], path=os.path.join(out, "compare.png")
    )
    if verbose:
        print(table)
        for method in results:
            size = sizes[method]
            print(
                f"{method}: search {seconds[method]:.1f} s, compact file "
                f"{'--' if size is None else f'{size:,} bytes'}"
            )
    return {
        **results,
        "seconds": seconds,
        "compact_bytes": sizes,
        "table": table,
    }


def _compact_size(result, model_fn, train, out, method) -> int | None:
    """The size in bytes of the answer's compact file, without its base
    (`None` when nothing passed). The model is built at the answer's d or
    r and saved untrained: a file's size does not depend on the values."""
    if result.d_int is None:
        return None
    keras.utils.set_random_seed(0)
    model = model_fn()
    if method == "lora":
        keras_idim.lora.enable(model, result.d_int)
    else:
        model = keras_idim.SubspaceModel(model, result.d_int)
    path = os.path.join(out, method, "compact.npz")
    keras_idim.save_compact(model, path, include_base=False, overwrite=True)
    return os.path.getsize(path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/lora_vs_subspace")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    main(out=args.out, epochs=args.epochs)
