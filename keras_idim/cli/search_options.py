"""The `search` sub-command's options (see `options` for their types)."""

from __future__ import annotations

import argparse

from keras_idim.cli.options import (
    DEFAULTS,
    _add_common,
    _baseline,
    _dims,
    _finite_float,
    _fraction,
    _names,
    _positive_float,
    _positive_int,
    _rate,
)
from keras_idim.dimsearch.methods import METHODS


def add_search(sub) -> None:
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
    _add_target(s)
    _add_runs(s)
    _add_method(s)


def _add_target(s: argparse.ArgumentParser) -> None:
    """What a d must reach: the fraction, baseline, threshold and floor."""
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
        "--threshold-rule",
        default="baseline",
        choices=("baseline", "above_floor"),
        help="baseline: FRACTION x baseline (baseline / FRACTION for a metric "
        "to minimise), the papers' rule; above_floor: floor + FRACTION x "
        "(baseline - floor), from the chance floor (default: %(default)s)",
    )
    s.add_argument(
        "--floor",
        type=_finite_float,
        default=None,
        help="the metric's chance floor, for a metric whose floor cannot be "
        "computed (default: computed for accuracy and MSE/MAE-like metrics: "
        "the majority class or the training mean; otherwise none is checked)",
    )


def _add_runs(s: argparse.ArgumentParser) -> None:
    """Which d are tried, how the runs train and log, and where they go."""
    s.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="log every run for TensorBoard under DIR, one sub-folder a run "
        "(pip install 'keras-idim[tensorboard]')",
    )
    s.add_argument(
        "--baseline-lr",
        type=_rate,
        default=DEFAULTS["baseline_lr"],
        metavar="RATE",
        help="Adam learning rate of the local baseline, or 'auto' (default: "
        "%(default)s)",
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


def _add_method(s: argparse.ArgumentParser) -> None:
    """The method, a reused baseline, resuming, and what is printed."""
    s.add_argument(
        "--method",
        default="subspace",
        choices=tuple(METHODS),
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
    s.add_argument(
        "--baseline-from",
        default=None,
        metavar="DIR",
        help="reuse the local baseline of an earlier search (its run folder or "
        "results.json) instead of training one; refused, naming what differs, "
        "unless it had the same data, metric and baseline recipe",
    )
    s.add_argument(
        "--overwrite",
        action="store_true",
        help="start over instead of resuming OUT/results.json (the old one is "
        "kept as results.json.bak); without it, results of another model, data "
        "or configuration are refused",
    )
    s.add_argument("--quiet", action="store_true", help="print the answer only")
    s.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print every epoch of every run, as Keras does",
    )
