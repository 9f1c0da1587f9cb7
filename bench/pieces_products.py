"""Fastfood's products over pieces in TensorFlow ops at a BERT-base size, as
a SAID step makes them: the median ms of SAID's transpose with the lambdas'
dot products (`pieces.transpose(pieces, scales, v)`), the transpose alone,
the weights' write (`pieces.affine`) and `P v`, each a `tf.function`, in
one process.

The pieces have BERT-base's repeating sizes (768 x 768, 768, 768 x 3072,
3072, 768) up to D = 109,483,778 weights; d = 1,000 (stacked blocks of
1,024, version 3: 64 groups). Compare the code before and after a change
by running this in each checkout, one after the other, on an idle machine.

    KERAS_IDIM_FASTFOOD_KERNEL=0 python bench/pieces_products.py [runs]
"""

import os
import sys
import time

import numpy as np

FULL, DIM = 109_483_778, 1000
SIZES = [768 * 768, 768, 768 * 3072, 3072, 768]


def main(runs: int = 3) -> None:
    os.environ.setdefault("KERAS_IDIM_FASTFOOD_KERNEL", "0")
    import tensorflow as tf

    from keras_idim.projections import FastfoodProjection

    sizes: list[int] = []
    while sum(sizes) + SIZES[len(sizes) % len(SIZES)] <= FULL:
        sizes.append(SIZES[len(sizes) % len(SIZES)])
    sizes.append(FULL - sum(sizes))
    p = FastfoodProjection(FULL, DIM, seed=0)
    print(
        f"D = {FULL:,}, d = {DIM}, {len(sizes)} pieces, {p.num_groups} groups of "
        f"{p.group_rows} blocks of {p.block_length}, kernel: {p.uses_kernel}"
    )
    rng = np.random.default_rng(0)
    pieces = [tf.constant(rng.standard_normal(n), tf.float32) for n in sizes]
    base = tf.concat(pieces, 0)
    scales = tf.constant(rng.uniform(0.5, 1.5, len(sizes)), tf.float32)
    v = tf.constant(rng.standard_normal(DIM), tf.float32)
    products = {
        "SAID transpose and dots": lambda: p.pieces.transpose(pieces, scales, v),
        "transpose": lambda: p.pieces.transpose(pieces, scales)[0],
        "affine (the write)": lambda: [
            tf.reduce_sum(u) for u in p.pieces.affine(v, base, sizes, scales)
        ],
        "P v": lambda: tf.reduce_sum(p(v)),
    }
    for name, product in products.items():
        fn = tf.function(product)
        fn()  # traced, and compiled
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), fn())
            times.append(time.perf_counter() - start)
        print(f"  {name:24s} {1000 * np.median(times):8.1f} ms")


if __name__ == "__main__":
    main(*(int(x) for x in sys.argv[1:]))
