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

Each projection's products are also timed alone, against the machine's
copy bandwidth (one large `np.copyto`): a product's bound is the time that
moving the bytes it must move takes (P's stored tensors read once, its
input read, its output written), and the report gives each product's
ratio to it.

    keras-idim bench            # runs/bench/results.json, RESULTS.md, ratio.png
    keras-idim bench --quick    # a tiny model, in seconds
    keras-idim bench --out bench --overwrite   # this repository's tables
    keras-idim bench --configs bert-base,roberta-large-size --no-search-cost

The pretrained-size rows (`keras_idim.bench.scale`, keras-hub BERTs of 10^8
weights) run only when named: plain and subspace in separate processes,
for their peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Sequence

from keras_idim.bench import scale
from keras_idim.bench.configs import FULL, QUICK, jobs, skip_reason
from keras_idim.bench.micro import copy_bandwidth, product_timings, search_cost
from keras_idim.bench.report import describe, markdown, plot
from keras_idim.bench.timer import BATCH, run_config, run_job
from keras_idim.utils.io import atomic_write, check_writable

#: The files that `run` writes into its `out` folder.
OUTPUTS = ("results.json", "RESULTS.md", "ratio.png")

#: Where `keras-idim bench` writes by default: beside the runs of
#: `keras-idim search`, never over this repository's own `bench/` tables.
DEFAULT_OUT = os.path.join("runs", "bench")


def run(
    quick: bool = False,
    out: str = DEFAULT_OUT,
    jit_modes: Sequence[bool] = (False,),
    names: Sequence[str] | None = None,
    with_search_cost: bool | None = None,
    timeout: int = 1800,
    verbose: int = 1,
    overwrite: bool = False,
) -> dict:
    """Runs the benchmark; writes OUT/results.json, RESULTS.md and ratio.png.

    Each file is written atomically: a reader never sees half of one.

    Args:
        quick: bool. A tiny model, in seconds. Defaults to `False`.
        out: str. The folder of the results. Defaults to `"runs/bench"`.
        jit_modes: tuple. The XLA settings to time. Defaults to `(False,)`.
        names: list or None. Only these configurations. Defaults to `None`.
        with_search_cost: bool or None. Time the d-search against a grid
            (minutes). Defaults to `None`: unless `quick`.
        timeout: int. Seconds each configuration's process may run.
            Defaults to `1800`.
        verbose: int. Print progress when nonzero. Defaults to `1`.
        overwrite: bool. Replace results already in `out`. Defaults to
            `False`: they are refused before anything is timed.

    Returns:
        The results, as written to `results.json`.

    Raises:
        ValueError: an unknown configuration name, or an `out` that is a
            file or cannot be written.
        FileExistsError: `out` holds results and `overwrite` is false.
    """
    check_out(out, overwrite)
    check_names(names, quick)
    import keras
    import tensorflow as tf

    from keras_idim.projections import kernel

    if verbose:  # where Fastfood stands, before any row is timed
        print(kernel.describe(), flush=True)
    built = kernel.status()
    scale_names = [n for n in names or () if n in scale.NAMES]
    names = [n for n in names or () if n not in scale.NAMES] or None
    records = []
    # Only pretrained-size rows named: none of the other table.
    table = jobs(quick, jit_modes, names) if names or not scale_names else []
    for spec in table:
        label = (
            f"{spec['name']:>12} d={spec['dim']:<7} {spec['projection']:>8} "
            f"{'xla' if spec['jit'] else '   '}"
        )
        reason = skip_reason(spec)
        if reason:
            records.append({**spec, "status": "skipped", "message": reason})
            if verbose:
                print(f"{label}  skipped: {reason}", flush=True)
            continue
        record = run_job(spec, timeout=timeout)
        records.append(record)
        if verbose:
            print(f"{label}  {describe(record)}", flush=True)
    scale_records = []
    for spec in scale.jobs(scale_names):
        label = (
            f"{spec['name']:>18} {spec['side']:>8} {spec['projection'] or '':>8}"
            f"{' SAID' if spec['said'] else ''}"
        )
        reason = scale.skip_reason(spec)
        record = (
            {**spec, "status": "skipped", "message": reason}
            if reason
            else run_job(spec, timeout=timeout)
        )
        scale_records.append(record)
        if verbose:
            print(f"{label}  {scale.describe(record)}", flush=True)
    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "date": time.strftime("%Y-%m-%d"),
            # 0: TensorFlow's default (one thread per core); the kernel's
            # blocks run on the same pool.
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "fastfood_kernel": {
                k: built[k] for k in ("loaded", "flags", "compiler", "reason")
            },
        },
        "batch_size": BATCH,
        "quick": quick,
        "command": "keras-idim bench"
        + (" --quick" if quick else "")
        + {(False,): "", (True,): " --xla on"}.get(tuple(jit_modes), " --xla both"),
        "records": records,
    }
    if scale_records:
        result["scale"] = scale.rows(scale_records)
    bandwidth = copy_bandwidth(quick)
    result["bandwidth"] = bandwidth
    result["products"] = product_timings(quick, verbose, bandwidth["bytes_per_s"])
    if with_search_cost if with_search_cost is not None else not quick:
        result["search_cost"] = search_cost(verbose)
    atomic_write(os.path.join(out, "results.json"), json.dumps(result, indent=1))
    atomic_write(os.path.join(out, "RESULTS.md"), markdown(result))
    plot(result, os.path.join(out, "ratio.png"))
    return result


def check_out(out: str, overwrite: bool, cli: bool = False) -> None:
    """Refuses, before anything is timed, an `out` that is a file, cannot be
    written, or holds results already (unless `overwrite`); `cli` names
    the command line's flags in the errors."""
    arg, flag = ("--out", "--overwrite") if cli else ("`out`", "`overwrite=True`")
    check_writable(out, arg.strip("`"), folder=True)
    found = [name for name in OUTPUTS if os.path.exists(os.path.join(out, name))]
    if found and not overwrite:
        raise FileExistsError(
            f"{arg} {out!r} already holds {', '.join(found)}. Pass {flag} to "
            "replace them, or choose another folder."
        )


def check_names(
    names: Sequence[str] | None, quick: bool = False, cli: bool = False
) -> None:
    """Refuses unknown or empty configuration names before anything is
    timed; `cli` names the command line's flag in the error."""
    known = [row[0] for row in (QUICK if quick else FULL)] + list(scale.NAMES)
    unknown = [n for n in names or () if n not in known]
    if unknown:
        raise ValueError(
            f"unknown benchmark configurations {unknown}; expected some of "
            f"{known}. Received: {'--configs' if cli else 'configs'}="
            f"{','.join(names)!r}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """`keras-idim bench`: parses `argv`, runs; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="keras-idim bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"the folder of the results (default: {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results already in --out (refused otherwise)",
    )
    parser.add_argument("--xla", choices=("off", "on", "both"), default="off")
    parser.add_argument(
        "--configs",
        default=None,
        help="comma-separated names, e.g. fc-mnist; the pretrained-size rows "
        f"({', '.join(scale.NAMES)}) run only when named",
    )
    parser.add_argument(
        "--no-search-cost",
        action="store_true",
        help="skip the auto-against-grid search timing (run by default "
        "without --quick)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # one configuration, in the process that `run_job` started
        spec = json.loads(args.worker)
        record = scale.run_side(spec) if "side" in spec else run_config(spec)
        print(json.dumps(record), flush=True)
        return 0
    modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.xla]
    names = args.configs.split(",") if args.configs is not None else None
    try:  # usage errors and an existing target, before any timing
        check_names(names, args.quick, cli=True)
        check_out(args.out, args.overwrite, cli=True)
    except ValueError as e:
        parser.error(str(e))
    except FileExistsError as e:
        parser.exit(1, f"{parser.prog}: {e}\n")
    run(
        quick=args.quick,
        out=args.out,
        jit_modes=modes,
        names=names,
        with_search_cost=False if args.no_search_cost else None,
        overwrite=args.overwrite,
    )
    return 0


__all__ = [
    "copy_bandwidth",
    "main",
    "markdown",
    "plot",
    "product_timings",
    "run",
    "search_cost",
]
