"""Fastfood's P stored against drawn again in each product
(`regenerate=True`), in TensorFlow ops, in one process: the build time,
the held bytes and the products' median times (each product a
`tf.function`, the two P's timed alternately), and that both give the
same `P v` bit for bit.

    KERAS_IDIM_FASTFOOD_KERNEL=0 python bench/fastfood_regen.py [D] [d] [runs]
"""

import os
import sys
import time

import numpy as np
import tensorflow as tf

from keras_idim.projections import FastfoodProjection


def main(full: int = 2**24, dim: int = 1000, runs: int = 5) -> None:
    os.environ.setdefault("KERAS_IDIM_FASTFOOD_KERNEL", "0")
    made = {}
    for regenerate in (False, True):
        start = time.perf_counter()
        p = FastfoodProjection(full, dim, seed=0, regenerate=regenerate)
        built = time.perf_counter() - start
        made[regenerate] = p
        print(
            f"regenerate={regenerate}: version {p.version}, {p.num_groups} groups, "
            f"{len(p._plan())} ranges, built in {built:.1f} s, held "
            f"{p.memory_bytes / 2**20:.1f} MiB ({p.memory_bytes / full:.2f} B/weight)"
        )
    rng = np.random.default_rng(0)
    v = tf.constant(rng.standard_normal(dim), tf.float32)
    g = tf.constant(rng.standard_normal(full), tf.float32)
    base = tf.constant(rng.standard_normal(full), tf.float32)
    sizes = [full // 4, full // 2, full - full // 4 - full // 2]
    scales = tf.constant([0.5, 1.0, 2.0])
    pieces = tf.split(g, sizes)

    def products(p):
        return {
            "P v": tf.function(lambda: p(v)),
            "P^T g": tf.function(lambda: p.transpose(g)),
            "base + s * P v (pieces)": tf.function(
                lambda: list(p.pieces.affine(v, base, sizes, scales))
            ),
            "SAID P^T (s * g), dots (pieces)": tf.function(
                lambda: p.pieces.transpose(pieces, scales, v)
            ),
        }

    fns = {r: products(p) for r, p in made.items()}
    same = np.array_equal(fns[False]["P v"]().numpy(), fns[True]["P v"]().numpy())
    print(f"P v bit for bit the same: {same}")
    print("| product | stored ms | regenerate ms | ratio |")
    print("|---|---|---|---|")
    for name in fns[False]:
        times = {False: [], True: []}
        for r in (False, True):
            fns[r][name]()  # trace and compile
        for _ in range(runs):
            for r in (False, True):
                start = time.perf_counter()
                out = fns[r][name]()
                tf.nest.map_structure(lambda t: t.numpy(), out)
                times[r].append(1e3 * (time.perf_counter() - start))
        a, b = (float(np.median(times[r])) for r in (False, True))
        print(f"| {name} | {a:.0f} | {b:.0f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main(*(int(x) for x in sys.argv[1:]))
