"""Fastfood's optional compiled CPU kernel: built at first use, never by pip.

`fastfood_kernel.cc` computes a Fastfood product one block at a time in
cache, its blocks spread over TensorFlow's intra-op threads (bench/RESULTS.md
has its speed against the TensorFlow ops). `pip install` compiles nothing:
the first projection that wants the kernel builds it with the machine's C++
compiler against the installed TensorFlow, into a cache folder, and loads
it with `tf.load_op_library` (processes that start together build it once:
a lock file beside it). Without a compiler, or when every build
fails, the projection computes the same products with TensorFlow ops (the
same P; the sums are rounded in another order, about 1e-7 relative).

`kernel_build` holds how a library is built (the compilers, the ladder of
CPU flags, the cache key and the checksum); this module decides when the
kernel is wanted, goes down the compilers and the ladder until a library
loads, keeps it for the process, and says where it stands: `status()`
(and `keras-idim doctor`) names the rung in use, or why none is.

The environment variable `KERAS_IDIM_FASTFOOD_KERNEL` chooses:

- `auto` (the default): the kernel on a machine with no GPU, when it
  builds, at every size (bench/RESULTS.md compares its training steps with
  the TensorFlow ops'); TensorFlow ops otherwise (a P from `WARN_FROM`
  rows warns once that it falls back);
- `1`: the kernel at any size, and an error if it cannot be built;
- `0`: never.

`KERAS_IDIM_CACHE_DIR` is the folder of the built library (defaults to
`~/.cache/keras_idim`); `CXX` the compiler (defaults to the first of `g++`,
`clang++` and `c++` that builds).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings

import tensorflow as tf

from keras_idim.projections.kernel_build import (
    BUILD_TIMEOUT,
    FLAGS_ENV,
    SOURCE,
    build,
    cache_key,
    compilers,
    ladder,
    last_line,
    user_flags,
    verified,
    version_line,
    write_atomically,
)

#: The environment variable that chooses when the kernel is used.
ENV = "KERAS_IDIM_FASTFOOD_KERNEL"

#: Under `auto`, the smallest P (rows) that warns when it cannot use the
#: kernel (smaller ones fall back silently: `keras-idim doctor` says why).
WARN_FROM = 2**22

#: The ops that the library registers, as its Python module names them.
OP_NAMES = ("keras_idim_fastfood_forward", "keras_idim_fastfood_transpose")

_MODES = {"auto": "auto", "1": "on", "on": "on", "0": "off", "off": "off"}
_lock = threading.Lock()
_loaded: dict = {}  # "ops" (the module or None), "reason", "status"
# The op library loaded in this process, with its path: at most one (see
# `_try`); it outlives `reset`, as TensorFlow keeps it loaded.
_modules: list = []


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
    return not tf.config.list_logical_devices("GPU")


def load():
    """The kernel's op module, built and loaded once per process; `None`
    when it is unavailable (`unavailable_reason` says why)."""
    with _lock:
        if "ops" not in _loaded:
            ops, status = _build_and_load()
            _loaded.update(ops=ops, reason=status["reason"], status=status)
        return _loaded["ops"]


def unavailable_reason() -> str | None:
    """Why `load` gave `None` (no compiler, every build failed); `None`
    before `load` or when the kernel loaded."""
    return _loaded.get("reason")


def status() -> dict:
    """Where the kernel stands in this process, loading it if need be:
    `loaded` (bool), `reason` (why not, or None), `compiler`, `flags` and
    `path` of the library in use (None when none), `cache_dir`, and
    `attempts`: one dict per rung tried (`compiler`, `flags`, `path`,
    `outcome`: "built", "cached", "failed", "failed before" (a marker from
    an earlier process) or "skipped", and `reason`)."""
    load()
    return dict(_loaded["status"])


def reset() -> None:
    """Forgets the loaded kernel, so that the next `load` looks again (the
    op library itself stays loaded in the process)."""
    with _lock:
        _loaded.clear()


def warn_once(full_dim: int) -> None:
    """Warns, once per process, that a P of `WARN_FROM` rows or more that
    wanted the kernel falls back to TensorFlow ops, and why."""
    if full_dim < WARN_FROM and mode() == "auto":
        return
    with _lock:
        if _loaded.get("warned"):
            return
        _loaded["warned"] = True
    warnings.warn(
        f"Fastfood's compiled kernel is unavailable ({unavailable_reason()}); "
        f"a P of {full_dim:,} rows uses TensorFlow ops instead (the same P, "
        f"slower products; `keras-idim doctor` says more). Set {ENV}=0 to "
        "silence this.",
        stacklevel=3,
    )


def cache_dir() -> str:
    return os.environ.get("KERAS_IDIM_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "keras_idim"
    )


def _try(compiler: str, version: str, cpu: list[str], source: bytes) -> dict:
    """One rung: the cached library, or a build, or its remembered failure.
    The attempt's record, with the module under "ops" when it loaded."""
    flags = [
        "-shared",
        "-fPIC",
        "-O3",
        *cpu,
        "-w",
        *user_flags(),
        *tf.sysconfig.get_compile_flags(),
        *tf.sysconfig.get_link_flags(),
    ]
    folder = cache_dir()
    stem = os.path.join(
        folder, f"fastfood_kernel-{cache_key(compiler, version, flags, source)}"
    )
    path, marker = stem + ".so", stem + ".failed"
    record = {"compiler": compiler, "flags": cpu + user_flags(), "path": path}
    with _build_lock(stem + ".lock"):
        outcome, reason = _cached_or_built(compiler, flags, path, marker)
    if reason is not None:
        return {**record, "outcome": outcome, "reason": reason}
    if _modules:
        # One library per process: a second one (another cache folder, as
        # in tests) would register its kernels again, and TensorFlow then
        # refuses every call of the ops ("Multiple OpKernel registrations").
        # The first one's ops serve; they come from the same source.
        ops, first = _modules[0]
        return {**record, "outcome": outcome, "reason": None, "ops": ops, "path": first}
    try:
        ops = tf.load_op_library(path)
    except Exception as e:  # noqa: BLE001 - any load failure falls back
        reason = f"loading {path!r} failed: {last_line(str(e))}"
        write_atomically(marker, reason + "\n")
        return {**record, "outcome": "failed", "reason": reason}
    if not hasattr(ops, OP_NAMES[0]):
        reason = f"{path!r} loaded without the ops {OP_NAMES}"
        return {**record, "outcome": "failed", "reason": reason}
    _modules.append((ops, path))
    return {**record, "outcome": outcome, "reason": None, "ops": ops}


@contextlib.contextmanager
def _build_lock(path: str):
    """The lock of one library's build: processes that start together on
    an empty cache (Ray's workers, a test run's) build it once, the others
    waiting to load it. No lock where the folder is read-only (a library
    cached there still loads) or past a build's time."""
    from filelock import FileLock

    lock = FileLock(path, timeout=BUILD_TIMEOUT + 60)
    try:
        lock.acquire()
    except OSError:  # filelock's Timeout is one too
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _cached_or_built(compiler: str, flags: list[str], path: str, marker: str) -> tuple:
    """`(outcome, reason)`: the library at `path` as it is cached (checked
    against its checksum), or built now; a failure remembered at `marker`,
    or the build's, with its reason (`None` when the library is there)."""
    if os.path.exists(marker):
        with open(marker, encoding="utf-8", errors="replace") as f:
            return "failed before", f.read().strip()
    if os.path.exists(path) and verified(path):
        return "cached", None
    if os.path.exists(path):  # truncated or altered: built again
        os.remove(path)
    reason = build(compiler, flags, path)
    if reason is not None:
        write_atomically(marker, reason + "\n")
        return "failed", reason
    return "built", None


def _build_and_load():
    """Goes down the compilers and the ladder until a library loads."""
    folder = cache_dir()
    status = {
        "loaded": False,
        "reason": None,
        "compiler": None,
        "flags": None,
        "path": None,
        "cache_dir": folder,
        "attempts": [],
    }
    found = compilers()
    if not found:
        status["reason"] = (
            f"no C++ compiler found (CXX={os.environ.get('CXX')!r}, g++, clang++, c++)"
        )
        return None, status
    try:
        os.makedirs(folder, exist_ok=True)
        with open(SOURCE, "rb") as f:
            source = f.read()
        user_flags()
    except OSError as e:
        status["reason"] = f"cannot write the cache folder {folder!r}: {e}"
        return None, status
    except ValueError as e:
        status["reason"] = str(e)
        return None, status
    for compiler in found:
        version = version_line(compiler)
        for cpu in ladder():
            try:
                attempt = _try(compiler, version, cpu, source)
            except OSError as e:
                attempt = {
                    "compiler": compiler,
                    "flags": cpu,
                    "path": None,
                    "outcome": "failed",
                    "reason": f"cannot write the cache folder {folder!r}: {e}",
                }
            ops = attempt.pop("ops", None)
            status["attempts"].append(attempt)
            if ops is not None:
                status.update(
                    loaded=True,
                    compiler=compiler,
                    flags=attempt["flags"],
                    path=attempt["path"],
                )
                return ops, status
    last = status["attempts"][-1]
    flags = " ".join(last["flags"]) or "with no CPU flags"
    status["reason"] = (
        f"every build failed ({len(status['attempts'])} tried; the last, "
        f"{os.path.basename(last['compiler'])} {flags}: {last['reason']})"
    )
    return None, status


def describe() -> str:
    """Where Fastfood's kernel stands, in lines for a person: whether it is
    used and from what size, the library, compiler and flags, or why not,
    and each rung tried."""
    chosen = os.environ.get(ENV, "auto")
    try:
        chosen_mode = mode()
    except ValueError as e:
        return f"Fastfood kernel: {e}"
    st = status()
    gpus = tf.config.list_logical_devices("GPU")
    if chosen_mode == "off":
        use = f"never used ({ENV}={chosen})"
    elif chosen_mode == "on":
        use = f"used at every size ({ENV}={chosen})"
    elif gpus:
        use = f"not used: a GPU is present ({ENV}=auto keeps TensorFlow ops there)"
    else:
        use = f"used at every size ({ENV}=auto, no GPU)"
    if st["loaded"]:
        lines = [f"Fastfood kernel: available; {use}"]
        lines.append(f"  library:  {st['path']}")
        version = version_line(st["compiler"])
        lines.append(f"  compiler: {st['compiler']} ({version})")
        lines.append(f"  flags:    {' '.join(st['flags']) or '(no CPU flags)'}")
    else:
        lines = [f"Fastfood kernel: unavailable (else {use})"]
        lines.append(f"  why not:  {st['reason']}")
        lines.append("  instead:  TensorFlow ops (the same P, slower products)")
    lines.append(f"  cache:    {st['cache_dir']} ({FLAGS_ENV} adds flags)")
    for a in st["attempts"]:
        flags = " ".join(a["flags"]) or "(no CPU flags)"
        tail = f": {a['reason']}" if a["reason"] else ""
        lines.append(
            f"  tried {os.path.basename(a['compiler'])} {flags}: {a['outcome']}{tail}"
        )
    return "\n".join(lines)
