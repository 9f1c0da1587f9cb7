"""The command line's options: argparse types that check each value, the
parser of every sub-command, and the defaults. Nothing here imports
TensorFlow, so `--help` and usage errors answer at once."""

from __future__ import annotations

import argparse

from keras_idim.dimsearch.defaults import RECIPE
from keras_idim.version import __version__

#: Defaults of the command line: `keras_idim.search`'s recipe
#: (`keras_idim.dimsearch.defaults.RECIPE`), on the embedded digits data.
DEFAULTS = {
    "model": "fc",
    "dataset": "digits",
    "projection": RECIPE["projection"],
    "fraction": RECIPE["fraction"],
    "epochs": RECIPE["epochs"],
    "batch_size": RECIPE["batch_size"],
    "lr": RECIPE["learning_rate"],
    "baseline_lr": RECIPE["baseline_learning_rate"],
}

#: Loss and metric by the dataset's task, unless `--loss`/`--metric` say.
TASK_DEFAULTS = {
    "classification": {"loss": "sparse_categorical_crossentropy", "metric": "accuracy"},
    "regression": {"loss": "mse", "metric": "mae"},
}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"should be positive: {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"should be a finite positive number: {text!r}"
        )
    return value


def _rate(text: str) -> float | str:
    """`auto`, or a finite positive learning rate."""
    return "auto" if text == "auto" else _positive_float(text)


def _seed(text: str) -> int:
    from keras_idim.utils.validation import SEED_RANGE

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not SEED_RANGE[0] <= value < SEED_RANGE[1]:
        raise argparse.ArgumentTypeError(f"should be in [0, 2**32): {text!r}")
    return value


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"should be layer names like a,b: {text!r}")
    return names


def _keras_file(text: str) -> str:
    if not text.endswith(".keras"):
        raise argparse.ArgumentTypeError(
            f"should be a PATH.keras file (Keras 3 saves the .keras format "
            f"only): {text!r}"
        )
    return text


def _fraction(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"should be in (0, 1]: {text!r}")
    return value


def _dims(text: str) -> str | list[int]:
    if text == "auto":
        return text
    try:
        dims = [_positive_int(part) for part in text.split(",") if part.strip()]
    except argparse.ArgumentTypeError:
        dims = []
    if not dims:
        raise argparse.ArgumentTypeError(
            f"should be 'auto' or positive integers like 10,50,100: {text!r}"
        )
    return dims


#: What `--model`, `--dataset` and `--space` accept (each space kind: whether
#: it takes a rank), checked before TensorFlow loads (tests check them
#: against keras_idim.models, keras_idim.data and keras_idim.spaces.kinds()).
MODELS = ("fc", "lenet", "convnet")
EMBEDDED_DATASETS = ("digits", "diabetes")
SPACE_KINDS = {"weights": False, "lora": True}


def _model_spec(text: str) -> str:
    if text in MODELS or text.endswith(".keras"):
        return text
    raise argparse.ArgumentTypeError(
        f"should be one of {', '.join(MODELS)} or a PATH.keras file: {text!r}"
    )


def _space_spec(text: str) -> str:
    """`weights` or `lora:RANK` (the library reads it: `keras_idim.spaces`)."""
    text = text.strip().lower()
    kind, colon, rank = text.partition(":")
    if SPACE_KINDS.get(kind) is False and not colon:
        return kind
    if SPACE_KINDS.get(kind) and rank.isdigit() and int(rank) > 0:
        return f"{kind}:{int(rank)}"
    raise argparse.ArgumentTypeError(
        f"should be 'weights' or 'lora:RANK' with RANK a positive integer: {text!r}"
    )


def _dataset_spec(text: str) -> str:
    text = text.strip()
    if text in EMBEDDED_DATASETS or (
        text.startswith("tfds:") and text[len("tfds:") :].strip()
    ):
        return text
    raise argparse.ArgumentTypeError(
        f"should be one of {', '.join(EMBEDDED_DATASETS)} or tfds:NAME: {text!r}"
    )


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"should be finite: {text!r}")
    return value


def _baseline(text: str) -> float | None:
    if text == "local":
        return None
    try:
        return _positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"should be 'local' or a positive number: {text!r}"
        ) from None


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=_model_spec,
        default=DEFAULTS["model"],
        help="fc, lenet, convnet, or PATH.keras (a saved model: its weights "
        "become theta_0, measuring fine-tuning) (default: %(default)s)",
    )
    parser.add_argument(
        "--dataset",
        type=_dataset_spec,
        default=DEFAULTS["dataset"],
        help="digits (scikit-learn's bundled 8x8 digits, offline), diabetes "
        "(scikit-learn's bundled regression set, offline) or tfds:NAME "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="a prepared TFDS data_dir (for tfds:NAME offline)",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="tfds:NAME: use prepared data only (in --data-dir), never download",
    )
    parser.add_argument(
        "--projection",
        default=DEFAULTS["projection"],
        choices=("fastfood", "dense", "sparse", "unilora"),
        help="(default: %(default)s)",
    )
    parser.add_argument(
        "--space",
        type=_space_spec,
        default="weights",
        metavar="SPACE",
        help="what theta_d moves: 'weights' (every trainable weight) or "
        "'lora:RANK' (the LoRA matrices of that rank, on the layers Keras "
        "or keras-hub adapt; the other weights stay frozen) "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--said", action="store_true", help="structure-aware subspace (SAID)"
    )
    parser.add_argument(
        "--said-lr",
        type=_positive_float,
        default=None,
        metavar="RATE",
        help="with --said, the learning rate of SAID's per-tensor scales "
        "(default: each run's rate times sqrt(d / D))",
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=DEFAULTS["epochs"],
        help="epochs per run at most (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULTS["batch_size"],
        help="(default: %(default)s)",
    )
    parser.add_argument(
        "--lr",
        type=_rate,
        default=DEFAULTS["lr"],
        metavar="RATE",
        help="Adam learning rate of subspace runs, or 'auto': probe rates "
        "for an epoch each and train one half-decade below the best "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--loss",
        default=None,
        help="a Keras loss name (default: sparse_categorical_crossentropy for "
        "classification, mse for regression)",
    )
    parser.add_argument(
        "--metric",
        default=None,
        help="a Keras metric name, compiled and judged on the validation data "
        "as val_METRIC; 'loss' judges val_loss (default: accuracy for "
        "classification, mae for regression)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-idim",
        description="Measure the intrinsic dimension of a model on a dataset.",
    )
    parser.add_argument(
        "--version", action="version", version=f"keras-idim {__version__}"
    )
    from keras_idim.cli.search_options import add_search

    sub = parser.add_subparsers(dest="command", required=True)
    add_search(sub)
    _add_train_and_export(sub)
    _add_compare(sub)
    sub.add_parser(
        "doctor",
        help="say where Fastfood's compiled kernel stands on this machine: "
        "in use or why not (the compiler, the flags, the error)",
        description="Builds or loads Fastfood's compiled kernel as a search "
        "would, and says whether it is used, with the compiler and flags, or "
        "why not, with each build tried. Exit 0 when it is available (or "
        "switched off), 1 when not.",
    )
    sub.add_parser(
        "bench",
        help="benchmark the subspace step against the plain step",
        add_help=False,  # keras_idim.bench parses its own options
    )
    return parser


def _add_compare(sub) -> None:
    """The `compare` sub-command's options."""
    c = sub.add_parser(
        "compare",
        help="compare searches (e.g. subspace against LoRA) by trained parameters",
        description="Compare the searches in RUN_DIR... (folders written by "
        "`keras-idim search --out`, or their results.json): print a table of "
        "each search's method, d_int or r_int and trained parameters, and "
        "write a PNG of the metric against trained parameters. Searches on "
        "other data or another baseline are refused. Exit status: 0, 1 a "
        "missing results file, 2 bad usage or searches that cannot be "
        "compared.",
    )
    c.add_argument("runs", nargs="+", metavar="RUN_DIR", help="search folders")
    c.add_argument(
        "--out",
        default="compare.png",
        help="the PNG to write (default: %(default)s)",
    )
    c.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out file"
    )


def _add_train_and_export(sub) -> None:
    """The `train` and `export` sub-commands' options."""
    t = sub.add_parser(
        "train",
        help="one subspace training run",
        description="Train MODEL on DATASET in a d-dimensional "
        "subspace and print the best validation metric.",
    )
    _add_common(t)
    t.add_argument(
        "--dim", type=_positive_int, required=True, help="the subspace dimension d"
    )
    t.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="seed of the initialisation and of P, in [0, 2**32) "
        "(default: %(default)s)",
    )
    t.add_argument(
        "--save",
        type=_keras_file,
        default=None,
        help="save the trained SubspaceModel to this .keras file",
    )
    t.add_argument(
        "--export",
        default=None,
        metavar="PATH",
        help="export the trained model, e.g. saved_models/NAME",
    )
    _add_export_options(t)

    e = sub.add_parser(
        "export",
        help="export a trained model as a SavedModel or compact file",
        description="Export SOURCE (a SubspaceModel .keras file, a compact "
        ".npz file saved with its base, or the OUT folder of a `keras-idim "
        "search`, whose model at --dim is rebuilt from --model, --dataset, "
        "the seed and the run's theta_d) as a TensorFlow SavedModel folder, "
        "served by TensorFlow alone, or as a compact file: the projection's "
        "seed plus d numbers.",
    )
    e.add_argument(
        "source",
        help="a .keras file of a SubspaceModel, a compact .npz file, or the "
        "folder of a `keras-idim search` (its OUT)",
    )
    e.add_argument(
        "--out",
        default=None,
        help="the export's path (default: saved_models/NAME, NAME from SOURCE)",
    )
    e.add_argument(
        "--dim",
        type=_positive_int,
        default=None,
        help="a search folder only: the finished d to export (default: d_int)",
    )
    e.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="a search folder only: the run's seed (default: %(default)s)",
    )
    _add_export_options(e)


def _add_export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        default="saved_model",
        choices=("saved_model", "compact"),
        help="export format (default: %(default)s)",
    )
    parser.add_argument(
        "--no-base",
        action="store_true",
        help="compact only: store a fingerprint of the base network instead of "
        "the network (about 4 d bytes; in a LoRA space its A is drawn again "
        "from the seed)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing export (train: and an existing --save file)",
    )
