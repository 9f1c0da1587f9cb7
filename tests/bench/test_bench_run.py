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
    assert (tmp_path / "ratio.png").read_bytes()[:4] == b"\x89PNG"
    assert result["records"] == records
    # Written atomically: no temporary file or folder is left beside them.
    assert sorted(os.listdir(tmp_path)) == ["RESULTS.md", "ratio.png", "results.json"]
