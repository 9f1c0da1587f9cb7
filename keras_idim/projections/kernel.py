"""Fastfood's optional compiled CPU kernel: built at first use, never by pip.

`fastfood_kernel.cc` computes a Fastfood product one block at a time in
cache: at D = 11M, d = 10,000 (version 3's P), 38 and 32 ms for `P v` and
`P^T g` on 2 CPU cores, against 105 and 169 ms in XLA-compiled TensorFlow
ops (see bench/RESULTS.md). `pip install` compiles nothing: the first
projection that wants the kernel builds it with the machine's C++ compiler
against the installed TensorFlow, into a cache folder, and loads it with
`tf.load_op_library`. Without a compiler, or when the build fails, the
projection computes the same products with TensorFlow ops (the same P; the
sums are rounded in another order, about 1e-7 relative).

The environment variable `KERAS_IDIM_FASTFOOD_KERNEL` chooses:

- `auto` (the default): the kernel for P of at least `MIN_FULL_DIM` rows,
  on a machine with no GPU, when it builds; TensorFlow ops otherwise (so
  that smaller models train as before, rounding included);
- `1`: the kernel at any size, and an error if it cannot be built;
- `0`: never.

`KERAS_IDIM_CACHE_DIR` is the folder of the built library (defaults to
`~/.cache/keras_idim`); `CXX` the compiler (defaults to `g++`, then `c++`).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings

import tensorflow as tf

#: The environment variable that chooses when the kernel is used.
ENV = "KERAS_IDIM_FASTFOOD_KERNEL"

#: Under `auto`, the smallest P (rows) whose products use the kernel.
MIN_FULL_DIM = 2**22

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastfood_kernel.cc")

_MODES = {"auto": "auto", "1": "on", "on": "on", "0": "off", "off": "off"}
_lock = threading.Lock()
_loaded: dict = {}  # "ops" (the module or None) and "reason"


def mode() -> str:
    """`"auto"`, `"on"` or `"off"`, as `KERAS_IDIM_FASTFOOD_KERNEL` says."""
    value = os.environ.get(ENV, "auto")
    if value.strip().lower() not in _MODES:
        raise ValueError(
            f"The environment variable {ENV} should be one of 'auto', '1' "
            f"(or 'on') and '0' (or 'off'). Received: {ENV}={value!r}"
        )
    return _MODES[value.strip().lower()]


def wanted(full_dim: int) -> bool:
    """Whether a Fastfood P of `full_dim` rows should use the kernel (it may
    still be unavailable: `load`)."""
    chosen = mode()
    if chosen == "off":
        return False
    if chosen == "on":
        return True
    return full_dim >= MIN_FULL_DIM and not tf.config.list_logical_devices("GPU")


def load():
    """The kernel's op module, built and loaded once per process; `None`
    when it is unavailable (`unavailable_reason` says why)."""
    with _lock:
        if "ops" not in _loaded:
            ops, reason = _build_and_load()
            _loaded.update(ops=ops, reason=reason)
        return _loaded["ops"]


def unavailable_reason() -> str | None:
    """Why `load` gave `None` (no compiler, a failed build); `None` before
    `load` or when the kernel loaded."""
    return _loaded.get("reason")


def reset() -> None:
    """Forgets the loaded kernel, so that the next `load` looks again (the
    op library itself stays loaded in the process)."""
    with _lock:
        _loaded.clear()


def warn_once(full_dim: int) -> None:
    """Warns, once per process, that a P that wanted the kernel falls back
    to TensorFlow ops, and why."""
    with _lock:
        if _loaded.get("warned"):
            return
        _loaded["warned"] = True
    warnings.warn(
        f"Fastfood's compiled kernel is unavailable ({unavailable_reason()}); "
        f"a P of {full_dim:,} rows uses TensorFlow ops instead (the same P, "
        f"products about 3 times slower at this size). Set {ENV}=0 to "
        "silence this.",
        stacklevel=3,
    )


def cache_dir() -> str:
    return os.environ.get("KERAS_IDIM_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "keras_idim"
    )


def _cpu_flags() -> str:
    """The CPU's feature flags: the library is built for this CPU
    (`-march=native`), so that a cache folder shared by other machines does
    not hand them a library that their CPU cannot run."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


def _build_and_load():
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler or not shutil.which(compiler):
        return None, f"no C++ compiler found (CXX={compiler!r}, g++, c++)"
    flags = [
        "-shared",
        "-fPIC",
        "-O3",
        "-march=native",
        "-w",
        *tf.sysconfig.get_compile_flags(),
        *tf.sysconfig.get_link_flags(),
    ]
    with open(SOURCE, "rb") as f:
        source = f.read()
    key = hashlib.sha256(
        b"\0".join(
            s.encode() if isinstance(s, str) else s
            for s in (source, tf.__version__, compiler, " ".join(flags), _cpu_flags())
        )
    ).hexdigest()[:16]
    folder = cache_dir()
    path = os.path.join(folder, f"fastfood_kernel-{key}.so")
    if not os.path.exists(path):
        try:
            os.makedirs(folder, exist_ok=True)
            # Built beside its final name and moved into place: a process
            # never loads half a library, and concurrent builds both land.
            handle, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
            os.close(handle)
        except OSError as e:
            return None, f"cannot write the cache folder {folder!r}: {e}"
        try:
            proc = subprocess.run(
                [compiler, SOURCE, "-o", tmp, *flags],
                capture_output=True,
                text=True,
                timeout=900,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            os.remove(tmp)
            return None, f"building it with {compiler!r} failed: {e}"
        if proc.returncode:
            os.remove(tmp)
            tail = proc.stderr.strip().splitlines()[-5:]
            return None, f"building it with {compiler!r} failed: {' | '.join(tail)}"
        os.replace(tmp, path)
    try:
        return tf.load_op_library(path), None
    except Exception as e:  # a stale or foreign library: say so, fall back
        return None, f"loading {path!r} failed: {e}"
