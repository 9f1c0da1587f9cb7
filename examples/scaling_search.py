"""Wall time of one d-search with 1 worker against N Ray workers, on this machine.

Runs the main job's search (`keras-idim search`'s defaults: the FC network on
digits, Fastfood, d_int90, local baseline) three ways and prints a table:

1. `workers=1`: the runs one after the other in this process;
2. Ray's start-up alone: `import ray` and `ray.init` (127.0.0.1 only, as
   keras_idim starts it), then one warm-up task per worker, which imports
   TensorFlow and keras_idim in each worker process;
3. `workers=N` on that Ray, workers warm: the search alone.

Each search writes a fresh results file, so nothing is resumed, and both
answers are printed: the parallel answer must be the sequential one.
Needs `pip install "keras-idim[ray]"`.

    python examples/scaling_search.py --workers 2 [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from keras_idim import cli, data, models
from keras_idim.dimsearch import search
from keras_idim.dimsearch.ray_runner import start_local_ray


def warm_up(_: int) -> int:
    """A Ray task: import what a run needs, in the worker that runs it."""
    import keras_idim.dimsearch.runner  # noqa: F401

    return os.getpid()


def main(
    workers: int = 2, model: str = "fc", seeds: int = 1, epochs: int | None = None
):
    """Runs the three measurements; prints and returns the table's rows.

    Args:
        workers: int. Ray workers of the parallel search. Defaults to `2`.
        model: str. `keras-idim search --model`. Defaults to `"fc"`.
        seeds: int. Seeds per d (0..seeds-1). Defaults to `1`.
        epochs: int or None. Epochs per run; `None` keeps the CLI's.

    Returns:
        `(rows, sequential, parallel)`: (name, seconds) pairs and the two
        SearchResults.
    """
    defaults = cli.build_parser().parse_args(["search", "--model", model])
    train, val, info = data.load("digits", batch_size=defaults.batch_size, arrays=True)
    model_fn = models.from_spec(model, info)
    kwargs = dict(
        projection=defaults.projection,
        fraction=defaults.fraction,
        seeds=tuple(range(seeds)),
        epochs=epochs or defaults.epochs,
        batch_size=defaults.batch_size,
        learning_rate=defaults.lr,
        baseline_learning_rate=defaults.baseline_lr,
        verbose=0,
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        sequential = search(
            model_fn, train, val, results_path=f"{tmp}/one.json", **kwargs
        )
        rows.append(("1 worker (this process)", time.perf_counter() - started))

        started = time.perf_counter()
        ray = start_local_ray(workers)
        try:
            rows.append(
                ("Ray start-up: import ray, ray.init", time.perf_counter() - started)
            )
            threads = max(1, (os.cpu_count() or 1) // workers)
            started = time.perf_counter()
            task = ray.remote(num_cpus=threads)(warm_up)
            pids = ray.get([task.remote(i) for i in range(workers)])
            rows.append(
                (
                    f"Ray start-up: {len(set(pids))} workers import TensorFlow",
                    time.perf_counter() - started,
                )
            )
            started = time.perf_counter()
            parallel = search(
                model_fn,
                train,
                val,
                results_path=f"{tmp}/many.json",
                workers=workers,
                **kwargs,
            )
            rows.append(
                (f"{workers} workers (search alone)", time.perf_counter() - started)
            )
        finally:
            ray.shutdown()
    print(f"| {model} on digits, {defaults.projection}, {seeds} seed(s) | seconds |")
    print("|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} |")
    print()
    print(
        f"sequential: {sequential.verdict()} ({len(sequential.runs)} runs)\n"
        f"parallel:   {parallel.verdict()} ({len(parallel.runs)} runs on the "
        f"path, {len(parallel.speculative_runs)} speculative)"
    )
    return rows, sequential, parallel


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="fc")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    main(args.workers, args.model, args.seeds, args.epochs)
