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

With keras-hub installed (`pip install "keras-idim[hub]"`), `--hub PRESET`
asks the same question of fine-tuning: the text classifier of
examples/said_glue.py on a GLUE task (default MRPC), SAID subspaces against
LoRA on the backbone's own targets (its attention's query and value
projections), the new classification head ("logits") trained in full
beside the adapters and counted in LoRA's trained parameters:

    python examples/lora_vs_subspace.py --hub bert_small_en_uncased --task mrpc
"""

from __future__ import annotations

import argparse
import functools
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
    """Runs both searches on digits and the comparison.

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
    return compare_methods(
        keras_idim.models.from_spec("fc", info),
        train,
        val,
        out=out,
        searches={
            "subspace": dict(dims=subspace_dims, start_dim=10),
            "lora": dict(method="lora", dims=lora_ranks, start_dim=1),
        },
        recipe=dict(
            epochs=epochs,
            batch_size=32,
            learning_rate=0.03,
            baseline_learning_rate=1e-3,
            name="fc on digits",
        ),
        verbose=verbose,
    )


def main_hub(
    preset: str = "bert_small_en_uncased",
    task: str = "mrpc",
    out: str = "runs/lora_vs_said",
    epochs: int = 3,
    subspace_dims: str | list[int] = "auto",
    lora_ranks: str | list[int] = "auto",
    batch_size: int = 32,
    sequence_length: int = 128,
    train_split: str = "train",
    data_dir: str | None = None,
    verbose: int = 1,
) -> dict:
    """Both searches on the keras-hub classifier of examples/said_glue.py.

    SAID subspaces (d from twice the number of weight tensors) against
    LoRA on the backbone's own targets with the head ("logits") trained in
    full; the same data, epochs and local baseline (full fine-tuning, Adam
    at 2e-5). Arguments as in `main` and `said_glue.main`.

    Returns:
        As `main`.
    """
    import said_glue  # beside this file

    spec = said_glue.TASKS[task]
    model_fn = functools.partial(
        said_glue.classifier, preset, spec.num_classes, sequence_length
    )
    data = functools.partial(
        said_glue.glue_dataset,
        task,
        preset=preset,
        batch_size=batch_size,
        sequence_length=sequence_length,
        data_dir=data_dir,
    )
    return compare_methods(
        model_fn,
        functools.partial(data, train_split, shuffle=True),
        functools.partial(data, spec.validation, shuffle=False),
        out=out,
        searches={
            "subspace": dict(
                dims=subspace_dims,
                start_dim=said_glue.said_start_dim(model_fn),
                structure_aware=True,
                learning_rate=1e-3,
            ),
            "lora": dict(
                method="lora",
                dims=lora_ranks,
                start_dim=1,
                lora_train=["logits"],
                learning_rate=1e-3,
            ),
        },
        recipe=dict(
            epochs=epochs,
            baseline_learning_rate=2e-5,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            name=f"{preset} on glue/{task}",
        ),
        verbose=verbose,
    )


def compare_methods(
    model_fn, train, val, *, out: str, searches: dict, recipe: dict, verbose: int
) -> dict:
    """Runs one search per entry of `searches` (its name -> its own
    arguments, e.g. `method`, `space`; `recipe`: the arguments they share),
    each in OUT/NAME, and compares them all in OUT."""
    results, seconds, sizes = {}, {}, {}
    for name, arguments in searches.items():
        started = time.perf_counter()
        results[name] = keras_idim.search(
            model_fn,
            train,
            val,
            results_path=os.path.join(out, name, "results.json"),
            verbose=verbose,
            **recipe,
            **arguments,
        )
        seconds[name] = time.perf_counter() - started
        sizes[name] = _compact_size(
            results[name], model_fn, os.path.join(out, name), arguments
        )
    table = keras_idim.compare(  # the example's own figure, drawn again on a rerun
        list(results.values()),
        path=os.path.join(out, "compare.png"),
        overwrite=True,
    )
    if verbose:
        print(table)
        for name in results:
            size = sizes[name]
            print(
                f"{name}: search {seconds[name]:.1f} s, compact file "
                f"{'--' if size is None else f'{size:,} bytes'}"
            )
    return {
        **results,
        "seconds": seconds,
        "compact_bytes": sizes,
        "table": table,
    }


def _compact_size(result, model_fn, out, arguments) -> int | None:
    """The size in bytes of the answer's compact file, without its base
    (`None` when nothing passed). The model is built at the answer's d or
    r and saved untrained: a file's size does not depend on the values."""
    if result.d_int is None:
        return None
    keras.utils.set_random_seed(0)
    model = model_fn()
    if result.method == "lora":
        keras_idim.lora.enable(model, result.d_int, train=arguments.get("lora_train"))
    else:
        model = keras_idim.SubspaceModel(
            model,
            result.d_int,
            projection=arguments.get("projection", "fastfood"),
            structure_aware=arguments.get("structure_aware", False),
            space=arguments.get("space"),
        )
    path = os.path.join(out, "compact.npz")
    keras_idim.save_compact(model, path, include_base=False, overwrite=True)
    return os.path.getsize(path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="default runs/lora_vs_subspace")
    parser.add_argument(
        "--epochs", type=int, default=None, help="default 10 on digits, 3 with --hub"
    )
    parser.add_argument(
        "--hub", metavar="PRESET", help="a keras-hub classifier preset, on GLUE"
    )
    parser.add_argument("--task", default="mrpc", help="the GLUE task, with --hub")
    parser.add_argument("--train-split", default="train", help="with --hub")
    parser.add_argument("--data-dir", default=None, help="TFDS data_dir, with --hub")
    args = parser.parse_args()
    if args.hub:
        main_hub(
            preset=args.hub,
            task=args.task,
            out=args.out or "runs/lora_vs_said",
            epochs=args.epochs or 3,
            train_split=args.train_split,
            data_dir=args.data_dir,
        )
    else:
        main(out=args.out or "runs/lora_vs_subspace", epochs=args.epochs or 10)
