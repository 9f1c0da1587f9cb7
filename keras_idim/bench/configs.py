"""What the benchmark runs: the model configurations and which to skip."""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Synthetic inputs of the paper's shapes.
MNIST, CIFAR = (28, 28, 1), (32, 32, 3)

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


def jobs(
    quick: bool, jit_modes: Sequence[bool], names: Sequence[str] | None = None
) -> list[dict]:
    """The configurations to run, one process each.

    Args:
        quick: bool. The tiny table (`QUICK`) instead of `FULL`.
        jit_modes: tuple. The XLA settings to run each configuration with.
        names: list or None. Only these configurations (by name). Defaults
            to `None`: all of the table.

    Returns:
        One dict per run: name, model, kwargs, dim, projection, jit and the
        timing (warmup, steps, rounds).
    """
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


def parameter_count(spec: dict) -> int:
    """D of a configuration's model, without building it (fc only; else 0)."""
    kwargs = spec["kwargs"]
    if spec["model"] == "fc":
        widths = [
            math.prod(kwargs["input_shape"]),
            *kwargs.get("hidden", (200, 200)),
            10,
        ]
        return sum(a * b + b for a, b in zip(widths, widths[1:]))
    return 0  # small enough for anything


def skip_reason(spec: dict) -> str | None:
    """Why a configuration is not run, or `None`.

    A dense P over the memory budget is timed briefly: this updates `spec`'s
    timing to `ON_THE_FLY_TIMING`.
    """
    from keras_idim.projections.dense import DEFAULT_MEMORY_BUDGET

    entries = parameter_count(spec) * spec["dim"]
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
