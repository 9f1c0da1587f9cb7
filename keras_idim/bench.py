"""Benchmarks: what a subspace training step costs against a plain one.

Each configuration (model, projection, d, XLA or not) runs in a process of
its own, so that its peak memory is its own. In that process the plain
model (all D weights trained by `fit`) and the SubspaceModel (same
architecture, same synthetic batch of 128, same optimizer) are timed in
alternating rounds after a warm-up: the ratio of each round's median step
times is one paired sample, and the report gives the median ratio over the
rounds with its spread (min to max). This keeps the machine's noise, which
hits both sides of a pair alike, out of the ratio.

For a dense projection the benchmark also measures one pass over P (the
forward product alone) and prints the bound that memory bandwidth sets on
any dense step: the plain step plus two passes.

    keras-idim bench            # bench/results.json, RESULTS.md, ratio.png
    keras-idim bench --quick    # a tiny model, in seconds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

#: Synthetic inputs of the paper's shapes.
MNIST, CIFAR = (28, 28, 1), (32, 32, 3)
BATCH = 128

#: The full benchmark: (name, model, builder kwargs, dims, projections).
FULL = [
    ("fc-mnist", "fc", {"input_shape": MNIST}, (100, 1_000, 10_000), None),
    ("lenet-cifar", "lenet", {"input_shape": CIFAR}, (1_000,), None),
    (
        "fc-1.2M",
        "fc",
        {"input_shape": MNIST, "hidden": (760, 760)},
        (1_000, 10_000),
        None,
    ),
    (
        "fc-11M",
        "fc",
        {"input_shape": MNIST, "hidden": (2950, 2950)},
        (1_000, 10_000),
        None,
    ),
    (
        "fc-25M",
        "fc",
        {"input_shape": MNIST, "hidden": (4620, 4620)},
        (100_000,),
        ("fastfood",),
    ),
]
QUICK = [
    ("fc-tiny", "fc", {"input_shape": (8, 8, 1), "hidden": (32,)}, (20,), None),
]
PROJECTIONS = ("dense", "sparse", "fastfood")
#: Dense projections over the memory budget are regenerated on the fly in
#: every pass; above this many entries (D x d) that takes minutes per step on
#: a 2-core machine, so those are not run. Those run are timed briefly.
DENSE_MAX_ENTRIES = 25 * 10**8
ON_THE_FLY_TIMING = {"warmup": 1, "steps": 1, "rounds": 2}


# -- one configuration (in its own process) ------------------------------------


class _StepTimer:
    """Wall time of each training batch, from a Keras callback."""

    def __init__(self):
        import keras

        times = self.times = []

        class Timer(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                self.start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                times.append(time.perf_counter() - self.start)

        self.callback = Timer()


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def run_config(spec: dict) -> dict:
    """Times one configuration in this process; returns its record."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_idim import models
    from keras_idim.subspace import SubspaceModel

    keras.utils.set_random_seed(0)
    build = models.get(spec["model"])
    kwargs = dict(spec["kwargs"])
    kwargs["input_shape"] = tuple(kwargs["input_shape"])
    if "hidden" in kwargs:
        kwargs["hidden"] = tuple(kwargs["hidden"])
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, *kwargs["input_shape"]), dtype=np.float32)
    y = rng.integers(0, 10, BATCH)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()

    def compiled(model):
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="sparse_categorical_crossentropy",
            jit_compile=spec["jit"],
        )
        return model

    plain = compiled(build(num_classes=10, **kwargs))
    started = time.perf_counter()
    sub = SubspaceModel(
        build(num_classes=10, **kwargs),
        spec["dim"],
        projection=spec["projection"],
        seed=0,
    )
    build_seconds = time.perf_counter() - started
    compiled(sub)
    traces = {"n": 0}
    train_step = sub.train_step

    def counted(data):
        traces["n"] += 1
        return train_step(data)

    sub.train_step = counted

    def steps(model, n):
        timer = _StepTimer()
        model.fit(
            data, epochs=1, steps_per_epoch=n, callbacks=[timer.callback], verbose=0
        )
        return timer.times

    for model in (plain, sub):
        steps(model, spec["warmup"])
    ratios, plain_ms, sub_ms = [], [], []
    for _ in range(spec["rounds"]):
        p = _median(steps(plain, spec["steps"]))
        s = _median(steps(sub, spec["steps"]))
        plain_ms.append(1e3 * p)
        sub_ms.append(1e3 * s)
        ratios.append(s / p)
    record = {
        **spec,
        "full_dim": sub.full_dim,
        "plain_ms": _median(plain_ms),
        "subspace_ms": _median(sub_ms),
        "ratio": _median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "projection_bytes": sub.projection.memory_bytes,
        "build_seconds": build_seconds,
        "jit_effective": bool(sub.jit_compile),
        "traces": traces["n"],
        "status": "ok",
    }
    if spec["projection"] == "dense":
        forward = tf.function(sub.projection.__call__)
        v = tf.random.normal([sub.projection.dim])
        forward(v)
        passes = []
        for _ in range(max(3, spec["steps"])):
            t = time.perf_counter()
            forward(v).numpy()
            passes.append(time.perf_counter() - t)
        record["pass_ms"] = 1e3 * _median(passes)
        record["bound_ms"] = record["plain_ms"] + 2 * record["pass_ms"]
        record["bound_ratio"] = record["subspace_ms"] / record["bound_ms"]
        record["stored"] = sub.projection.stored
    record["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return record


# -- the driver --------------------------------------------------------------------


def jobs(
    quick: bool, jit_modes: Sequence[bool], names: Sequence[str] | None = None
) -> list[dict]:
    """The configurations to run, one process each."""
    table = QUICK if quick else FULL
    if names:
        unknown = sorted(set(names) - {row[0] for row in table})
        if unknown:
            raise ValueError(
                f"Unknown benchmark configurations {unknown}. Expected some of "
                f"{[row[0] for row in table]}."
            )
        table = [row for row in table if row[0] in names]
    timing = (
        {"warmup": 2, "steps": 3, "rounds": 2}
        if quick
        else {"warmup": 3, "steps": 5, "rounds": 5}
    )
    out = []
    for name, model, kwargs, dims, kinds in table:
        for dim in dims:
            for projection in kinds or PROJECTIONS:
                for jit in jit_modes:
                    out.append(
                        {
                            "name": name,
                            "model": model,
                            "kwargs": kwargs,
                            "dim": dim,
                            "projection": projection,
                            "jit": jit,
                            **timing,
                        }
                    )
    return out


def _parameter_count(spec: dict) -> int:
    """D of a configuration's model, without building it (fc and lenet)."""
    kwargs = spec["kwargs"]
    if spec["model"] == "fc":
        widths = [
            math.prod(kwargs["input_shape"]),
            *kwargs.get("hidden", (200, 200)),
            10,
        ]
        return sum(a * b + b for a, b in zip(widths, widths[1:]))
    return 0  # small enough for anything


def _skip_reason(spec: dict) -> str | None:
    from keras_idim.projections.dense import DEFAULT_MEMORY_BUDGET

    entries = _parameter_count(spec) * spec["dim"]
    if spec["projection"] == "dense" and 4 * entries > DEFAULT_MEMORY_BUDGET:
        if spec["jit"]:
            return (
                "dense on the fly under XLA: a first try ran over 9 minutes "
                "without finishing its first steps"
            )
        spec.update(ON_THE_FLY_TIMING)
    if spec["projection"] == "dense" and entries > DENSE_MAX_ENTRIES:
        return (
            f"dense P of {entries / 1e9:.0f}e9 entries: regenerating it on "
            "the fly would take minutes per step here"
        )
    return None


#: Projection micro-benchmark: (D, d, kind, options) for one forward product
#: and one transposed product, each as a tf.function.
PRODUCTS = [
    (199_210, 1_000, "fastfood", {"blocks": "single", "jit_compile": False}),
    (199_210, 1_000, "fastfood", {"blocks": "single", "jit_compile": True}),
    (199_210, 1_000, "fastfood", {"blocks": "stacked", "jit_compile": False}),
    (199_210, 1_000, "fastfood", {"blocks": "stacked", "jit_compile": True}),
    (199_210, 1_000, "sparse", {"jit_compile": False}),
    (199_210, 1_000, "sparse", {"jit_compile": True}),
    (199_210, 1_000, "dense", {}),
    (11_050_000, 10_000, "fastfood", {"blocks": "single", "jit_compile": True}),
    (11_050_000, 10_000, "fastfood", {"blocks": "stacked", "jit_compile": False}),
    (11_050_000, 10_000, "fastfood", {"blocks": "stacked", "jit_compile": True}),
]


def product_timings(quick: bool = False, verbose: int = 1) -> list[dict]:
    """Median ms of P v and P^T g for each projection variant (`PRODUCTS`)."""
    import tensorflow as tf

    from keras_idim import projections

    out = []
    table = [(700, 20, k, o) for _, _, k, o in PRODUCTS[:7]] if quick else PRODUCTS
    for full_dim, dim, kind, options in table:
        proj = projections.get(kind)(full_dim, dim, seed=0, **options)
        v, g = tf.random.normal([dim]), tf.random.normal([full_dim])
        forward, transpose = tf.function(proj.__call__), tf.function(proj.transpose)
        timing = {}
        for name, fn, arg in (("forward", forward, v), ("transpose", transpose, g)):
            fn(arg)
            times = []
            for _ in range(3 if quick or full_dim > 10**6 else 15):
                t = time.perf_counter()
                fn(arg).numpy()
                times.append(time.perf_counter() - t)
            timing[f"{name}_ms"] = 1e3 * _median(times)
        out.append(
            {
                "full_dim": full_dim,
                "dim": dim,
                "projection": kind,
                "options": options,
                **timing,
            }
        )
        if verbose:
            print(
                f"products D={full_dim} d={dim} {kind} {options}: "
                f"{timing['forward_ms']:.2f} / {timing['transpose_ms']:.2f} ms",
                flush=True,
            )
    return out


def search_cost(verbose: int = 1) -> dict:
    """Runs and seconds of `dims="auto"` against a 25-point grid, on digits.

    The recipe is `keras-idim search`'s default (fc, fastfood, 10 epochs at
    most, batch 32). The grid trains each of 25 log-spaced d from 10 to D
    once against the same threshold (each run also stops at the threshold);
    a sweep of that grid that stops at the first passing d costs the runs up
    to it.
    """
    import numpy as np

    from keras_idim import data, models
    from keras_idim.search import search

    train, val = data.digits()

    def model_fn():
        return models.fc((8, 8, 1), 10)

    recipe = dict(
        epochs=10,
        batch_size=32,
        learning_rate=0.03,
        baseline_learning_rate=1e-3,
        verbose=0,
    )
    auto = search(model_fn, train, val, dims="auto", **recipe)
    full_dim = model_fn().count_params()
    grid = sorted({int(round(d)) for d in np.geomspace(10, full_dim, 25)})
    runs = []
    for dim in grid:
        one = search(
            model_fn, train, val, dims=[dim], baseline=auto.baseline.value, **recipe
        )
        runs.append(one.runs[0])
    passing = [
        r.dim for r in runs if r.metric is not None and r.metric >= auto.threshold
    ]
    first = min(passing) if passing else None
    sweep = [r for r in runs if first is None or r.dim <= first]
    result = {
        "threshold": auto.threshold,
        "auto": {
            "runs": len(auto.runs),
            "d_int": auto.d_int,
            "seconds": sum(r.seconds for r in auto.runs),
        },
        "grid": {
            "points": len(grid),
            "runs": len(runs),
            "d_int": first,
            "seconds": sum(r.seconds for r in runs),
        },
        "sweep": {
            "runs": len(sweep),
            "d_int": first,
            "seconds": sum(r.seconds for r in sweep),
        },
    }
    if verbose:
        print(f"search cost: {result}", flush=True)
    return result


def run(
    quick: bool = False,
    out: str = "bench",
    jit_modes: Sequence[bool] = (False,),
    names: Sequence[str] | None = None,
    with_search_cost: bool | None = None,
    timeout: int = 1800,
    verbose: int = 1,
) -> dict:
    """Runs the benchmark; writes OUT/results.json, RESULTS.md and ratio.png."""
    import keras
    import tensorflow as tf

    records = []
    for spec in jobs(quick, jit_modes, names):
        label = (
            f"{spec['name']:>12} d={spec['dim']:<7} {spec['projection']:>8} "
            f"{'xla' if spec['jit'] else '   '}"
        )
        reason = _skip_reason(spec)
        if reason:
            records.append({**spec, "status": "skipped", "message": reason})
            if verbose:
                print(f"{label}  skipped: {reason}", flush=True)
            continue
        proc = subprocess.run(
            [sys.executable, "-m", "keras_idim.bench", "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            record = {
                **spec,
                "status": "error",
                "message": tail[0] if tail else f"exit {proc.returncode}",
            }
        else:
            record = json.loads(lines[-1])
        records.append(record)
        if verbose:
            print(f"{label}  {_describe(record)}", flush=True)
    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "date": time.strftime("%Y-%m-%d"),
        },
        "batch_size": BATCH,
        "quick": quick,
        "command": "keras-idim bench"
        + (" --quick" if quick else "")
        + {(False,): "", (True,): " --xla on"}.get(tuple(jit_modes), " --xla both"),
        "records": records,
    }
    result["products"] = product_timings(quick, verbose)
    if with_search_cost if with_search_cost is not None else not quick:
        result["search_cost"] = search_cost(verbose)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write(markdown(result))
    plot(result, os.path.join(out, "ratio.png"))
    return result


def _describe(r: dict) -> str:
    if r["status"] != "ok":
        return f"{r['status']}: {r.get('message')}"
    text = (
        f"plain {r['plain_ms']:8.2f} ms  subspace {r['subspace_ms']:8.2f} ms  "
        f"ratio {r['ratio']:5.2f} [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]"
    )
    if "bound_ms" in r:
        text += f"  dense bound {r['bound_ms']:.1f} ms (x{r['bound_ratio']:.2f})"
    return text


def markdown(result: dict) -> str:
    """RESULTS.md: the table of every configuration."""
    m = result["machine"]
    lines = [
        "# What the subspace costs",
        "",
        f"Median training step of `fit` at batch {result['batch_size']}, Adam, "
        "synthetic data: the plain model (all D weights) against the "
        "SubspaceModel, timed in alternating rounds in one process per row; "
        "ratio = median over rounds of (subspace / plain), with its spread. "
        f"Machine: {m['cpu_count']} CPU cores, {m['platform']}, Python "
        f"{m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
        f"{m['date']}. Made by `{result.get('command', 'keras-idim bench')}`.",
        "",
        "| model | D | d | projection | XLA | plain ms | subspace ms | ratio "
        "[spread] | P bytes | peak RSS | dense bound ms (ratio to it) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["records"]:
        head = (
            f"| {r['name']} | {r.get('full_dim', _parameter_count(r)) or ''} "
            f"| {r['dim']} | {r['projection']} | {'yes' if r['jit'] else 'no'} |"
        )
        if r["status"] != "ok":
            lines.append(f"{head} {r['status']}: {r.get('message', '')} |||||| ")
            continue
        bound = (
            f"{r['bound_ms']:.1f} ({r['bound_ratio']:.2f})"
            + ("" if r.get("stored", True) else ", on the fly")
            if "bound_ms" in r
            else ""
        )
        lines.append(
            f"{head} {r['plain_ms']:.2f} | {r['subspace_ms']:.2f} | "
            f"{r['ratio']:.2f} [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}] | "
            f"{_bytes(r['projection_bytes'])} | {_bytes(r['peak_rss_bytes'])} | "
            f"{bound} |"
        )
    if result.get("products"):
        lines += [
            "",
            "## The projection's products alone",
            "",
            "Median ms of one forward product `P v` and one transposed product "
            "`P^T g` (autodiff through the forward map), each a `tf.function`; "
            "`jit_compile` is the projection's own XLA switch.",
            "",
            "| D | d | projection | options | P v ms | P^T g ms |",
            "|---|---|---|---|---|---|",
        ]
        for r in result["products"]:
            opts = ", ".join(f"{k}={v}" for k, v in r["options"].items())
            lines.append(
                f"| {r['full_dim']} | {r['dim']} | {r['projection']} | {opts} | "
                f"{r['forward_ms']:.2f} | {r['transpose_ms']:.2f} |"
            )
    cost = result.get("search_cost")
    if cost:
        a, g, w = cost["auto"], cost["grid"], cost["sweep"]
        lines += [
            "",
            "## What the d-search costs",
            "",
            "`keras-idim search`'s default (fc on digits, fastfood, threshold "
            f"{cost['threshold']:.4f}), training seconds added up:",
            "",
            "| strategy | runs | seconds | d_int90 |",
            "|---|---|---|---|",
            f'| `dims="auto"` | {a["runs"]} | {a["seconds"]:.0f} | {a["d_int"]} |',
            f"| 25-point log grid, every point | {g['runs']} | {g['seconds']:.0f} "
            f"| {g['d_int']} |",
            f"| the same grid as a list sweep (stops at the first pass) | "
            f"{w['runs']} | {w['seconds']:.0f} | {w['d_int']} |",
        ]
    return "\n".join(lines) + "\n"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def plot(result: dict, path: str) -> None:
    """PNG: step-time ratio against D, one line per projection (log x)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    try:
        for kind, color in zip(PROJECTIONS, ("tab:red", "tab:green", "tab:blue")):
            for jit, style in ((False, "o"), (True, "s")):
                rs = [
                    r
                    for r in result["records"]
                    if r["status"] == "ok"
                    and r["projection"] == kind
                    and r["jit"] == jit
                ]
                if rs:
                    ax.scatter(
                        [r["full_dim"] for r in rs],
                        [r["ratio"] for r in rs],
                        color=color,
                        marker=style,
                        label=f"{kind}{' (XLA)' if jit else ''}",
                    )
                    for r in rs:
                        ax.annotate(
                            f"d={r['dim']}",
                            (r["full_dim"], r["ratio"]),
                            fontsize=6,
                            xytext=(3, 2),
                            textcoords="offset points",
                        )
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("D (parameters of the model)")
        ax.set_ylabel("subspace step / plain step")
        ax.set_title("What the subspace costs per training step")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="keras-idim bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="bench")
    parser.add_argument("--xla", choices=("off", "on", "both"), default="off")
    parser.add_argument(
        "--configs", default=None, help="comma-separated names, e.g. fc-mnist"
    )
    parser.add_argument(
        "--no-search-cost",
        action="store_true",
        help="skip the auto-against-grid search timing (run by default "
        "without --quick)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_config(json.loads(args.worker))), flush=True)
        return 0
    modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.xla]
    names = args.configs.split(",") if args.configs else None
    run(
        quick=args.quick,
        out=args.out,
        jit_modes=modes,
        names=names,
        with_search_cost=False if args.no_search_cost else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
