"""`learning_rate="auto"` against a grid of fixed rates: one search each.

    python examples/rates_vs_grid.py                       # digits, offline
    python examples/rates_vs_grid.py --npz mnist5k.npz     # your arrays

Each fixed-rate search reuses the automatic search's local baseline
(`baseline=auto`), so that all share one threshold; the table gives d_int90
of each. `--npz` takes a file with `x_train`, `y_train`, `x_val`, `y_val`
(images of shape (n, H, W, C) or flat vectors, integer labels). The figures
in docs/search.md ("A d90 you can trust") were made by this script, on
digits and on 5,000 real MNIST digits.
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np

from keras_idim import data, models, search


def main(npz=None, grid=(0.003, 0.01, 0.03, 0.1, 0.3), out="runs/rates", **kwargs):
    """d_int of the automatic rate and of each fixed rate: `{rate: d_int}`."""
    if npz is None:
        train, val, info = data.load("digits", arrays=True)
        shape, classes = info.input_shape, info.num_classes
    else:
        z = np.load(npz)
        train, val = (z["x_train"], z["y_train"]), (z["x_val"], z["y_val"])
        shape, classes = z["x_train"].shape[1:], int(z["y_train"].max()) + 1
    model_fn = functools.partial(models.fc, shape, classes)
    results = {}
    started = time.perf_counter()
    auto = search(
        model_fn, train, val, results_path=f"{out}/auto/results.json", **kwargs
    )
    results["auto"] = auto.d_int
    print(f"auto: d_int90 = {auto.d_int} ({time.perf_counter() - started:.0f}s)")
    for rate in grid:
        started = time.perf_counter()
        fixed = search(
            model_fn,
            train,
            val,
            learning_rate=rate,
            baseline=auto,
            results_path=f"{out}/{rate:g}/results.json",
            **kwargs,
        )
        results[rate] = fixed.d_int
        print(
            f"{rate:g}: d_int90 = {fixed.d_int} ({time.perf_counter() - started:.0f}s)"
        )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", default=None)
    parser.add_argument("--out", default="runs/rates")
    args = parser.parse_args()
    main(args.npz, out=args.out, verbose=0)
