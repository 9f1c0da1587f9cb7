"""What each sub-command does, once its options are parsed: search,
train, export, compare, doctor."""

from __future__ import annotations

import argparse
import os

from keras_idim.cli import search_spec
from keras_idim.cli.options import TASK_DEFAULTS
from keras_idim.dimsearch import methods
from keras_idim.utils.io import check_writable


def _export_file(path: str, args: argparse.Namespace) -> str:
    """The path an export writes: `path`, with `.npz` for `--format compact`."""
    if args.format == "compact" and not path.endswith(".npz"):
        return path + ".npz"
    return path


def _export_path(path: str, args: argparse.Namespace, arg: str) -> str:
    """The export's path, checked before any work, creating nothing."""
    if args.no_base and args.format != "compact":
        raise ValueError("`--no-base` applies to `--format compact` only.")
    path = _export_file(path, args)
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


def search_out(args: argparse.Namespace) -> str:
    """The folder `keras-idim search` writes to: `--out`, or one under
    `runs/` named after the model, the data and the method."""
    return args.out or os.path.join(
        "runs",
        _slug(
            f"{os.path.basename(args.model)}-{args.dataset}-"
            + search_method(args).tag
            + ("" if args.space == "weights" else "-" + args.space.replace(":", ""))
        ),
    )


def search_results_path(args: argparse.Namespace) -> str:
    """The results file of `keras-idim search` (also read on an interrupt)."""
    return os.path.join(search_out(args), "results.json")


def search_method(args: argparse.Namespace) -> methods.Method:
    """The `keras_idim.dimsearch.methods.Method` of `--method`, with
    `--projection` and `--said` (no TensorFlow: it builds no model)."""
    return methods.named(args.method).from_settings(
        projection=args.projection, structure_aware=args.said
    )


def search_start_dim(args: argparse.Namespace) -> int:
    """`--start-dim`, or its default: the method's `start_k` (10, or 1 for
    `--method lora`)."""
    return args.start_dim or search_method(args).start_k


def run_search(args: argparse.Namespace) -> int:
    from keras_idim import data
    from keras_idim.dimsearch.launch import run

    # Arrays where the data fit in memory: each run then shuffles from its seed.
    train, val, info = data.load(
        args.dataset,
        batch_size=args.batch_size,
        data_dir=args.data_dir,
        arrays=True,
        download=not args.no_download,
    )
    model_fn = search_spec.model_fn(args.model, info)
    loss, metrics, monitor = _task(args, info)
    out = search_out(args)
    check_writable(out, "--out", folder=True)
    results_path = search_results_path(args)
    try:
        config = _search_config(model_fn, train, val, loss, metrics, monitor, args)
        result = run(config)
    finally:  # beside any results.json written, however the search ended
        if os.path.exists(results_path):
            search_spec.write_search_spec(out, args)
    result.to_csv(os.path.join(out, "results.csv"))
    result.plot(os.path.join(out, "curve.png"))
    if not args.quiet:  # the search's last line was its verdict
        print()
        print(result.summary(verdict=False))
        print(f"wrote {out}/results.json, results.csv, curve.png")
    else:
        print(result.verdict())
    return 0 if result.d_int is not None else 1


def _search_config(model_fn, train, val, loss, metrics, monitor, args):
    """The search's `SearchConfig`, from the command line's settings (its
    checks are `keras_idim.search`'s)."""
    from keras_idim.dimsearch.search_config import SearchConfig

    return SearchConfig.from_arguments(
        model_fn,
        train,
        val,
        projection=args.projection,
        fraction=args.fraction,
        baseline=args.baseline if args.baseline_from is None else args.baseline_from,
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
        threshold_rule=args.threshold_rule,
        floor=args.floor,
        tensorboard=args.tensorboard,
        structure_aware=args.said,
        said_learning_rate=args.said_lr,
        space=args.space,
        results_path=search_results_path(args),
        overwrite=args.overwrite,
        tolerance=args.tolerance,
        start_dim=search_start_dim(args),
        method=args.method,
        lora_targets=args.lora_targets,
        lora_train=args.lora_train,
        max_dim=args.max_dim,
        name=f"{args.model} on {args.dataset}",
        verbose=0 if args.quiet else 2 if args.verbose else 1,
        workers=args.workers,
        ray_address=args.ray_address,
    )


def run_compare(args: argparse.Namespace) -> int:
    from keras_idim.dimsearch.comparison import compare

    if len(args.runs) < 2:
        raise ValueError("`compare` needs two or more RUN_DIRs.")
    check_writable(args.out, "--out")
    print(compare(args.runs, path=args.out, overwrite=args.overwrite))
    print(f"wrote {args.out}")
    return 0


def _probed_rate(args, model_fn, train, val, loss, metrics, monitor, mode) -> float:
    """`--lr auto` for `train`: the rate a search's run at this d and seed
    would train at (`keras_idim.dimsearch.runner.probe_rates`)."""
    from keras_idim import spaces
    from keras_idim.dimsearch.config import optimizer_factory
    from keras_idim.dimsearch.recipe import Recipe
    from keras_idim.dimsearch.runner import probe_rates

    make, _ = optimizer_factory("adam", "auto")
    if mode is None:  # a metric of unknown direction: the probes judge the loss
        monitor, mode = "val_loss", "min"
    recipe = Recipe(
        model_fn=model_fn,
        train_data=train,
        val_data=val,
        batch_size=args.batch_size,
        epochs=args.epochs,
        loss=loss,
        metrics=metrics,
        monitor=monitor,
        mode=mode,
        projection=args.projection,
        structure_aware=args.said,
        optimizer=make,
        baseline_optimizer=make,
        said_learning_rate=args.said_lr,
        space=spaces.get(args.space),
    )
    rate, probes = probe_rates(recipe, args.dim, args.seed)
    tried = ", ".join(
        f"{r:g}: " + ("failed" if v is None else f"{v:.4f}") for r, v in probes
    )
    print(
        f"--lr auto: probed {monitor} after an epoch at {tried}; training at {rate:g}"
    )
    return rate


def run_train(args: argparse.Namespace) -> int:
    import keras
    import tensorflow as tf

    from keras_idim import data
    from keras_idim.dimsearch.metric_checks import resolve_mode
    from keras_idim.dimsearch.records import best
    from keras_idim.subspace import SubspaceModel

    train, val, info = data.load(
        args.dataset,
        batch_size=args.batch_size,
        seed=args.seed,
        data_dir=args.data_dir,
        download=not args.no_download,
    )
    model_fn = search_spec.model_fn(args.model, info)
    loss, metrics, monitor = _task(args, info)
    try:  # which value is best, known before training (see `search --mode`)
        mode = resolve_mode("auto", monitor, metrics)
    except ValueError:
        mode = None
    rate = args.lr
    if rate == "auto":  # probed as a search's run probes it
        rate = _probed_rate(args, model_fn, train, val, loss, metrics, monitor, mode)
    keras.utils.set_random_seed(args.seed)
    model = SubspaceModel(
        model_fn(),
        args.dim,
        projection=args.projection,
        seed=args.seed,
        structure_aware=args.said,
        said_learning_rate=args.said_lr,
        space=args.space,
    )
    model.compile(optimizer=keras.optimizers.Adam(rate), loss=loss, metrics=metrics)
    print(
        f"{args.model} on {args.dataset}: D = {model.full_dim} ({args.space}), "
        f"d = {args.dim}, "
        f"{args.projection} projection{' (SAID)' if args.said else ''}"
    )
    try:
        history = model.fit(
            train, validation_data=val, epochs=args.epochs, shuffle=False, verbose=2
        )
    except tf.errors.OpError as e:  # e.g. a loss or metric that does not fit
        # The op's own words: the last line that is not a traceback's.
        lines = [
            line
            for line in str(e.message).splitlines()
            if line.strip() and not line[0].isspace()
            if not line.startswith(("Graph execution error", "Detected at node"))
        ]
        said = lines[-1].strip() if lines else type(e).__name__
        raise ValueError(
            f"training failed: {type(e).__name__}: {said}. Check that "
            f"--loss ({loss}) and --metric ({', '.join(metrics) or 'loss'}) fit "
            f"the data of --dataset {args.dataset}."
        ) from None
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
        path = _export_file(args.export, args)  # checked before the training
        print(f"exported {_export(model, path, args)} ({args.format})")
    return 0


def run_export(args: argparse.Namespace) -> int:
    import keras

    from keras_idim.export import load_compact
    from keras_idim.subspace import SubspaceModel

    source = args.source
    if os.path.isdir(source):
        result, model_fn = search_spec.search_model(source, args)
        dim = result.d_int if args.dim is None else args.dim
        name = os.path.basename(os.path.normpath(source))
        out = _export_path(
            args.out or os.path.join("saved_models", f"{name}-d{dim}-seed{args.seed}"),
            args,
            "--out",
        )
        model = result.model(model_fn=model_fn, d=args.dim, seed=args.seed)
        print(f"exported {_export(model, out, args)} ({args.format})")
        return 0
    if args.dim is not None or args.seed != 0:
        raise ValueError(
            "`--dim` and `--seed` choose a run of a search folder; SOURCE "
            f"{source!r} is a file. Received: --dim {args.dim}, --seed {args.seed}"
        )
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


def run_doctor(args: argparse.Namespace) -> int:
    """Versions, and where Fastfood's kernel stands (`kernel.describe`)."""
    import platform

    import keras
    import tensorflow as tf

    from keras_idim.projections import kernel
    from keras_idim.version import __version__

    print(
        f"keras-idim {__version__}, TensorFlow {tf.__version__}, Keras "
        f"{keras.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}"
    )
    print(kernel.describe())
    return 0 if kernel.status()["loaded"] or kernel.mode() == "off" else 1
