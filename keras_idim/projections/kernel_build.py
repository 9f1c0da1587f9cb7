"""How Fastfood's compiled kernel is built: the compilers, the ladder of
CPU flags, the cache key, the build and the checksum of its library.

`kernel` decides when the kernel is wanted, goes down the compilers and
the ladder (`kernel._build_and_load`) with the pieces here, and loads the
library that builds.

The build goes down a ladder of flags (`ladder`) until one builds:
`-march=native` less the CPU features that TensorFlow's Eigen headers
cannot be compiled with (`EIGEN_TRIPS`: AVX512-FP16 with g++ 12), then
plain `-march=native`, then `-mavx2 -mfma` (x86-64 CPUs that have both),
then no CPU flags at all. `KERAS_IDIM_CXXFLAGS` adds flags of the user's
to every rung. Each rung's library is cached under a key of the source,
TensorFlow's version, the compiler (path and version line), the flags and
the CPU's feature flags (`cache_key`), beside a SHA-256 checksum that is
checked before the library is loaded (`verified`: a truncated or altered
file is built again). A rung that fails leaves a marker with its reason
under its key, so no later process tries it again; another compiler,
other flags or another source make another key, and are tried.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shlex
import shutil
import subprocess
import tempfile

import tensorflow as tf

#: The environment variable of flags added to every build.
FLAGS_ENV = "KERAS_IDIM_CXXFLAGS"

#: Seconds one build may take before it counts as failed (and is marked).
BUILD_TIMEOUT = 600

#: CPU features (as /proc/cpuinfo names them) that `-march=native` turns on
#: and TensorFlow's Eigen headers fail to compile with, and the flag that
#: turns each off: g++ 12 stops in Eigen's PacketMathFP16.h on AVX512-FP16.
EIGEN_TRIPS = {"avx512_fp16": "-mno-avx512fp16"}

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastfood_kernel.cc")


def cpu_features() -> set[str]:
    """The CPU's feature flags as /proc/cpuinfo names them (empty where
    there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((x for x in f if x.split(":")[0].strip() in _FLAG_KEYS), "")
    except OSError:
        return set()
    return set(line.partition(":")[2].split())


_FLAG_KEYS = ("flags", "Features")  # x86-64, aarch64


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")


def ladder(features: set[str] | None = None, x86: bool | None = None) -> list:
    """The CPU flags to build with, best first: each rung a list of flags.
    `features` and `x86` default to this machine's."""
    features = cpu_features() if features is None else features
    x86 = is_x86() if x86 is None else x86
    rungs = []
    off = [flag for name, flag in EIGEN_TRIPS.items() if x86 and name in features]
    if off:
        rungs.append(["-march=native", *off])
    rungs.append(["-march=native"])
    if x86 and {"avx2", "fma"} <= features:
        rungs.append(["-mavx2", "-mfma"])
    rungs.append([])
    return rungs


def user_flags() -> list[str]:
    """`KERAS_IDIM_CXXFLAGS`, split as a shell would."""
    text = os.environ.get(FLAGS_ENV, "")
    try:
        return shlex.split(text)
    except ValueError as e:
        raise ValueError(
            f"The environment variable {FLAGS_ENV} could not be split into "
            f"flags ({e}). Received: {FLAGS_ENV}={text!r}"
        ) from None


def compilers() -> list[str]:
    """The compilers to try, as paths: `CXX` alone when it is set (even
    when it is not found: then none), else `g++`, `clang++`, `c++`."""
    if os.environ.get("CXX"):
        found = shutil.which(os.environ["CXX"])
        return [found] if found else []
    paths = []
    for name in ("g++", "clang++", "c++"):
        found = shutil.which(name)
        if found and os.path.realpath(found) not in map(os.path.realpath, paths):
            paths.append(found)
    return paths


def version_line(compiler: str) -> str:
    try:
        proc = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=30
        )
        return (proc.stdout.strip().splitlines() or [""])[0]
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(path: str) -> bool:
    """Whether the library at `path` matches the checksum written beside it
    when it was built (a missing checksum counts as a mismatch)."""
    try:
        with open(path + ".sha256", encoding="ascii") as f:
            expected = f.read().strip()
        return bool(expected) and _sha256(path) == expected
    except OSError:
        return False


def write_atomically(path: str, text: str) -> None:
    handle, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    line = (errors or lines or ["(no output)"])[0 if errors else -1].strip()
    return re.sub(r"^\S*/", "", line)  # the file without its folders


def build(compiler: str, flags: list[str], path: str) -> str | None:
    """Builds the library at `path` (beside it first, then moved into place,
    its checksum written); the reason when it fails."""
    handle, tmp = tempfile.mkstemp(suffix=".so.tmp", dir=os.path.dirname(path))
    os.close(handle)
    try:
        proc = subprocess.run(
            [compiler, SOURCE, "-o", tmp, *flags],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
        if proc.returncode:
            return (
                f"{os.path.basename(compiler)} exited {proc.returncode}: "
                f"{last_line(proc.stderr + proc.stdout)}"
            )
        write_atomically(path + ".sha256", _sha256(tmp) + "\n")
        os.replace(tmp, path)
        return None
    except subprocess.TimeoutExpired:
        return f"{os.path.basename(compiler)} ran past {BUILD_TIMEOUT} s"
    except OSError as e:
        return f"{os.path.basename(compiler)} could not run: {e}"
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cache_key(compiler: str, version: str, flags: list[str], source: bytes) -> str:
    parts = (
        source,
        tf.__version__,
        os.path.realpath(compiler),
        version,
        " ".join(flags),
        " ".join(sorted(cpu_features())) or platform.processor(),
    )
    joined = b"\0".join(p if isinstance(p, bytes) else p.encode() for p in parts)
    return hashlib.sha256(joined).hexdigest()[:16]
