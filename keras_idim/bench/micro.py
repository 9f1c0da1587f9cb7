"""Micro-benchmarks: one projection product alone, and the d-search's cost."""

from __future__ import annotations

import time

from keras_idim.bench.timer import median

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
    """Median ms of P v and P^T g for each projection variant (`PRODUCTS`).

    Args:
        quick: bool. The first seven variants at D=700, d=20, timed 3 times.
            Defaults to `False`.
        verbose: int. Print a line per variant when nonzero. Defaults to `1`.

    Returns:
        One dict per variant: full_dim, dim, projection, options,
        forward_ms and transpose_ms.
    """
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
            timing[f"{name}_ms"] = 1e3 * median(times)
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

    Args:
        verbose: int. Print the result when nonzero. Defaults to `1`.

    Returns:
        A dict: the threshold, and runs, seconds and d_int of `auto`, of the
        whole grid and of the sweep.
    """
    import numpy as np

    from keras_idim import data, models
    from keras_idim.dimsearch.api import search

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
