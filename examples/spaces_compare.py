"""The intrinsic dimension of each parameterisation, on one axis.

How few trained numbers reach 90 % of full training, when theta_d moves:

1. every weight (`space="weights"`, Li et al.);
2. the LoRA matrices of rank 4 (`space="lora:4"`: theta_0 is the LoRA
   initialisation, the original weights stay frozen);
3. the LoRA matrices of rank 16 (`space="lora:16"`);

and LoRA itself, its rank r searched (`method="lora"`). All four searches
share the data, the recipe and one local baseline (full training), so
their answers are comparable; `keras_idim.compare` prints the table (the
fewest trained numbers that reach the threshold in each
parameterisation, and their bytes as float32) and draws OUT/compare.png.

    python examples/spaces_compare.py [--out runs/spaces_compare]

The same from the command line:

    keras-idim search --out runs/weights
    keras-idim search --space lora:4 --baseline-from runs/weights --out runs/lora4
    keras-idim search --space lora:16 --baseline-from runs/weights --out runs/lora16
    keras-idim search --method lora --baseline-from runs/weights --out runs/lora
    keras-idim compare runs/weights runs/lora4 runs/lora16 runs/lora

With keras-hub installed, `--hub PRESET` asks it of a text classifier on
a GLUE task (examples/said_glue.py; `--hub tiny-random` builds a tiny
random-init backbone offline, a preset downloads its weights): SAID
subspaces of the weights and of the LoRA spaces, against LoRA's rank.
"""

from __future__ import annotations

import argparse
import functools

import keras
from lora_vs_subspace import compare_methods  # beside this file

import keras_idim

#: The parameterisations compared: a search's name -> its own arguments.
SPACES = {
    "weights": {"space": "weights"},
    "lora4": {"space": "lora:4"},
    "lora16": {"space": "lora:16"},
}


def main(
    out: str = "runs/spaces_compare",
    epochs: int = 10,
    dims: str | list[int] = "auto",
    lora_ranks: str | list[int] = "auto",
    seeds: tuple = (0,),
    verbose: int = 1,
) -> dict:
    """The four searches on digits (the FC network of `keras-idim search`).

    Args:
        out: str. Output folder. Defaults to `"runs/spaces_compare"`.
        epochs: int. Epochs per run at most. Defaults to `10`.
        dims: str or list of int. The d of each subspace search. Defaults
            to `"auto"`.
        lora_ranks: str or list of int. The r of the LoRA search. Defaults
            to `"auto"`.
        seeds: tuple. Seeds of every search. Defaults to `(0,)`.
        verbose: int. 0: silent; 1: a line per run. Defaults to `1`.

    Returns:
        As `lora_vs_subspace.compare_methods`: each search's SearchResult
        by name (`weights`, `lora4`, `lora16`, `lora`), `seconds`,
        `compact_bytes` and `table`.
    """
    train, val, info = keras_idim.data.load("digits", arrays=True)
    searches = {
        name: dict(dims=dims, start_dim=10, **arguments)
        for name, arguments in SPACES.items()
    }
    searches["lora"] = dict(method="lora", dims=lora_ranks, start_dim=1)
    return compare_methods(
        keras_idim.models.from_spec("fc", info),
        train,
        val,
        out=out,
        searches=_sharing_one_baseline(searches, out),
        recipe=dict(epochs=epochs, seeds=seeds, name="fc on digits"),
        verbose=verbose,
    )


def main_hub(
    preset: str = "bert_small_en_uncased",
    task: str = "mrpc",
    out: str = "runs/spaces_compare_hub",
    epochs: int = 3,
    dims: str | list[int] = "auto",
    lora_ranks: str | list[int] = "auto",
    batch_size: int = 32,
    sequence_length: int = 128,
    data_dir: str | None = None,
    verbose: int = 1,
) -> dict:
    """The four searches on the keras-hub classifier of
    examples/said_glue.py: SAID subspaces of the weights and of the LoRA
    spaces (on the backbone's own targets, the new head "logits" in the
    space too), and LoRA's rank with the head trained in full. Arguments as
    in `main` and `said_glue.main`."""
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
    searches = {}
    for name, arguments in SPACES.items():
        space = keras_idim.spaces.get(arguments["space"])
        if isinstance(space, keras_idim.spaces.LoRA):  # the new head trains too
            space = keras_idim.spaces.LoRA(space.rank, train=["logits"])
        searches[name] = dict(
            dims=dims,
            start_dim=2 * _tensors(model_fn, space) + 2,
            structure_aware=True,
            learning_rate=1e-3,
            space=space,
        )
    searches["lora"] = dict(
        method="lora",
        dims=lora_ranks,
        start_dim=1,
        lora_train=["logits"],
        learning_rate=1e-3,
    )
    return compare_methods(
        model_fn,
        functools.partial(data, "train", shuffle=True),
        functools.partial(data, spec.validation, shuffle=False),
        out=out,
        searches=_sharing_one_baseline(searches, out),
        recipe=dict(
            epochs=epochs,
            baseline_learning_rate=2e-5,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            name=f"{preset} on glue/{task}",
        ),
        verbose=verbose,
    )


def _tensors(model_fn, space) -> int:
    """How many weight tensors `space` holds in the model: SAID's scales."""
    return len(space.prepare(model_fn()))


def _sharing_one_baseline(searches: dict, out: str) -> dict:
    """Every search after the first reuses the first one's local baseline
    (its results file), so all are judged against one threshold."""
    first = next(iter(searches))
    path = f"{out}/{first}/results.json"
    return {
        name: arguments if name == first else {**arguments, "baseline": path}
        for name, arguments in searches.items()
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="default runs/spaces_compare")
    parser.add_argument(
        "--epochs", type=int, default=None, help="default 10 on digits, 3 with --hub"
    )
    parser.add_argument(
        "--hub", metavar="PRESET", help="a keras-hub classifier preset, on GLUE"
    )
    parser.add_argument("--task", default="mrpc", help="the GLUE task, with --hub")
    parser.add_argument("--data-dir", default=None, help="TFDS data_dir, with --hub")
    args = parser.parse_args()
    if args.hub:
        main_hub(
            preset=args.hub,
            task=args.task,
            out=args.out or "runs/spaces_compare_hub",
            epochs=args.epochs or 3,
            data_dir=args.data_dir,
        )
    else:
        main(out=args.out or "runs/spaces_compare", epochs=args.epochs or 10)
