"""Intrinsic dimension of fine-tuning: SAID on a GLUE task with keras-hub.

The experiment of Aghajanyan, Zettlemoyer and Gupta (2020): how many
dimensions does fine-tuning a pretrained language model on a small task
need? This example

- takes a keras-hub text classifier from a preset (default
  `bert_small_en_uncased`; the paper's models are BERT-base and larger, e.g.
  `--preset bert_base_en_uncased`), a fresh classification head on the
  pretrained backbone;
- fine-tunes it in structure-aware subspaces (SAID: Fastfood, plus one
  trainable scale per weight tensor) on a GLUE task from TFDS (default
  MRPC, paraphrase detection: 3,668 training and 408 validation pairs);
- finds d90 with `keras_idim.search`: the smallest d whose fine-tuned
  validation accuracy reaches 90 % of full fine-tuning's (the local
  baseline, trained with the same data and epochs, Adam at 2e-5).

    pip install "keras-idim[hub]"
    python examples/said_glue.py --preset bert_base_en_uncased --task mrpc

Tokenising happens in the data pipeline (the preset's own preprocessor,
mapped over the TFDS examples inside each run), so the model sees token ids
and `--workers N` (Ray) builds the same pipeline on every worker. The
preset's weights and GLUE download on first use (kagglehub's and TFDS's
caches); without a network, prepare GLUE elsewhere and pass `--data-dir`
(see `keras_idim.data.tfds_splits`).

What to expect: the paper reports d90 in the hundreds to a few thousand for
BERT- and RoBERTa-sized models on MRPC, against D ~ 10^8, and lower d90 for
larger pretrained models. Mind the floor: on MRPC, always answering
"paraphrase" already scores 68 % of the validation set, so a threshold
below that is met by any d; the example prints the majority-class accuracy
beside the threshold.

How long it takes: a search is about log2(d90 / start_dim) + 4 runs of
`--epochs` epochs each, plus the baseline. Every step of a d-run costs a
forward and backward pass of the whole network plus two passes of the
projection over its D weights (see bench/RESULTS.md for the ratio to plain
fine-tuning), so it wants a GPU: a base-sized model (10^8 weights) at batch
32 x 128 tokens fits a 16 GB GPU; large presets want 40 GB or more. On a
CPU, use `--preset tiny-random` or a small preset with
`--train-split "train[:10%]"`.

`--preset tiny-random` builds a 2-layer random-init BERT with a character
vocabulary, offline: a smoke test of the whole pipeline, not a measurement.
It still needs the GLUE task's data, from TFDS (downloaded on first use, or
prepared in `--data-dir`); `--no-download` never downloads, and data that
cannot be had end the script with one line saying how to prepare them.

    python examples/said_glue.py --preset tiny-random --epochs 1
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections import Counter
from typing import NamedTuple

import keras
import tensorflow as tf

import keras_idim

#: The offline stand-in for a preset: a random-init 2-layer BERT.
TINY_PRESET = "tiny-random"
_CHARACTERS = list("abcdefghijklmnopqrstuvwxyz0123456789.,'-")
TINY_VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
    prefix + c for prefix in ("", "##") for c in _CHARACTERS
]


class GlueTask(NamedTuple):
    """A GLUE classification task in TFDS: its text features, classes and
    labelled validation split (GLUE's test labels are hidden)."""

    features: tuple[str, ...]
    num_classes: int
    validation: str = "validation"


#: The GLUE classification tasks (STS-B, a regression, is left out).
TASKS = {
    "mrpc": GlueTask(("sentence1", "sentence2"), 2),
    "rte": GlueTask(("sentence1", "sentence2"), 2),
    "cola": GlueTask(("sentence",), 2),
    "sst2": GlueTask(("sentence",), 2),
    "qnli": GlueTask(("question", "sentence"), 2),
    "qqp": GlueTask(("question1", "question2"), 2),
    "mnli": GlueTask(("premise", "hypothesis"), 3, "validation_matched"),
}


def _keras_hub():
    try:
        import keras_hub
    except ImportError:
        raise SystemExit(
            "This example needs keras-hub: pip install 'keras-idim[hub]'"
        ) from None
    return keras_hub


def preprocessor(preset: str, sequence_length: int) -> keras.layers.Layer:
    """The preset's text-classification preprocessor (tokeniser, [CLS]/[SEP],
    padding to `sequence_length`)."""
    keras_hub = _keras_hub()
    if preset == TINY_PRESET:
        tokenizer = keras_hub.models.BertTokenizer(vocabulary=TINY_VOCABULARY)
        return keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=sequence_length
        )
    return keras_hub.models.TextClassifierPreprocessor.from_preset(
        preset, sequence_length=sequence_length
    )


def classifier(preset: str, num_classes: int, sequence_length: int) -> keras.Model:
    """The preset's pretrained backbone with a fresh classification head,
    taking token ids (no preprocessor inside): the `model_fn` of the search."""
    keras_hub = _keras_hub()
    if preset == TINY_PRESET:
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=len(TINY_VOCABULARY),
            num_layers=2,
            num_heads=2,
            hidden_dim=32,
            intermediate_dim=64,
            max_sequence_length=sequence_length,
        )
        return keras_hub.models.BertTextClassifier(
            backbone, num_classes=num_classes, preprocessor=None
        )
    return keras_hub.models.TextClassifier.from_preset(
        preset, num_classes=num_classes, preprocessor=None
    )


def glue_dataset(
    task: str,
    split: str,
    *,
    preset: str,
    batch_size: int,
    sequence_length: int,
    shuffle: bool,
    data_dir: str | None = None,
    download: bool = True,
) -> tf.data.Dataset:
    """A GLUE split as batches of `(token features, label)`, tokenised in
    the pipeline once and cached; the training split is reshuffled each
    epoch (from the run's seed, which the search sets)."""
    spec = TASKS[task]
    (ds,), _ = keras_idim.data.tfds_splits(
        f"glue/{task}", [split], data_dir=data_dir, download=download
    )

    def text_and_label(example):
        text = tuple(example[name] for name in spec.features)
        return (text if len(text) > 1 else text[0]), example["label"]

    ds = (
        ds.map(text_and_label, num_parallel_calls=tf.data.AUTOTUNE)
        .map(preprocessor(preset, sequence_length), num_parallel_calls=tf.data.AUTOTUNE)
        .cache()
    )
    if shuffle:
        ds = ds.shuffle(10_000, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def said_start_dim(model_fn) -> int:
    """A first d for SAID: twice the model's weight tensors (SAID trains one
    scale per tensor, so every d must exceed their number)."""
    return 2 * len(model_fn().trainable_variables)


def majority_accuracy(
    task: str, split: str, data_dir: str | None = None, download: bool = True
) -> float:
    """The accuracy of always answering the most frequent label of `split`."""
    (ds,), _ = keras_idim.data.tfds_splits(
        f"glue/{task}", [split], data_dir=data_dir, download=download
    )
    counts = Counter(int(label) for label in ds.map(lambda e: e["label"]))
    return max(counts.values()) / sum(counts.values())


def main(
    preset: str = "bert_small_en_uncased",
    task: str = "mrpc",
    dims: str | list[int] = "auto",
    start_dim: int | None = None,
    seeds: tuple[int, ...] = (0,),
    epochs: int = 3,
    batch_size: int = 32,
    sequence_length: int = 128,
    learning_rate: float | str = "auto",
    baseline_learning_rate: float | str = "auto",
    baseline: float | None = None,
    train_split: str = "train",
    data_dir: str | None = None,
    download: bool = True,
    out: str = "runs/said_glue",
    workers: int = 1,
    verbose: int = 1,
    overwrite: bool = False,
) -> keras_idim.SearchResult:
    """Finds d90 of fine-tuning `preset` on the GLUE `task` with SAID.

    Args:
        preset: str. A keras-hub text classifier preset, or `"tiny-random"`.
            Defaults to `"bert_small_en_uncased"`.
        task: str. A GLUE task (see `TASKS`). Defaults to `"mrpc"`.
        dims: str or list of int. `"auto"` or the d to try. Defaults to
            `"auto"`.
        start_dim: int or None. First d of the automatic search; `None`:
            twice the model's number of weight tensors (SAID needs more
            than one d per tensor). Defaults to `None`.
        seeds: tuple of int. Seeds of every d and of the baseline.
            Defaults to `(0,)`.
        epochs: int. Epochs per run at most. Defaults to `3`.
        batch_size: int. Defaults to `32`.
        sequence_length: int. Tokens per example. Defaults to `128`.
        learning_rate: float or "auto". Adam's rate for theta_d; `"auto"`
            probes each run's (see docs/search.md, "A d90 you can trust").
            Defaults to `"auto"`.
        baseline_learning_rate: float or "auto". Adam's rate for full
            fine-tuning (2e-5 is the usual one for BERT). Defaults to
            `"auto"`.
        baseline: float or None. A global baseline accuracy instead of
            training the local one. Defaults to `None`.
        train_split: str. TFDS split to train on, e.g. `"train[:10%]"`.
            Defaults to `"train"`.
        data_dir: str or None. TFDS data_dir. Defaults to `None`.
        download: bool. Download GLUE when it is not in `data_dir`.
            Defaults to `True`.
        out: str. Output folder (results.json, curve.png). Defaults to
            `"runs/said_glue"`.
        workers: int. Runs at once (Ray when more than 1). Defaults to `1`.
        verbose: int. 0: silent; 1: a line per run. Defaults to `1`.
        overwrite: bool. Start over instead of resuming `out`'s
            results.json (the old one is kept as results.json.bak). Without
            it, a results.json of another search is refused before any
            training, naming what differs: the data are `functools.partial`s
            of `glue_dataset`, fingerprinted by their arguments, so another
            `train_split`, `sequence_length` or `data_dir` is refused, and
            another preset by the model's fingerprint. Defaults to `False`.

    Returns:
        The `SearchResult`.
    """
    if task not in TASKS:
        raise ValueError(
            f"`task` should be one of {sorted(TASKS)}. Received: `task={task!r}`"
        )
    spec = TASKS[task]
    model_fn = functools.partial(classifier, preset, spec.num_classes, sequence_length)
    data = functools.partial(
        glue_dataset,
        task,
        preset=preset,
        batch_size=batch_size,
        sequence_length=sequence_length,
        data_dir=data_dir,
        download=download,
    )
    if start_dim is None:
        start_dim = said_start_dim(model_fn)
    majority = majority_accuracy(task, spec.validation, data_dir, download)
    result = keras_idim.search(
        model_fn,
        functools.partial(data, train_split, shuffle=True),
        functools.partial(data, spec.validation, shuffle=False),
        projection="fastfood",
        structure_aware=True,
        dims=dims,
        start_dim=start_dim,
        seeds=seeds,
        epochs=epochs,
        learning_rate=learning_rate,
        baseline_learning_rate=baseline_learning_rate,
        baseline=baseline,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        results_path=os.path.join(out, "results.json"),
        name=f"SAID {preset} on glue/{task}",
        workers=workers,
        verbose=verbose,
        overwrite=overwrite,
    )
    result.plot(os.path.join(out, "curve.png"))
    if verbose:
        print(result)
        print(
            f"majority-class accuracy on {spec.validation}: {majority:.4f} "
            f"(threshold {result.threshold:.4f}"
            + (": below it, any d passes)" if result.threshold <= majority else ")")
        )
    return result


def run_main(args: argparse.Namespace) -> None:
    """`main` with the command line's arguments."""
    main(
        preset=args.preset,
        task=args.task,
        dims=(
            "auto"
            if args.dims == "auto"
            else [int(d) for d in args.dims.split(",") if d.strip()]
        ),
        start_dim=args.start_dim,
        epochs=args.epochs,
        batch_size=args.batch_size,
        sequence_length=args.sequence_length,
        learning_rate=args.learning_rate,
        baseline_learning_rate=args.baseline_learning_rate,
        train_split=args.train_split,
        data_dir=args.data_dir,
        download=not args.no_download,
        out=args.out,
        workers=args.workers,
        overwrite=args.overwrite,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="bert_small_en_uncased")
    parser.add_argument("--task", default="mrpc", choices=sorted(TASKS))
    parser.add_argument(
        "--dims",
        default="auto",
        help="'auto' or comma-separated values of d, e.g. 200,400,800",
    )
    parser.add_argument("--start-dim", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=128)

    def rate(text):
        return text if text == "auto" else float(text)

    parser.add_argument("--learning-rate", type=rate, default="auto")
    parser.add_argument("--baseline-learning-rate", type=rate, default="auto")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--no-download", action="store_true", help="never download GLUE"
    )
    parser.add_argument("--out", default="runs/said_glue")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over instead of resuming --out (keeps results.json.bak); "
        "without it, another --train-split, --sequence-length, --data-dir or "
        "--preset with the same --out is refused",
    )
    args = parser.parse_args()
    try:
        run_main(args)
    except (RuntimeError, ValueError) as e:  # e.g. GLUE not to be had offline
        sys.exit(f"said_glue.py: {e}")
