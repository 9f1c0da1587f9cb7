"""Where a SAID step over every weight of the TinyLlama-shaped decoder
(`keras-idim bench --configs llama-1b-weights`) spends its memory: the
process's RSS sampled every quarter second and its peak reported by stage
(import, model built, wrapped, each step), in one fresh process.

The row's subspace side: SAID Fastfood d = 1,000 over all the weights,
`keep_theta_0=False` and `regenerate=True` (`keras_idim.bench.scale`),
Adam, batch 2 x 128 tokens, `train_on_batch` three times (each timed). LAYERS is the
decoder's depth (22: TinyLlama's 1.1B weights; 4: 307M). With
`TF_CPU_ALLOCATOR_USE_BFC=true`, TensorFlow's own count of its live
tensors (current and peak) is printed after each stage too.

    KERAS_IDIM_FASTFOOD_KERNEL=0 python bench/memory_stages.py [LAYERS]

(A stage's peak is of the samples taken in it: a stage shorter than a
quarter second may have none, and the sampler waits while a call holds
Python's lock; `ru_maxrss` at the end is the process's true peak.)
"""

import os
import resource
import sys
import threading
import time


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(layers: int = 22) -> None:
    os.environ.setdefault("KERAS_IDIM_FASTFOOD_KERNEL", "0")
    stage, samples = ["import"], []

    def sample() -> None:
        while True:
            samples.append((rss(), stage[0]))
            time.sleep(0.25)

    threading.Thread(target=sample, daemon=True).start()
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_idim.bench import scale
    from keras_idim.subspace import SubspaceModel

    spec = next(s for s in scale.jobs(["llama-1b-weights"]) if s["side"] == "subspace")
    spec = {**spec, "backbone": {**spec["backbone"], "num_layers": layers}}
    model_fn, data = scale._task(spec)

    def allocator(what: str) -> None:
        if os.environ.get("TF_CPU_ALLOCATOR_USE_BFC") != "true":
            return
        info = tf.config.experimental.get_memory_info("CPU:0")
        print(
            f"  live tensors after {what}: {info['current'] / 2**30:.2f} GiB, "
            f"peak {info['peak'] / 2**30:.2f} GiB"
        )
        tf.config.experimental.reset_memory_stats("CPU:0")

    stage[0] = "build"
    model = model_fn()
    full = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    allocator("build")
    stage[0] = "wrap"
    model = SubspaceModel(
        model,
        spec["dim"],
        projection="fastfood",
        seed=0,
        structure_aware=True,
        **spec["options"],
    )
    allocator("wrap")
    stage[0] = "compile"
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = next(iter(data))
    seconds = []
    for i in range(3):
        stage[0] = f"step {i}"
        began = time.perf_counter()
        model.train_on_batch(x, y)
        seconds.append(time.perf_counter() - began)
        allocator(f"step {i}")
    stage[0] = "end"
    time.sleep(0.5)
    print(f"D = {full:,}, {layers} layers, {model.projection.num_groups} groups")
    print(
        "  steps' seconds (the first traces the step): "
        + ", ".join(f"{t:.1f}" for t in seconds)
    )
    peaks: dict = {}
    for size, name in samples:
        peaks[name] = max(peaks.get(name, 0), size)
    for name, size in peaks.items():
        print(f"  {name:8s} peak RSS {size / 2**30:6.2f} GiB ({size / full:5.1f} B/w)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"ru_maxrss {peak / 2**30:.2f} GiB ({peak / full:.1f} bytes a weight)")


if __name__ == "__main__":
    main(*(int(x) for x in sys.argv[1:]))
