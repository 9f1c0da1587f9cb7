"""Fastfood's compiled kernel against its TensorFlow ops: both ways tested.

The kernel is built once for this module, into a folder of its own; every
test that needs it is skipped, with the reason the build gave, where it
cannot be built (no compiler, or every rung of the flag ladder failed);
the fallback tests and the ladder's own tests below still run there.
"""

import json
import os
import stat
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import materialize
from piece_products import affine, piece_dots, transpose_pieces

from keras_idim import SubspaceModel
from keras_idim.projections import FastfoodProjection, fastfood, kernel
from keras_idim.projections.pieces import SparseRows


@pytest.fixture(scope="module", autouse=True)
def kernel_cache(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("kernel_cache")
    patch.setenv("KERAS_IDIM_CACHE_DIR", str(folder))
    patch.delenv("CXX", raising=False)
    patch.delenv(kernel.FLAGS_ENV, raising=False)
    kernel.reset()
    yield folder
    patch.undo()
    kernel.reset()


@pytest.fixture
def built(kernel_cache):
    """Skips the test, with the build's reason, where the kernel cannot be
    built on this machine."""
    if kernel.load() is None:
        pytest.skip(f"the kernel cannot be built here: {kernel.unavailable_reason()}")


needs_kernel = pytest.mark.usefixtures("built")


def pair(monkeypatch, *args, **kwargs):
    """The same P twice: its products in TensorFlow ops, then in the kernel."""
    monkeypatch.setenv(kernel.ENV, "0")
    ops = FastfoodProjection(*args, **kwargs)
    monkeypatch.setenv(kernel.ENV, "1")
    compiled = FastfoodProjection(*args, **kwargs)
    assert not ops.uses_kernel and compiled.uses_kernel
    for a, b in zip(ops._kernel_args(), compiled._kernel_args()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert a.dtype == b.dtype
    return ops, compiled


def close(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    # Sums rounded in another order: about 1e-7 of the vector's size.
    assert np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(b).max()), np.abs(a - b).max()


@needs_kernel
@pytest.mark.parametrize(
    "full_dim, dim, blocks, pass_chunk, version",
    [
        (700, 20, "auto", None, 2),  # stacked blocks of 32, one group
        (5000, 20, "stacked", 2**8, 2),  # 20 groups of 8 blocks, padded
        (5000, 20, "stacked", 2**8, 3),  # float16 G and S
        (3000, 300, "single", None, 2),  # one block of 4096
        (3000, 300, "single", None, 3),
        (300_000, 33_000, "stacked", None, 2),  # blocks of 2^16: int32 indices
        (5, 1, "auto", None, 2),  # a block of one number
    ],
)
def test_kernel_products_are_the_tensorflow_ops_products(
    full_dim, dim, blocks, pass_chunk, version, monkeypatch
):
    if pass_chunk:
        monkeypatch.setattr(fastfood, "PASS_CHUNK", pass_chunk)
    ops, compiled = pair(
        monkeypatch, full_dim, dim, seed=4, blocks=blocks, version=version
    )
    if pass_chunk:
        assert compiled.num_groups == 20 and compiled._padding > 0
    if full_dim == 300_000:
        assert compiled.permutation.dtype == tf.int32
    rng = np.random.default_rng(0)
    v = rng.standard_normal(dim).astype(np.float32)
    g = rng.standard_normal(full_dim).astype(np.float32)
    base = rng.standard_normal(full_dim).astype(np.float32)
    close(compiled(v), ops(v))
    close(compiled.transpose(g), ops.transpose(g))
    close(affine(compiled, v, base), affine(ops, v, base))
    pieces = np.split(g, [full_dim // 3, full_dim // 2])
    close(transpose_pieces(compiled, pieces), ops.transpose(g))
    # Inside a tf.function too (as in a train step).
    close(tf.function(compiled.transpose)(g), ops.transpose(g))
    # SAID's products over pieces with a scale each (one piece may be empty).
    sizes = [full_dim // 3, full_dim // 2 - full_dim // 3, full_dim - full_dim // 2]
    scales = np.array([0.5, -2.0, 3.0], np.float32)
    pieces = np.split(g, np.cumsum(sizes)[:-1])
    scaled = np.concatenate([s * p for s, p in zip(scales, pieces)])
    close(transpose_pieces(compiled, pieces, scales), ops.transpose(scaled))
    u = ops(v).numpy().astype(np.float64)
    close(
        affine(compiled, v, base, sizes, scales),
        base + np.repeat(scales, sizes) * u,
    )
    close(  # no base: s * (P v) alone
        affine(compiled, v, None, sizes, scales), np.repeat(scales, sizes) * u
    )
    u_pieces = np.split(u, np.cumsum(sizes)[:-1])
    dots = [p @ q for p, q in zip(pieces, u_pieces)]
    close(piece_dots(compiled, v, pieces), dots)
    close(piece_dots(ops, v, pieces), dots)
    # Both of SAID's gradients from one pass of the kernel's transpose.
    sub, both = compiled.pieces.transpose(pieces, scales, v)
    close(sub, ops.transpose(scaled))
    close(both, dots)
    # An empty piece: its dot is zero, and the rest as before.
    split = [np.zeros(0, np.float32), *np.split(g, [full_dim // 2])]
    sub, both = compiled.pieces.transpose(split, np.ones(3, np.float32), v)
    close(sub, ops.transpose(g))
    close(
        both,
        [
            0.0,
            g[: full_dim // 2] @ u[: full_dim // 2],
            g[full_dim // 2 :] @ u[full_dim // 2 :],
        ],
    )


@needs_kernel
def test_kernel_transpose_is_the_transpose_of_its_forward(monkeypatch):
    ops, compiled = pair(monkeypatch, 300, 7, seed=2)
    mat = materialize(compiled)
    np.testing.assert_allclose(mat, materialize(ops), atol=1e-6)
    g = np.random.default_rng(1).standard_normal(300).astype(np.float32)
    np.testing.assert_allclose(
        compiled.transpose(g).numpy(), mat.T.astype(np.float64) @ g, atol=1e-5
    )


@needs_kernel
def test_autodiff_through_the_kernel_gives_p_transpose(monkeypatch):
    _, compiled = pair(monkeypatch, 3000, 40, seed=5, blocks="stacked")
    mat = materialize(compiled).astype(np.float64)
    g = np.random.default_rng(2).standard_normal(3000).astype(np.float32)
    v = tf.Variable(np.random.default_rng(3).standard_normal(40).astype(np.float32))
    for fn in (compiled.__call__, tf.function(compiled.__call__)):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(fn(v) * g)
        grad = tf.convert_to_tensor(tape.gradient(loss, v)).numpy()
        np.testing.assert_allclose(grad, mat.T @ g, rtol=1e-4, atol=1e-5)


@needs_kernel
def test_kernel_theta_d_zero_gives_exactly_the_base(monkeypatch):
    _, compiled = pair(monkeypatch, 5000, 20, seed=0)
    base = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    np.testing.assert_array_equal(
        affine(compiled, np.zeros(20, np.float32), base).numpy(), base
    )


def fc():
    return keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(9, "tanh"), keras.layers.Dense(2)]
    )


@needs_kernel
@pytest.mark.parametrize("structure_aware", [False, True])
def test_subspace_model_trains_through_the_kernel(structure_aware, monkeypatch):
    x = np.random.default_rng(0).standard_normal((64, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    trained = []
    for setting in ("0", "1"):
        monkeypatch.setenv(kernel.ENV, setting)
        keras.utils.set_random_seed(0)
        model = SubspaceModel(fc(), dim=12, seed=1, structure_aware=structure_aware)
        assert model.projection.uses_kernel == (setting == "1")
        # XLA cannot compile the kernel's op: Keras is told so.
        assert model.supports_jit == (setting == "0")
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        trained.append(model.trainable_variables[-1].numpy())
        # The base weights hold theta_0 + lambda * P theta_d after the steps.
        variables = model.base_variables
        flat = np.concatenate([v.numpy().ravel() for v in variables])
        scales = (
            np.repeat(model.lambdas.numpy(), [np.size(v) for v in variables])
            if structure_aware
            else 1.0
        )
        offset = materialize(model.projection) @ model.theta_d.numpy()
        expected = model.theta_0.numpy() + scales * offset
        np.testing.assert_allclose(flat, expected, atol=1e-5)
    # The lambdas with SAID (they moved), theta_d without: the same in both.
    if structure_aware:
        assert np.abs(trained[1] - 1.0).max() > 1e-4
    np.testing.assert_allclose(trained[1], trained[0], atol=1e-5)


@needs_kernel
def test_kernel_gradient_is_p_transpose_times_the_full_gradient(monkeypatch):
    monkeypatch.setenv(kernel.ENV, "1")
    model = SubspaceModel(fc(), dim=10, seed=3, structure_aware=True)
    assert model.projection.uses_kernel
    model.lambdas.assign([0.5, 2.0, -1.0, 3.0])
    model.theta_d.assign(np.linspace(-1, 1, 6))
    model.sync_base_weights()
    variables = model.base_variables
    grads = [tf.random.normal(v.shape, seed=i) for i, v in enumerate(variables)]
    sub, lambdas = model.subspace_gradients(grads)
    flat = np.concatenate([g.numpy().ravel() for g in grads])
    sizes = [int(np.prod(v.shape)) for v in variables]
    tensor = np.repeat(np.arange(4), sizes)
    p = materialize(model.projection).astype(np.float64)
    np.testing.assert_allclose(
        sub.numpy(), p.T @ (model.lambdas.numpy()[tensor] * flat), atol=1e-5
    )
    offset = p @ model.theta_d.numpy()
    expected = [flat[tensor == t] @ offset[tensor == t] for t in range(4)]
    np.testing.assert_allclose(lambdas.numpy(), expected, rtol=1e-4, atol=1e-5)


@needs_kernel
def test_the_kernel_takes_a_gradients_rows_whole(monkeypatch):
    # An embedding's gradient as rows (`SparseRows`): the kernel reads every
    # piece whole, so it is made whole first.
    monkeypatch.setenv(kernel.ENV, "1")
    p = FastfoodProjection(300, 10, seed=2)
    assert p.uses_kernel and not p.pieces.sparse_rows
    values = np.arange(24.0, dtype=np.float32).reshape(3, 8) / 10
    table = np.zeros((25, 8), np.float32)
    np.add.at(table, [4, 0, 4], values)
    head = np.linspace(-1, 1, 100).astype(np.float32)
    rows = SparseRows(tf.constant(values), tf.constant([4, 0, 4]), 200)
    got = p.pieces.transpose([head, rows])[0]
    g = np.concatenate([head, table.ravel()]).astype(np.float64)
    close(got, materialize(p).astype(np.float64).T @ g)


@needs_kernel
def test_the_kernel_is_built_once_into_the_cache(kernel_cache, monkeypatch):
    monkeypatch.setenv(kernel.ENV, "1")
    FastfoodProjection(100, 5)
    built = sorted(kernel_cache.glob("*.so"))
    assert len(built) == 1 and built[0].name.startswith("fastfood_kernel-")
    stamp = built[0].stat().st_mtime_ns
    kernel.reset()
    assert FastfoodProjection(100, 5).uses_kernel
    assert [p.stat().st_mtime_ns for p in kernel_cache.glob("*.so")] == [stamp]
    assert not list(kernel_cache.glob("*.tmp*"))


@needs_kernel
def test_auto_uses_the_kernel_at_every_size_without_a_gpu(monkeypatch):
    monkeypatch.delenv(kernel.ENV, raising=False)
    assert kernel.mode() == "auto"
    assert kernel.wanted(5) and FastfoodProjection(5000, 20).uses_kernel
    # With a GPU, auto keeps the TensorFlow ops (the kernel is CPU only).
    gpu = tf.config.LogicalDevice("/device:GPU:0", "GPU")
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [gpu])
    assert not kernel.wanted(10**9)
    assert not FastfoodProjection(5000, 20).uses_kernel
    monkeypatch.undo()
    monkeypatch.setenv(kernel.ENV, "0")
    assert not kernel.wanted(10**9)
    assert not FastfoodProjection(5000, 20).uses_kernel


@pytest.mark.parametrize("value", ["maybe", "2", ""])
def test_a_bad_kernel_setting_names_the_variable(value, monkeypatch):
    monkeypatch.setenv(kernel.ENV, value)
    with pytest.raises(ValueError, match=f"{kernel.ENV}.*Received: {kernel.ENV}="):
        FastfoodProjection(100, 5)


def test_without_a_compiler_auto_falls_back_and_on_refuses(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    kernel.reset()
    try:
        monkeypatch.setenv(kernel.ENV, "1")
        with pytest.raises(RuntimeError, match="unavailable: no C\\+\\+ compiler"):
            FastfoodProjection(100, 5)
        # auto, below WARN_FROM: TensorFlow ops, silently.
        monkeypatch.setenv(kernel.ENV, "auto")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert not FastfoodProjection(100, 5, seed=1).uses_kernel
        # From WARN_FROM: TensorFlow ops, one warning.
        monkeypatch.setattr(kernel, "WARN_FROM", 50)
        with pytest.warns(UserWarning, match="compiled kernel is unavailable"):
            p = FastfoodProjection(100, 5, seed=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            FastfoodProjection(100, 5, seed=1)  # no second warning
        assert not p.uses_kernel and p.supports_xla
        monkeypatch.setenv(kernel.ENV, "0")
        ops = FastfoodProjection(100, 5, seed=1)
        np.testing.assert_array_equal(p(np.ones(5)).numpy(), ops(np.ones(5)).numpy())
    finally:
        kernel.reset()


def test_the_ladder_turns_off_what_trips_eigen_then_steps_down():
    native, avx2, bare = ["-march=native"], ["-mavx2", "-mfma"], []
    fp16 = {"avx2", "fma", "avx512f", "avx512_fp16"}
    assert kernel.ladder(fp16, x86=True) == [
        ["-march=native", "-mno-avx512fp16"],
        native,
        avx2,
        bare,
    ]
    assert kernel.ladder({"avx2", "fma", "avx512f"}, x86=True) == [native, avx2, bare]
    # A CPU without FMA never gets -mfma (the library would die on SIGILL).
    assert kernel.ladder({"avx2", "sse4_2"}, x86=True) == [native, bare]
    # aarch64: its own -march=native, then no CPU flags; no x86 flag at all.
    assert kernel.ladder({"fp", "asimd", "avx2", "fma"}, x86=False) == [native, bare]


def test_user_flags_are_split_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv(kernel.FLAGS_ENV, "-DA=1  -I'/a b'")
    assert kernel.user_flags() == ["-DA=1", "-I/a b"]
    monkeypatch.setenv(kernel.FLAGS_ENV, "-DA='1")
    with pytest.raises(ValueError, match=f"{kernel.FLAGS_ENV}.*Received: "):
        kernel.user_flags()


FAKE_COMPILER = """#!/bin/sh
# Refuses -march=native as g++ 12 does on AVX512-FP16 (in Eigen's headers),
# and everything when FAKE_REFUSE_ALL is set; else builds the library:
# with the real compiler, or by copying one it built before (the build's
# bookkeeping under test, not the compiler's 40 s).
if [ "$1" = "--version" ]; then exec {real} --version; fi
echo "$*" >> {log}
case " $* " in
  *" -march=native "*)
    echo "PacketMathFP16.h:748:48: error: expected initializer before '<' token" >&2
    exit 1;;
esac
if [ -n "$FAKE_REFUSE_ALL" ]; then echo "error: refused" >&2; exit 1; fi
{accept}
"""
BUILD_FOR_REAL = 'exec {real} "$@"'
# `kernel_build.build` calls `compiler SOURCE -o OUT FLAGS...`.
COPY_BUILT = '[ "$2" = "-o" ] || exit 3; exec cp {built} "$3"'


def fake_compiler(folder, copy_from: str | None = None, pause: int = 0):
    """A fake `CXX` in `folder` and the log of its calls: it builds for real,
    or copies the library at `copy_from` (after `pause` seconds)."""
    real = kernel.status()["compiler"]
    log, fake = folder / "calls.log", folder / "fake-c++"
    accept = COPY_BUILT.format(built=copy_from) if copy_from else BUILD_FOR_REAL
    accept = f"sleep {pause}; {accept}" if pause else accept
    fake.write_text(
        FAKE_COMPILER.format(real=real, log=log, accept=accept.format(real=real))
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake, log


def start_status(cache, **env) -> subprocess.Popen:
    """`kernel.status()` in a fresh Python process, as a CLI call makes it."""
    code = (
        "import json; from keras_idim.projections import kernel; "
        "print(json.dumps(kernel.status()))"
    )
    full_env = {**os.environ, "KERAS_IDIM_CACHE_DIR": str(cache), **env}
    full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def status_of(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def status_in_a_new_process(cache, **env) -> dict:
    return status_of(start_status(cache, **env))


@needs_kernel
@pytest.mark.parametrize(
    "compile_", ["copied", pytest.param("for real", marks=pytest.mark.slow)]
)
def test_the_ladder_goes_down_and_each_failure_is_tried_once(compile_, tmp_path):
    # The default run copies the library this module built (the ladder's
    # bookkeeping); the slow run compiles the rung below -march=native too.
    built = kernel.status()["path"] if compile_ == "copied" else None
    fake, log = fake_compiler(tmp_path, copy_from=built)
    cache = tmp_path / "cache"

    def calls():
        return log.read_text().splitlines() if log.exists() else []

    rungs = kernel.ladder()
    usable = next(r for r in rungs if "-march=native" not in r)
    refused = rungs.index(usable)
    first = status_in_a_new_process(cache, CXX=str(fake))
    assert first["loaded"] and first["flags"] == usable
    outcomes = [a["outcome"] for a in first["attempts"]]
    assert outcomes == ["failed"] * refused + ["built"]
    assert len(calls()) == refused + 1
    markers = sorted(cache.glob("*.failed"))
    assert len(markers) == refused
    assert all("PacketMathFP16.h:748:48" in m.read_text() for m in markers)

    # A later process tries no failed rung again, and builds nothing.
    again = status_in_a_new_process(cache, CXX=str(fake))
    assert again["loaded"] and again["path"] == first["path"]
    outcomes = [a["outcome"] for a in again["attempts"]]
    assert outcomes == ["failed before"] * refused + ["cached"]
    assert len(calls()) == refused + 1

    # Other flags make other keys: every rung is tried again, once.
    refuse = {"CXX": str(fake), "FAKE_REFUSE_ALL": "1", kernel.FLAGS_ENV: "-DPROBE=1"}
    failed = status_in_a_new_process(cache, **refuse)
    assert not failed["loaded"]
    assert failed["reason"].startswith(f"every build failed ({len(rungs)} tried")
    assert all(a["outcome"] == "failed" for a in failed["attempts"])
    assert all("-DPROBE=1" in a["flags"] for a in failed["attempts"])
    assert len(calls()) == refused + 1 + len(rungs)
    remembered = status_in_a_new_process(cache, **refuse)
    outcomes = [a["outcome"] for a in remembered["attempts"]]
    assert outcomes == ["failed before"] * len(rungs)
    assert len(calls()) == refused + 1 + len(rungs)


@needs_kernel
def test_processes_started_together_build_once(tmp_path):
    # Each build takes 3 s (a fake CXX): without the cache's lock, both
    # processes would try every rung.
    fake, log = fake_compiler(tmp_path, kernel.status()["path"], pause=3)
    cache = tmp_path / "cache"
    procs = [start_status(cache, CXX=str(fake)) for _ in range(2)]
    try:
        both = [status_of(p) for p in procs]
    finally:
        for p in procs:
            p.kill()
    rungs = kernel.ladder()
    refused = rungs.index(next(r for r in rungs if "-march=native" not in r))
    assert len(log.read_text().splitlines()) == refused + 1
    assert all(st["loaded"] for st in both)
    assert both[0]["path"] == both[1]["path"]
    outcomes = sorted(st["attempts"][-1]["outcome"] for st in both)
    assert outcomes == ["built", "cached"]


@needs_kernel
@pytest.mark.parametrize("damage", ["truncated", "no checksum"])
def test_a_damaged_library_in_the_cache_is_built_again(damage, tmp_path):
    # Builds copy this module's library (a fake CXX): what is under test is
    # that the cache checks the file before loading it.
    good = kernel.status()["path"]
    fake, log = fake_compiler(tmp_path, copy_from=good)
    cache = tmp_path / "cache"
    first = status_in_a_new_process(cache, CXX=str(fake))
    assert [a["outcome"] for a in first["attempts"]][-1] == "built"
    copy = first["path"]
    assert kernel.verified(copy) and os.path.dirname(copy) == str(cache)
    if damage == "truncated":
        with open(copy, "r+b") as f:
            f.truncate(os.path.getsize(good) // 2)
    else:
        os.remove(copy + ".sha256")
    assert not kernel.verified(copy)
    builds = len(log.read_text().splitlines())
    # Loaded as it was, a truncated library kills the process (SIGBUS).
    st = status_in_a_new_process(cache, CXX=str(fake))
    assert st["loaded"] and st["path"] == copy
    assert [a["outcome"] for a in st["attempts"]][-1] == "built"
    assert len(log.read_text().splitlines()) == builds + 1
    assert kernel.verified(copy)
    assert os.path.getsize(copy) == os.path.getsize(good)


@needs_kernel
def test_doctor_says_which_flags_the_kernel_was_built_with(capsys):
    from keras_idim.cli import main

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "Fastfood kernel: available" in out
    assert f"flags:    {' '.join(kernel.status()['flags'])}" in out


def test_doctor_says_why_the_kernel_is_unavailable(monkeypatch, capsys):
    from keras_idim.cli import main

    monkeypatch.setenv("CXX", "/nonexistent/c++")
    monkeypatch.delenv(kernel.ENV, raising=False)  # auto, whatever the run's
    kernel.reset()
    try:
        assert main(["doctor"]) == 1
        out = capsys.readouterr().out
        assert "Fastfood kernel: unavailable" in out
        assert "no C++ compiler found (CXX='/nonexistent/c++'" in out
        monkeypatch.setenv(kernel.ENV, "0")
        assert main(["doctor"]) == 0  # switched off: nothing is wrong
        assert "never used (KERAS_IDIM_FASTFOOD_KERNEL=0)" in capsys.readouterr().out
    finally:
        kernel.reset()
