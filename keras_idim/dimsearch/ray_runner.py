"""A d-search's training runs as Ray tasks: `search(..., workers=N)`.

The driver (the process that calls `keras_idim.search`) decides which runs
to start (`keras_idim.dimsearch.strategy.plan_dims`, a pure function of the
finished runs), writes the results file, and is the only one that does; the runs
themselves go to Ray workers. Each worker is a process that imports
TensorFlow once and runs task after task; while it trains, its process
title is `ray::keras_idim_run`. A run whose worker dies (killed, out of
memory) is run again by Ray, up to `MAX_RETRIES` times.

Ray is an optional dependency: `pip install "keras-idim[ray]"`.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from keras_idim.dimsearch.recipe import Recipe, Task, run_kind
from keras_idim.dimsearch.records import RunRecord
from keras_idim.dimsearch.runner import train_run
from keras_idim.utils.exports import keras_idim_export

#: How often Ray runs a task again whose worker process died.
MAX_RETRIES = 3

#: Set to "0" before Ray is imported, Ray keeps a cluster it starts on this
#: machine only: every address it uses and listens on is 127.0.0.1.
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

_INSTALL = 'pip install "keras-idim[ray]"'


def import_ray(local: bool):
    """Imports Ray; for a cluster on this machine only, first sets
    `LOCAL_ONLY_ENV` (unless the user set it), so that it binds 127.0.0.1."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault(LOCAL_ONLY_ENV, "0")
    try:
        import ray
    except ImportError:
        return None
    return ray


def start_local_ray(workers: int):
    """Starts a Ray on this machine only (127.0.0.1), for `workers` runs.

    It has `max(CPUs, workers)` CPUs, no dashboard, and keeps the workers'
    output in its log folder. Returns the `ray` module.
    """
    ray = import_ray(local=True)
    ray.init(
        num_cpus=max(os.cpu_count() or 1, workers),
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    return ray


#: Seconds `check_reachable` waits for a Ray address to answer.
CONNECT_TIMEOUT = 3.0


def check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuses a `HOST:PORT` (or `ray://HOST:PORT`) address where nothing
    answers a TCP connection within `timeout` seconds: Ray itself would
    retry for minutes. `None`, `"auto"`, other forms, and a Ray already
    initialised in this process (whose connection is used) are left alone."""
    import socket

    if address is None or "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError, OverflowError) as e:
        raise ValueError(
            f"Nothing answers at `ray_address={address!r}` (a TCP connection to "
            f"{host}:{port} failed within {timeout:g} s: {e}). Start the Ray "
            "head there (`ray start --head`), or check the address and port. "
            f"Received: `ray_address={address!r}`"
        ) from None


def check_ray(workers: int, address: str | None, train_data: Any, val_data: Any):
    """Fails early, before any work, if a Ray search cannot run."""
    import tensorflow as tf

    if import_ray(local=address is None) is None:
        what = f"`workers={workers}`" if workers > 1 else f"`ray_address={address!r}`"
        raise ImportError(
            f"{what} runs the search's training runs on Ray, which is not "
            f"installed. Install the extra: {_INSTALL} (or `pip install ray`), "
            "or use `workers=1` and no `ray_address`."
        )
    check_reachable(address)
    for arg, data in (("train_data", train_data), ("val_data", val_data)):
        if isinstance(data, tf.data.Dataset):
            raise ValueError(
                f"`{arg}` should be arrays `(x, y)`, or a function that builds "
                "the tf.data.Dataset, for a search on Ray workers: a "
                "tf.data.Dataset cannot be sent to another process. "
                f"Received: `{arg}={data!r}`"
            )


_THREADS: int | None = None


def keras_idim_run(recipe, dim: int | None, seed: int, threshold, threads: int):
    """One training run, in a Ray worker (the name is its process title)."""
    global _THREADS
    if _THREADS is None:
        import tensorflow as tf

        try:  # only possible before TensorFlow's runtime starts in this worker
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass
        _THREADS = threads
    return train_run(recipe, dim, seed, threshold)


def _last_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


@keras_idim_export("keras_idim.dimsearch.RayRunner")
class RayRunner:
    """Runs `(dim, seed)` tasks on Ray, `slots` at a time.

    Joins the Ray that this process is already connected to, or the cluster
    at `address`, or starts one on this machine bound to 127.0.0.1 (and then
    shuts it down in `close`).
    """

    def __init__(self, *, workers: int, address: str | None = None):
        self.slots = workers
        self._address = address
        self._started = False
        self._ray = None
        self.startup_seconds = 0.0
        self._refs: dict = {}  # ObjectRef -> (dim, seed), in submission order
        self._cancelled: set = set()

    def start(self, recipe: Recipe, say: Callable[[str], None] = print) -> None:
        """Connects to (or starts) Ray and sends it the recipe, once."""
        address, workers = self._address, self.slots
        ray = import_ray(local=address is None)
        self._ray = ray
        if not ray.is_initialized():
            started = time.perf_counter()
            if address is None:
                start_local_ray(workers)
            else:
                ray.init(address=address, log_to_driver=False)
            self._started = True
            self.startup_seconds = time.perf_counter() - started
        cpus = ray.cluster_resources().get("CPU", 1)
        self.threads = max(1, int(cpus // workers))
        self._remote = ray.remote(
            num_cpus=self.threads, max_retries=MAX_RETRIES, retry_exceptions=False
        )(keras_idim_run)
        try:
            self._recipe = ray.put(recipe)
        except Exception as e:
            self.close()
            raise ValueError(
                "The search's `model_fn`, data, loss, metrics, callbacks and "
                "optimizer must be "
                "picklable to go to Ray workers (define `model_fn` at module "
                f"level, for instance); pickling failed: {type(e).__name__}: {e}"
            ) from None
        self._projection = run_kind(recipe)
        if address is None and self._started:
            node = ray.util.get_node_ip_address()
            where = f"a Ray on this machine ({node} only)"
            if node != "127.0.0.1":  # Ray was imported before keras_idim set it
                where = (
                    f"a Ray on this machine, at {node} and listening on all "
                    f"interfaces (set {LOCAL_ONLY_ENV}=0 before Ray is imported "
                    "to keep it on 127.0.0.1)"
                )
        else:
            where = f"the Ray at {address or ray.get_runtime_context().gcs_address}"
        say(
            f"{workers} workers of {self.threads} CPU(s) on {where}"
            + (f", started in {self.startup_seconds:.1f}s" if self._started else "")
        )

    def running(self) -> list[Task]:
        return list(self._refs.values())

    def free(self) -> int:
        return self.slots - len(self._refs)

    def submit(self, task: Task, threshold: float | None) -> None:
        dim, seed = task
        ref = self._remote.remote(self._recipe, dim, seed, threshold, self.threads)
        self._refs[ref] = task

    def cancel(self, task: Task) -> None:
        for ref, t in self._refs.items():
            if t == task and ref not in self._cancelled:
                self._ray.cancel(ref)
                self._cancelled.add(ref)

    def next_finished(self):
        """Waits for the first task to end: its record, or `None` if cancelled."""
        ray = self._ray
        (ref,), _ = ray.wait(list(self._refs), num_returns=1)
        return self._collect(ref)

    def _collect(self, ref):
        ray = self._ray
        task = self._refs.pop(ref)
        self._cancelled.discard(ref)
        try:
            return task, ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            return task, None
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, ray.exceptions.RaySystemError):
                raise RuntimeError(
                    "A Ray worker could not load the search's `model_fn`, data, "
                    f"loss or optimizer ({_last_line(e.cause)}). A function from "
                    "a module is "
                    "sent by name, so that module must be importable in every "
                    "worker (installed, or on the PYTHONPATH that Ray and the "
                    "workers see); a function defined in the script that runs "
                    "the search is sent whole."
                ) from None
            raise  # the run's own code raised what it does not record
        except ray.exceptions.RayError as e:  # the worker died on every try
            dim, seed = task
            return task, RunRecord.error(
                dim,
                seed,
                "none" if dim is None else self._projection,
                0.0,
                f"{type(e).__name__} after {MAX_RETRIES} retries: {e}",
            )

    def close(self, timeout: float = 15.0) -> list[tuple[Task, RunRecord]]:
        """Cancels what still runs; returns the runs that finished meanwhile."""
        ray = self._ray
        if ray is None:  # never started
            return []
        finished = []
        try:
            for ref in list(self._refs):
                if ref not in self._cancelled:
                    ray.cancel(ref)
                    self._cancelled.add(ref)
            if self._refs:
                ready, _ = ray.wait(
                    list(self._refs), num_returns=len(self._refs), timeout=timeout
                )
                for ref in ready:
                    try:
                        task, record = self._collect(ref)
                    except Exception:
                        continue
                    if record is not None:
                        finished.append((task, record))
            for ref in self._refs:
                ray.cancel(ref, force=True)
            self._refs.clear()
        finally:
            if self._started:
                ray.shutdown()
                self._started = False
        return finished
