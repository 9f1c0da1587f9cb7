"""The step timer: one configuration timed in a process of its own.

`run_job` starts `python -m keras_idim.bench --worker SPEC`, which calls
`run_config` there, so that each configuration's peak memory is its own.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

#: Examples per synthetic batch.
BATCH = 128


class StepTimer:
    """Wall time of each training batch, from a Keras callback."""

    def __init__(self):
        import keras

        times = self.times = []

        class Timer(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                self.start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                times.append(time.perf_counter() - self.start)

        self.callback = Timer()


def median(values: Sequence[float]) -> float:
    """The median of a non-empty list of numbers."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def call_seconds(fn, arg) -> float:
    """Wall seconds of `fn(arg)` until its ops have run on every device
    (`tf.test.experimental.sync_devices`), its output left where it is: a
    copy of it into NumPy would be timed too (at D = 11M, 44 MB that took
    longer than Fastfood's kernel's product itself)."""
    import tensorflow as tf

    start = time.perf_counter()
    fn(arg)
    tf.test.experimental.sync_devices()
    return time.perf_counter() - start


def run_config(spec: dict) -> dict:
    """Times one configuration in this process; returns its record.

    Args:
        spec: dict. One entry of `configs.jobs`.

    Returns:
        The spec with the timings (`plain_ms`, `subspace_ms`, `ratio` and
        its spread), the projection's bytes, the peak RSS, the number of
        traces of the train step and, for a dense P, one pass's time.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_idim import models
    from keras_idim.subspace import SubspaceModel

    keras.utils.set_random_seed(0)
    build = models.get(spec["model"])
    kwargs = dict(spec["kwargs"])
    kwargs["input_shape"] = tuple(kwargs["input_shape"])
    if "hidden" in kwargs:
        kwargs["hidden"] = tuple(kwargs["hidden"])
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, *kwargs["input_shape"]), dtype=np.float32)
    y = rng.integers(0, 10, BATCH)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()

    def compiled(model):
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss="sparse_categorical_crossentropy",
            jit_compile=spec["jit"],
        )
        return model

    plain = compiled(build(num_classes=10, **kwargs))
    started = time.perf_counter()
    sub = SubspaceModel(
        build(num_classes=10, **kwargs),
        spec["dim"],
        projection=spec["projection"],
        seed=0,
    )
    build_seconds = time.perf_counter() - started
    compiled(sub)
    traces = {"n": 0}
    train_step = sub.train_step

    def counted(data):
        traces["n"] += 1
        return train_step(data)

    sub.train_step = counted

    def steps(model, n):
        timer = StepTimer()
        model.fit(
            data, epochs=1, steps_per_epoch=n, callbacks=[timer.callback], verbose=0
        )
        return timer.times

    for model in (plain, sub):
        steps(model, spec["warmup"])
    ratios, plain_ms, sub_ms = [], [], []
    for _ in range(spec["rounds"]):
        p = median(steps(plain, spec["steps"]))
        s = median(steps(sub, spec["steps"]))
        plain_ms.append(1e3 * p)
        sub_ms.append(1e3 * s)
        ratios.append(s / p)
    record = {
        **spec,
        "full_dim": sub.full_dim,
        "plain_ms": median(plain_ms),
        "subspace_ms": median(sub_ms),
        "ratio": median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "projection_bytes": sub.projection.memory_bytes,
        "kernel": getattr(sub.projection, "uses_kernel", False),
        "build_seconds": build_seconds,
        "jit_effective": bool(sub.jit_compile),
        "traces": traces["n"],
        "status": "ok",
    }
    if spec["projection"] == "dense":
        forward = tf.function(sub.projection.__call__)
        v = tf.random.normal([sub.projection.dim])
        forward(v)
        passes = [call_seconds(forward, v) for _ in range(max(3, spec["steps"]))]
        record["pass_ms"] = 1e3 * median(passes)
        record["bound_ms"] = record["plain_ms"] + 2 * record["pass_ms"]
        record["bound_ratio"] = record["subspace_ms"] / record["bound_ms"]
        record["stored"] = sub.projection.stored
    record["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return record


def run_job(spec: dict, timeout: int = 1800) -> dict:
    """Runs `run_config(spec)` in a new process; returns its record.

    Args:
        spec: dict. One entry of `configs.jobs`.
        timeout: int. Seconds the process may run. Defaults to `1800`.

    Returns:
        The record, or the spec with `status="error"` and the last line the
        process printed as `message` when it failed.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "keras_idim.bench", "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return {
            **spec,
            "status": "error",
            "message": tail[0] if tail else f"exit {proc.returncode}",
        }
    return json.loads(lines[-1])
