"""Check whether Keras 3 `fit` works under MultiWorkerMirroredStrategy.

keras-team/keras#20585 reports that `model.fit` under
`tf.distribute.MultiWorkerMirroredStrategy` fails with Keras 3 (an error
that a `PerReplica` value cannot be converted to a Tensor). This script
checks it with the TensorFlow and Keras installed here: it starts two worker
processes on this machine, a cluster of two workers whose TF_CONFIG names
`127.0.0.1:PORT` addresses only (free ports found by binding sockets to
`127.0.0.1:0`), and each worker runs a plain `model.fit` on a `tf.data`
pipeline (as in TensorFlow's multi-worker Keras tutorial) under
MultiWorkerMirroredStrategy: once for a plain Keras model, once for a
`keras_idim.SubspaceModel` of it. No custom training loop.

It prints the versions and, for each model, whether `fit` ran (with the
losses and the first trained weights of both workers, which should agree) or
the exception each worker raised (type, message, and the last frames of its
traceback). A check that passes `--timeout` seconds counts as a hang. The
processes of a check share one process group of their own, which is killed
at the end, whatever happened.

Network: only 127.0.0.1 addresses go into TF_CONFIG and the workers talk to
each other over loopback. TensorFlow's gRPC server, though, listens on the
wildcard address (0.0.0.0 / [::]) whatever address TF_CONFIG gives, and
nothing in its Python API changes that. So, where `unshare` and `ip` allow
it (`--netns auto`, the default), each check runs inside a network namespace
of its own whose only interface is loopback (`unshare --net
--map-root-user`): then nothing listens anywhere but on 127.0.0.1 of that
namespace. `--netns off` runs in this machine's namespace (the server's
port is then reachable from outside while a check runs, a few seconds);
`--netns on` refuses to run without a namespace.

    python examples/multiworker_check.py
    python examples/multiworker_check.py --models subspace --timeout 60
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence

RESULT = "RESULT "  # prefix of the line in which a worker reports


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1, found by binding to 127.0.0.1:0."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# -- one worker ----------------------------------------------------------------


def worker(model_kind: str, steps: int, epochs: int) -> dict:
    """Runs `fit` under MultiWorkerMirroredStrategy (TF_CONFIG from the env)."""
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_idim

    keras.config.disable_traceback_filtering()  # keep every frame
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    result = {"model": model_kind, "worker": task["index"]}
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        result["replicas"] = strategy.num_replicas_in_sync
        rng = np.random.default_rng(0)  # the same data on each worker
        x = rng.standard_normal((64, 6)).astype(np.float32)
        y = rng.standard_normal((64, 3)).astype(np.float32)
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16)
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential(
                [
                    keras.Input((6,)),
                    keras.layers.Dense(5, "tanh"),
                    keras.layers.Dense(3),
                ]
            )
            if model_kind == "subspace":
                model = keras_idim.SubspaceModel(model, 7, projection="dense")
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        history = model.fit(dataset, epochs=epochs, steps_per_epoch=steps, verbose=0)
        if model_kind == "subspace":
            trained = model.theta_d.numpy()
        else:
            trained = np.concatenate([np.ravel(w) for w in model.get_weights()])
        result.update(
            ok=True,
            loss=[float(v) for v in history.history["loss"]],
            trained=[round(float(v), 6) for v in trained[:8]],
        )
    except Exception as e:  # report it, whatever it is
        # The frames of Keras, this package and tf.distribute; the innermost.
        frames = traceback.extract_tb(e.__traceback__)
        frames = [
            f
            for i, f in enumerate(frames)
            if i >= len(frames) - 3
            or ("keras" in f.filename and "traceback_utils" not in f.filename)
            or "python/distribute/" in f.filename
        ]
        message = " ".join(str(e).split())  # one line
        if len(message) > 600:
            message = f"{message[:300]} [...] {message[-300:]}"
        result.update(
            ok=False,
            error_type=f"{type(e).__module__}.{type(e).__qualname__}",
            error=message,
            traceback_tail=[
                f"{f.filename.split('site-packages/')[-1]}:{f.lineno} in {f.name}"
                for f in frames
            ],
        )
    return result


# -- the cluster -------------------------------------------------------------------


def _wait_unreaped(proc: subprocess.Popen, deadline: float) -> bool:
    """Waits until `proc` exits or the deadline; True if it exited.

    Does not reap it: while it is a zombie its pid, which is also the id of
    the process group it leads, cannot be reused, so killing that group
    afterwards cannot reach anyone else's processes.
    """
    while True:
        flags = os.WEXITED | os.WNOWAIT | os.WNOHANG
        if os.waitid(os.P_PID, proc.pid, flags) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _kill(proc: subprocess.Popen, group: bool) -> None:
    """Kills `proc` (and its process group if it leads one), then reaps it."""
    try:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        elif proc.poll() is None:
            proc.kill()
    except ProcessLookupError:
        pass
    proc.wait()


def _read_report(proc: subprocess.Popen, log) -> dict:
    log.seek(0)
    output = log.read()
    log.close()
    reports = [
        json.loads(line[len(RESULT) :])
        for line in output.splitlines()
        if line.startswith(RESULT)
    ]
    if reports:
        return reports[-1]
    return {"ok": False, "returncode": proc.returncode, "output_tail": output[-3000:]}


def run_cluster(
    model_kind: str,
    timeout: float = 120.0,
    steps: int = 4,
    epochs: int = 2,
    own_groups: bool = True,
) -> dict:
    """Runs two workers on 127.0.0.1 for one model; always kills them.

    Args:
        model_kind: str. `"plain"` or `"subspace"`.
        timeout: float. Seconds for both workers together.
        steps: int. Steps per epoch.
        epochs: int.
        own_groups: bool. Start each worker in a process group of its own
            and kill that group at the end; with False the workers stay in
            the caller's group (which the caller's parent kills).

    Returns:
        A dict: `model`, `addresses`, `status` (`"ok"`, `"failed"` or
        `"timeout"`), `seconds`, and `workers`: each worker's report (or its
        return code and the end of its output when it gave none).
    """
    ports = free_ports(2)
    addresses = [f"127.0.0.1:{p}" for p in ports]
    procs, logs = [], []
    start = time.monotonic()
    status = "failed"
    try:
        for index in range(2):
            tf_config = {
                "cluster": {"worker": addresses},
                "task": {"type": "worker", "index": index},
            }
            env = dict(
                os.environ,
                TF_CONFIG=json.dumps(tf_config),
                TF_CPP_MIN_LOG_LEVEL="2",
                CUDA_VISIBLE_DEVICES="-1",
            )
            logs.append(tempfile.TemporaryFile("w+"))
            command = [sys.executable, os.path.abspath(__file__), "--worker"]
            command += ["--models", model_kind, "--steps", str(steps)]
            command += ["--epochs", str(epochs)]
            procs.append(
                subprocess.Popen(
                    command,
                    stdout=logs[-1],
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=own_groups,
                )
            )
        if not all(_wait_unreaped(p, start + timeout) for p in procs):
            status = "timeout"
    finally:
        for proc in procs:
            _kill(proc, group=own_groups)
    workers = [_read_report(proc, log) for proc, log in zip(procs, logs)]
    if status != "timeout" and len(workers) == 2 and all(w["ok"] for w in workers):
        status = "ok"
    return {
        "model": model_kind,
        "addresses": addresses,
        "status": status,
        "seconds": round(time.monotonic() - start, 1),
        "workers": workers,
    }


def netns_prefix() -> list[str] | None:
    """The command prefix that runs a command in a loopback-only network
    namespace, or None where `unshare`/`ip` cannot make one here."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        return None
    prefix = [unshare, "--net", "--map-root-user", "sh", "-c"]
    prefix += [f'{ip} link set lo up && exec "$0" "$@"']
    try:
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", "pass"], capture_output=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return prefix if probe.returncode == 0 else None


def check(
    model_kind: str,
    timeout: float = 120.0,
    steps: int = 4,
    epochs: int = 2,
    netns: str = "auto",
) -> dict:
    """`run_cluster`, inside a network namespace of its own where possible.

    Args:
        model_kind: str. `"plain"` or `"subspace"`.
        timeout: float. Seconds for the two workers.
        steps: int. Steps per epoch.
        epochs: int.
        netns: str. `"auto"`, `"on"` or `"off"` (see the module docstring).

    Returns:
        `run_cluster`'s dict, with `netns` (bool) added.
    """
    prefix = None if netns == "off" else netns_prefix()
    if prefix is None:
        if netns == "on":
            raise RuntimeError("`--netns on`: cannot make a network namespace here")
        return {**run_cluster(model_kind, timeout, steps, epochs), "netns": False}
    # One process in a new network namespace and a process group of its own
    # runs both workers, in its group; the group is killed at the end.
    command = [*prefix, sys.executable, os.path.abspath(__file__), "--cluster"]
    command += ["--models", model_kind, "--timeout", str(timeout)]
    command += ["--steps", str(steps), "--epochs", str(epochs)]
    log = tempfile.TemporaryFile("w+")
    start = time.monotonic()
    proc = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        finished = _wait_unreaped(proc, start + timeout + 30)
    finally:
        _kill(proc, group=True)
    report = _read_report(proc, log)
    if "status" not in report:  # the cluster process itself gave no report
        report = {
            "model": model_kind,
            "addresses": [],
            "status": "failed" if finished else "timeout",
            "seconds": round(time.monotonic() - start, 1),
            "workers": [report],
        }
    return {**report, "netns": True}


def versions() -> dict:
    import keras
    import tensorflow as tf

    import keras_idim

    return {
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_idim": getattr(keras_idim, "__version__", "?"),
    }


def report(result: dict) -> str:
    where = "own network namespace" if result["netns"] else "host network"
    lines = [
        f"## {result['model']}: {result['status']} ({result['seconds']} s, "
        f"workers {', '.join(result['addresses'])}, {where})"
    ]
    for i, w in enumerate(result["workers"]):
        if w.get("ok"):
            lines.append(
                f"- worker {i}: fit ran, {w['replicas']} replicas in sync, "
                f"loss per epoch {w['loss']}, first trained weights {w['trained']}"
            )
        elif "error_type" in w:
            lines.append(f"- worker {i}: {w['error_type']}: {w['error']}")
            lines.append("  its traceback (Keras and tf.distribute frames, innermost):")
            lines += [f"    {line}" for line in w["traceback_tail"]]
        else:
            lines.append(
                f"- worker {i}: no report (return code {w.get('returncode')}); "
                "end of its output:"
            )
            lines += [f"    {line}" for line in w["output_tail"].splitlines()[-20:]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        choices=["plain", "subspace"],
        default=["plain", "subspace"],
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per model, both workers"
    )
    parser.add_argument("--steps", type=int, default=4, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--netns",
        choices=["auto", "on", "off"],
        default="auto",
        help="run each check in a loopback-only network namespace",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cluster", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.cluster:  # the process that `check` starts in a namespace
        result = run_cluster(
            args.models[0], args.timeout, args.steps, args.epochs, own_groups=False
        )
        print(RESULT + json.dumps(result), flush=True)
        return [result]

    if args.worker:  # one of the two processes that `check` starts
        result = worker(args.models[0], args.steps, args.epochs)
        print(RESULT + json.dumps(result), flush=True)
        sys.stderr.flush()
        # Leave at once: a worker whose peer failed can hang in TF's shutdown.
        os._exit(0)

    print(json.dumps(versions()))
    results = []
    for model_kind in args.models:
        result = check(model_kind, args.timeout, args.steps, args.epochs, args.netns)
        results.append(result)
        print(report(result), flush=True)
    return results


if __name__ == "__main__":
    main()
