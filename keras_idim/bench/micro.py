"""Micro-benchmarks: one projection product alone, and the d-search's cost."""

from __future__ import annotations

import contextlib
import os
import time

from keras_idim.bench.timer import call_seconds, median

#: Projection micro-benchmark: (D, d, kind, options) for one forward product
#: and one transposed product, each as a tf.function. `"kernel": True`: in
#: Fastfood's compiled kernel (`keras_idim.projections.kernel`); every other
#: variant in TensorFlow ops.
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
    (11_050_000, 10_000, "fastfood", {"blocks": "stacked", "kernel": True}),
    # The kernel at fc-mnist's size (`auto` uses it at every size, no GPU).
    (199_210, 1_000, "fastfood", {"blocks": "stacked", "kernel": True}),
    # Uni-LoRA's one nonzero a row: a gather and a segment sum over D.
    (199_210, 1_000, "unilora", {"jit_compile": False}),
    (199_210, 1_000, "unilora", {"jit_compile": True}),
    (11_050_000, 10_000, "unilora", {"jit_compile": False}),
    (11_050_000, 10_000, "unilora", {"jit_compile": True}),
]


def copy_bandwidth(quick: bool = False) -> dict:
    """The machine's memory bandwidth, as one large copy measures it.

    Median over 7 copies (`np.copyto`) of a 256 MiB float32 array (4 MiB
    with `quick`, which then stays in cache): bytes read plus bytes
    written, per second.

    Args:
        quick: bool. A small array. Defaults to `False`.

    Returns:
        A dict: bytes_per_s, array_bytes and method.
    """
    import numpy as np

    size = 2**20 if quick else 2**26
    source = np.random.default_rng(0).random(size, dtype=np.float32)
    target = np.empty_like(source)
    times = []
    for _ in range(7):
        t = time.perf_counter()
        np.copyto(target, source)
        times.append(time.perf_counter() - t)
    return {
        "bytes_per_s": 2 * source.nbytes / median(times),
        "array_bytes": source.nbytes,
        "method": "np.copyto",
    }


def traffic_bytes(projection) -> int | None:
    """The fewest bytes one product must move through memory: the stored
    tensors of P that it reads, once, the input read and the output written
    (float32), for `P v` and `P^T g` alike. A sparse P compiled with XLA
    reads its values and int32 coordinates (not the int64 indices that it
    also keeps); without XLA, its SparseTensor. `None` for a P that is not
    stored (a dense P over its budget, made on the fly), which no bandwidth
    bounds."""
    from keras_idim.projections import SparseProjection
    from keras_idim.projections.base import tensor_bytes

    if isinstance(projection, SparseProjection):
        m = projection.matrix
        read = (
            tensor_bytes(m.values, projection._rows, projection._cols)
            if projection.jit_compile
            else tensor_bytes(m)
        )
    else:
        read = projection.memory_bytes
    if read == 0:
        return None
    return read + 4 * (projection.full_dim + projection.dim)


@contextlib.contextmanager
def _kernel_setting(value: str):
    """`KERAS_IDIM_FASTFOOD_KERNEL` set to `value` while projections are made."""
    from keras_idim.projections import kernel

    before = os.environ.get(kernel.ENV)
    os.environ[kernel.ENV] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[kernel.ENV]
        else:
            os.environ[kernel.ENV] = before


def product_timings(
    quick: bool = False, verbose: int = 1, bandwidth: float | None = None
) -> list[dict]:
    """Median ms of P v and P^T g for each projection variant (`PRODUCTS`).

    Args:
        quick: bool. The first seven variants at D=700, d=20, timed 3 times.
            Defaults to `False`.
        verbose: int. Print a line per variant when nonzero. Defaults to `1`.
        bandwidth: float or None. The machine's copy bandwidth in bytes per
            second (`copy_bandwidth`): each variant then gets the time that
            moving `traffic_bytes` takes at it (`bound_ms`) and each
            product's ratio to that bound. Defaults to `None`.

    Returns:
        One dict per variant: full_dim, dim, projection, options,
        forward_ms and transpose_ms; with a bandwidth, also traffic_bytes,
        bound_ms, forward_bound_ratio and transpose_bound_ratio (where P is
        stored).
    """
    import tensorflow as tf

    from keras_idim import projections

    out = []
    table = [(700, 20, k, o) for _, _, k, o in PRODUCTS[:7]] if quick else PRODUCTS
    for full_dim, dim, kind, options in table:
        # Fastfood's compiled kernel where the variant names it, else not.
        with _kernel_setting("1" if options.get("kernel") else "0"):
            proj = projections.get(kind)(
                full_dim,
                dim,
                seed=0,
                **{k: v for k, v in options.items() if k != "kernel"},
            )
        v, g = tf.random.normal([dim]), tf.random.normal([full_dim])
        forward, transpose = tf.function(proj.__call__), tf.function(proj.transpose)
        timing = {}
        for name, fn, arg in (("forward", forward, v), ("transpose", transpose, g)):
            fn(arg)
            times = [
                call_seconds(fn, arg)
                for _ in range(3 if quick or full_dim > 10**6 else 15)
            ]
            timing[f"{name}_ms"] = 1e3 * median(times)
        traffic = traffic_bytes(proj)
        if bandwidth and traffic:
            bound_ms = 1e3 * traffic / bandwidth
            timing.update(
                traffic_bytes=traffic,
                bound_ms=bound_ms,
                forward_bound_ratio=timing["forward_ms"] / bound_ms,
                transpose_bound_ratio=timing["transpose_ms"] / bound_ms,
            )
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
            bound = (
                f" (bandwidth bound {timing['bound_ms']:.2f} ms: x"
                f"{timing['forward_bound_ratio']:.1f} / "
                f"x{timing['transpose_bound_ratio']:.1f})"
                if "bound_ms" in timing
                else ""
            )
            print(
                f"products D={full_dim} d={dim} {kind} {options}: "
                f"{timing['forward_ms']:.2f} / {timing['transpose_ms']:.2f} ms"
                f"{bound}",
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
