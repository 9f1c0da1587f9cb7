import json
import os

from keras_idim import bench


def test_quick_benchmark_writes_well_formed_results(tmp_path):
    result = bench.run(quick=True, out=str(tmp_path), verbose=0)
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["machine"]["cpu_count"] >= 1
    assert stored["machine"]["tensorflow"]
    records = stored["records"]
    assert {r["projection"] for r in records} == {"dense", "sparse", "fastfood"}
    for r in records:
        assert r["status"] == "ok", r
        assert r["full_dim"] == 64 * 32 + 32 + 32 * 10 + 10
        assert r["plain_ms"] > 0 and r["subspace_ms"] > 0
        assert r["ratio_min"] <= r["ratio"] <= r["ratio_max"]
        assert r["projection_bytes"] > 0 and r["peak_rss_bytes"] > 0
        assert r["traces"] <= 2
    dense = next(r for r in records if r["projection"] == "dense")
    assert dense["bound_ms"] > dense["plain_ms"]
    assert len(stored["products"]) == 7
    assert stored["bandwidth"]["bytes_per_s"] > 0
    assert all(r["bound_ms"] > 0 for r in stored["products"])
    table = (tmp_path / "RESULTS.md").read_text()
    assert table.count("| fc-tiny |") == 3
    assert "CPU cores" in table and "TensorFlow" in table
    threads = stored["machine"]["intra_op_threads"]
    assert f"({threads or 'default'} intra-op threads" in table
    built = stored["machine"]["fastfood_kernel"]
    assert built["loaded"] == (built["reason"] is None)
    if built["loaded"]:
        assert f"Fastfood's kernel built with {' '.join(built['flags'])})" in table
    assert (tmp_path / "ratio.png").read_bytes()[:4] == b"\x89PNG"
    assert result["records"] == records
    # Written atomically: no temporary file or folder is left beside them.
    assert sorted(os.listdir(tmp_path)) == ["RESULTS.md", "ratio.png", "results.json"]


def run_cli(*argv, cwd):
    """`keras-idim bench ARGV` in `cwd`, in a process of its own."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "keras_idim.cli", "bench", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bench_refuses_bad_arguments_before_timing_anything(tmp_path):
    import pytest

    (tmp_path / "a_file").write_text("")
    unknown = run_cli("--configs", "fc-mnist,nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "unknown benchmark configurations ['nope']" in unknown.stderr
    assert "Received: --configs='fc-mnist,nope'" in unknown.stderr
    empty = run_cli("--configs", "fc-mnist,", cwd=tmp_path)
    assert empty.returncode == 2 and "configurations ['']" in empty.stderr
    a_file = run_cli("--quick", "--out", "a_file", cwd=tmp_path)
    assert a_file.returncode == 2
    assert "`--out` 'a_file' exists and is a file" in a_file.stderr
    # Results already there: refused at once (exit 1), kept as they were.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "RESULTS.md").write_text("measured before")
    kept = run_cli("--quick", "--out", "old", cwd=tmp_path)
    assert kept.returncode == 1 and "Traceback" not in kept.stderr
    assert "--out 'old' already holds RESULTS.md. Pass --overwrite" in kept.stderr
    assert (tmp_path / "old" / "RESULTS.md").read_text() == "measured before"
    with pytest.raises(FileExistsError, match="`overwrite=True`"):
        bench.run(quick=True, out=str(tmp_path / "old"), verbose=0)
    with pytest.raises(ValueError, match="Received: configs='nope'"):
        bench.run(names=["nope"], out=str(tmp_path / "new"), verbose=0)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "new").exists()


def test_bench_writes_under_runs_by_default_not_over_the_repository_tables():
    import inspect

    assert bench.DEFAULT_OUT == os.path.join("runs", "bench")
    assert inspect.signature(bench.run).parameters["out"].default == bench.DEFAULT_OUT
