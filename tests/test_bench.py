import json

import keras
import numpy as np

from keras_idim import SubspaceModel, bench


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
    table = (tmp_path / "RESULTS.md").read_text()
    assert table.count("| fc-tiny |") == 3
    assert "CPU cores" in table and "TensorFlow" in table
    assert (tmp_path / "ratio.png").read_bytes()[:4] == b"\x89PNG"
    assert result["records"] == records


def test_train_step_is_traced_a_bounded_number_of_times():
    base = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dense(2)]
    )
    model = SubspaceModel(base, dim=5)
    model.compile(optimizer="adam", loss="mse")
    traces = []
    train_step = model.train_step

    def counted(data):
        traces.append(1)
        return train_step(data)

    model.train_step = counted
    x = np.zeros((330, 6), np.float32)  # 20 full batches of 16 and one of 10
    model.fit(x, np.zeros((330, 2)), batch_size=16, epochs=1, verbose=0)
    first = len(traces)
    assert 1 <= first <= 2  # the full batches, maybe the partial one
    model.fit(x, np.zeros((330, 2)), batch_size=16, epochs=3, verbose=0)
    assert len(traces) == first  # no retracing per batch or per epoch
