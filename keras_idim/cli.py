"""The `keras-idim` command line: search, train, export, bench."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from keras_idim.utils.io import check_writable

#: Defaults of the command line, tuned on the embedded digits data.
DEFAULTS = {
    "model": "fc",
    "dataset": "digits",
    "projection": "fastfood",
    "fraction": 0.9,
    "epochs": 10,
    "batch_size": 32,
    "lr": 0.03,
    "baseline_lr": 1e-3,
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
        return [_positive_int(part) for part in text.split(",") if part.strip()]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"should be 'auto' or positive integers like 10,50,100: {text!r}"
        ) from None


#: What `--model` and `--dataset` accept, checked before TensorFlow loads
#: (tests check them against keras_idim.models and keras_idim.data).
MODELS = ("fc", "lenet", "convnet")
EMBEDDED_DATASETS = ("digits", "diabetes")


def _model_spec(text: str) -> str:
    if text in MODELS or text.endswith(".keras"):
        return text
    raise argparse.ArgumentTypeError(
        f"should be one of {', '.join(MODELS)} or a PATH.keras file: {text!r}"
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
        choices=("fastfood", "dense", "sparse"),
        help="(default: %(default)s)",
    )
    parser.add_argument(
        "--said", action="store_true", help="structure-aware subspace (SAID)"
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
        type=_positive_float,
        default=DEFAULTS["lr"],
        help="Adam learning rate of subspace runs (default: %(default)s)",
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
    sub = parser.add_subparsers(dest="command", required=True)
    _add_search(sub)
    _add_train_and_export(sub)
    _add_compare(sub)
    sub.add_parser(
        "bench",
        help="benchmark the subspace step against the plain step",
        add_help=False,  # keras_idim.bench parses its own options
    )
    return parser


def _add_search(sub) -> None:
    """The `search` sub-command's options."""
    s = sub.add_parser(
        "search",
        help="find d_int90 (runs digits with fc offline by default)",
        description="Find the smallest subspace dimension d that reaches "
        "FRACTION of the baseline's validation metric (or, for a metric to "
        "minimise, at most baseline / FRACTION; or --threshold). Writes "
        "OUT/results.json (rerun the same command to resume), "
        "OUT/results.csv and OUT/curve.png. Exit status: 0 found, 1 no tried "
        "d reached the threshold, 2 bad usage.",
    )
    _add_common(s)
    s.add_argument(
        "--fraction",
        type=_fraction,
        default=DEFAULTS["fraction"],
        help="(default: %(default)s)",
    )
    s.add_argument(
        "--baseline",
        type=_baseline,
        default=None,
        help="'local' (train the full model) or a number (global) (default: local)",
    )
    s.add_argument(
        "--mode",
        default="auto",
        choices=("auto", "max", "min"),
        help="whether higher (max) or lower (min) values of the metric are "
        "better; auto decides as Keras' callbacks do (default: %(default)s)",
    )
    s.add_argument(
        "--threshold",
        type=_finite_float,
        default=None,
        help="an absolute target for the metric instead of FRACTION of a "
        "baseline (no baseline is trained)",
    )
    s.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="log every run for TensorBoard under DIR, one sub-folder a run "
        "(pip install 'keras-idim[tensorboard]')",
    )
    s.add_argument(
        "--baseline-lr",
        type=_positive_float,
        default=DEFAULTS["baseline_lr"],
        help="Adam learning rate of the local baseline (default: %(default)s)",
    )
    s.add_argument(
        "--dims",
        type=_dims,
        default="auto",
        help="'auto' or a list like 10,50,100 (default: auto)",
    )
    s.add_argument(
        "--seeds",
        type=_positive_int,
        default=1,
        help="number of seeds per d, 0..N-1 (default: %(default)s)",
    )
    s.add_argument(
        "--tolerance",
        type=_positive_float,
        default=0.1,
        help="relative precision of 'auto' (default: %(default)s)",
    )
    s.add_argument(
        "--start-dim",
        type=_positive_int,
        default=None,
        help="first d (or rank) of 'auto' (default: 10, or 1 for --method lora)",
    )
    s.add_argument(
        "--max-dim",
        type=_positive_int,
        default=None,
        help="largest d of 'auto' (default: D)",
    )
    s.add_argument(
        "--out",
        default=None,
        help="output folder (default: runs/MODEL-DATASET-PROJECTION)",
    )
    s.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="runs at once; more than 1 runs them on Ray, pip install "
        "'keras-idim[ray]' (default: %(default)s)",
    )
    s.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="join this Ray cluster ('auto' or HEAD_IP:6379) instead of "
        "starting a Ray on this machine, bound to 127.0.0.1 (default: none)",
    )
    s.add_argument(
        "--method",
        default="subspace",
        choices=("subspace", "lora"),
        help="search the dimension d of a random subspace, or the rank r of "
        "Keras' LoRA adapters (default: %(default)s)",
    )
    s.add_argument(
        "--lora-targets",
        type=_names,
        default=None,
        metavar="LAYERS",
        help="--method lora: comma-separated layer names that get adapters "
        "(default: every layer that supports LoRA)",
    )
    s.add_argument(
        "--lora-train",
        type=_names,
        default=None,
        metavar="LAYERS",
        help="--method lora: layers that also train fully, e.g. a new head "
        "(default: none, only the adapters train)",
    )
    s.add_argument("--quiet", action="store_true", help="print the answer only")


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
        description="Export SOURCE (a SubspaceModel .keras file, or a compact "
        ".npz file saved with its base) as a TensorFlow SavedModel folder, "
        "served by TensorFlow alone, or as a compact file: the projection's "
        "seed plus d numbers.",
    )
    e.add_argument(
        "source", help="a .keras file of a SubspaceModel, or a compact .npz file"
    )
    e.add_argument(
        "--out",
        default=None,
        help="the export's path (default: saved_models/NAME, NAME from SOURCE)",
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
        help="compact only: store a fingerprint of theta_0 instead of the base "
        "network (about 4 d bytes)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing export"
    )


def _export_path(path: str, args: argparse.Namespace, arg: str) -> str:
    """The export's path, checked before any work, creating nothing."""
    if args.no_base and args.format != "compact":
        raise ValueError("`--no-base` applies to `--format compact` only.")
    if args.format == "compact" and not path.endswith(".npz"):
        path += ".npz"
    if os.path.exists(path) and not args.overwrite:
        raise FileExistsError(
            f"`{arg}` {path!r} already exists. Pass --overwrite to replace it, "
            "or choose another path."
        )
    check_writable(path, arg, folder=args.format == "saved_model")
    return path


def _export(model, path: str, args: argparse.Namespace) -> str:
    from keras_idim.export import export_saved_model, save_compact

    if args.format == "compact":
        return save_compact(
            model, path, include_base=not args.no_base, overwrite=args.overwrite
        )
    return export_saved_model(model, path, overwrite=args.overwrite)


def _model_fn(spec: str, info) -> Callable:
    """A builder of fresh base models for `--model`."""
    from keras_idim import models

    return models.from_spec(spec, info)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _task(args: argparse.Namespace, info) -> tuple[str, list[str], str]:
    """The loss, the compiled metrics and the monitored name, from `--loss`
    and `--metric` or the dataset's task."""
    defaults = TASK_DEFAULTS[getattr(info, "task", "classification")]
    loss = args.loss or defaults["loss"]
    metric = args.metric or defaults["metric"]
    if metric == "loss":
        return loss, [], "val_loss"
    return loss, [metric], f"val_{metric}"


def run_search(args: argparse.Namespace) -> int:
    from keras_idim import data
    from keras_idim.dimsearch.api import search

    # Arrays where the data fit in memory: each run then shuffles from its seed.
    train, val, info = data.load(
        args.dataset,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        arrays=True,
        download=not args.no_download,
    )
    model_fn = _model_fn(args.model, info)
    loss, metrics, monitor = _task(args, info)
    out = args.out or os.path.join(
        "runs",
        _slug(
            f"{os.path.basename(args.model)}-{args.dataset}-"
            + ("lora" if args.method == "lora" else args.projection)
            + ("-said" if args.said and args.method != "lora" else "")
        ),
    )
    check_writable(out, "--out", folder=True)
    args.results_path = os.path.join(out, "results.json")  # for an interrupt
    result = search(
        model_fn,
        train,
        val,
        projection=args.projection,
        fraction=args.fraction,
        baseline=args.baseline,
        dims=args.dims,
        seeds=tuple(range(args.seeds)),
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer="adam",
        learning_rate=args.lr,
        baseline_learning_rate=args.baseline_lr,
        loss=loss,
        metrics=metrics,
        monitor=monitor,
        mode=args.mode,
        threshold=args.threshold,
        tensorboard=args.tensorboard,
        structure_aware=args.said,
        results_path=args.results_path,
        tolerance=args.tolerance,
        start_dim=args.start_dim,
        method=args.method,
        lora_targets=args.lora_targets,
        lora_train=args.lora_train,
        max_dim=args.max_dim,
        name=f"{args.model} on {args.dataset}",
        verbose=0 if args.quiet else 1,
        workers=args.workers,
        ray_address=args.ray_address,
    )
    result.to_csv(os.path.join(out, "results.csv"))
    result.plot(os.path.join(out, "curve.png"))
    if not args.quiet:
        print()
        print(result.summary())
        print(f"wrote {out}/results.json, results.csv, curve.png")
    else:
        print(result.verdict())
    return 0 if result.d_int is not None else 1


def run_compare(args: argparse.Namespace) -> int:
    from keras_idim.dimsearch.comparison import compare

    if len(args.runs) < 2:
        raise ValueError("`compare` needs two or more RUN_DIRs.")
    check_writable(args.out, "--out")
    print(compare(args.runs, path=args.out))
    print(f"wrote {args.out}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    import keras

    from keras_idim import data
    from keras_idim.dimsearch.config import resolve_mode
    from keras_idim.dimsearch.records import best
    from keras_idim.subspace import SubspaceModel

    train, val, info = data.load(
        args.dataset,
        batch_size=args.batch_size,
        seed=args.seed,
        data_dir=args.data_dir,
        download=not args.no_download,
    )
    keras.utils.set_random_seed(args.seed)
    base = _model_fn(args.model, info)()
    model = SubspaceModel(
        base,
        args.dim,
        projection=args.projection,
        seed=args.seed,
        structure_aware=args.said,
    )
    loss, metrics, monitor = _task(args, info)
    try:  # which value is best, known before training (see `search --mode`)
        mode = resolve_mode("auto", monitor, metrics)
    except ValueError:
        mode = None
    model.compile(optimizer=keras.optimizers.Adam(args.lr), loss=loss, metrics=metrics)
    print(
        f"{args.model} on {args.dataset}: D = {model.full_dim}, d = {args.dim}, "
        f"{args.projection} projection{' (SAID)' if args.said else ''}"
    )
    history = model.fit(
        train, validation_data=val, epochs=args.epochs, shuffle=False, verbose=2
    )
    values = history.history[monitor]
    if mode is None:
        print(f"last {monitor} {values[-1]:.4f}")
    else:
        print(f"best {monitor} {best(values, mode):.4f} (last {values[-1]:.4f})")
    if args.save:
        from keras_idim.utils.io import staged

        with staged(args.save) as tmp:  # no partial file, ever
            model.save(tmp)
        print(f"saved {args.save}")
    if args.export:
        print(f"exported {_export(model, args.export, args)} ({args.format})")
    return 0


def run_export(args: argparse.Namespace) -> int:
    import keras

    from keras_idim.export import load_compact
    from keras_idim.subspace import SubspaceModel

    source = args.source
    if not os.path.isfile(source):
        raise ValueError(f"SOURCE not found: {source!r}")
    stem = os.path.basename(source)
    for suffix in (".keras", ".npz"):
        stem = stem.removesuffix(suffix)
    out = _export_path(args.out or os.path.join("saved_models", stem), args, "--out")
    if source.endswith(".npz"):
        model = load_compact(source)
    else:
        model = keras.saving.load_model(source, compile=False)
        if not isinstance(model, SubspaceModel):
            raise ValueError(
                f"SOURCE {source!r} holds a {type(model).__name__}, not a "
                "keras_idim SubspaceModel (save one with `keras-idim train "
                "--save` or `model.save`)."
            )
    print(f"exported {_export(model, out, args)} ({args.format})")
    return 0


def _join_negative_values(parser: argparse.ArgumentParser, argv: list) -> list:
    """`--dims -5,10` as `--dims=-5,10`: argparse takes a value that starts
    with '-' (and is not a plain negative number) for an option, so that it
    would say "expected one argument" instead of what is wrong with it."""
    options = {
        option
        for command in ("search", "train", "export")
        for a in _subparser(parser, command)._actions
        if a.nargs is None and a.option_strings
        for option in a.option_strings
    }
    joined: list = []
    for item in argv:
        if (
            joined
            and joined[-1] in options
            and item.startswith("-")
            and item not in options
            and item not in ("-h", "--help")
        ):
            joined[-1] = f"{joined[-1]}={item}"
        else:
            joined.append(item)
    return joined


def _subparser(parser: argparse.ArgumentParser, command: str):
    """The parser of a sub-command (its errors name the sub-command)."""
    return parser._subparsers._group_actions[0].choices[command]


def _check_combinations(parser: argparse.ArgumentParser, args) -> None:
    """Usage errors that span two options, before any work."""
    parser = _subparser(parser, args.command)
    if args.command == "search" and args.start_dim is None:
        args.start_dim = 1 if args.method == "lora" else 10
    if args.command == "search" and args.method != "lora":
        if args.lora_targets or args.lora_train:
            parser.error("argument --lora-targets/--lora-train: need --method lora")
    if args.command == "search" and args.max_dim is not None:
        if args.max_dim < args.start_dim:
            parser.error(
                f"argument --max-dim: should be at least --start-dim "
                f"({args.start_dim}): {args.max_dim}"
            )
    try:
        if args.command == "train" and args.export:
            args.export = _export_path(args.export, args, "--export")
        if args.command == "train" and args.save:
            check_writable(args.save, "--save", folder=False)
    except ValueError as e:
        parser.error(str(e))
    except OSError as e:  # an existing target: exit 1, as when it is written
        parser.exit(1, f"{parser.prog}: {e}\n")


def _interrupted(args) -> str:
    """One line for Ctrl-C: what was kept, and how to go on."""
    path = getattr(args, "results_path", None)
    if path and os.path.exists(path):
        import json

        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
            count = sum(
                len(state.get(k) or [])
                for k in ("baseline_runs", "runs", "speculative_runs")
            )
        except (OSError, ValueError):
            count = "some"
        return (
            f"interrupted: {count} runs saved in {path}; run the same command "
            "to resume\n"
        )
    return f"keras-idim {args.command}: interrupted\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from keras_idim import bench

        return bench.main(argv[1:])
    args = parser.parse_args(_join_negative_values(parser, argv))
    _check_combinations(parser, args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = {
        "search": run_search,
        "train": run_train,
        "export": run_export,
        "compare": run_compare,
    }[args.command]
    try:
        return command(args)
    except KeyboardInterrupt:
        parser.exit(130, _interrupted(args))
    except (ValueError, ImportError) as e:  # bad input argparse could not see
        parser.exit(2, f"keras-idim {args.command}: error: {e}\n")
    except (RuntimeError, OSError) as e:  # e.g. a download, an existing target
        parser.exit(1, f"keras-idim {args.command}: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
