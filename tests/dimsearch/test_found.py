"""The model the search found: each finished subspace run keeps theta_d in
a small file, and `SearchResult.model` rebuilds it exactly (issue 19,
item 6)."""

import json
import os

import numpy as np
import pytest

import keras_idim
from keras_idim import cli
from keras_idim.dimsearch import found
from tests.search_helpers import TINY, digits_arrays, tiny_fc


@pytest.fixture(scope="module")
def digits():
    return digits_arrays()


@pytest.fixture(scope="module")
def searched(digits, tmp_path_factory):
    """A search of tiny_fc on digits at d = 3 (fails) and d = 300 (passes)."""
    path = tmp_path_factory.mktemp("found") / "results.json"
    train, val = digits
    result = keras_idim.search(
        tiny_fc, train, val, dims=[3, 300], results_path=path, **TINY
    )
    return path, result


def val_accuracy(model, val):
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    logs = model.evaluate(*val, batch_size=64, verbose=0, return_dict=True)
    return logs["accuracy"]


def test_each_finished_run_keeps_a_small_file(searched):
    path, result = searched
    folder = path.parent / "results-runs"
    assert sorted(os.listdir(folder)) == ["d3-seed0.npz", "d300-seed0.npz"]
    assert found.run_file(path, 300, 0) == str(folder / "d300-seed0.npz")
    assert os.path.getsize(folder / "d300-seed0.npz") < 8_000  # 300 floats
    kept = found.read(str(folder / "d300-seed0.npz"))
    assert kept["dim"] == 300 and kept["seed"] == 0
    assert kept["arrays"]["theta_d"].shape == (300,)
    assert "theta_d" not in path.read_text()  # the JSON holds no array
    assert "found" not in json.loads(path.read_text())["runs"][0]


def test_the_rebuilt_model_scores_the_recorded_metric(searched, digits):
    path, _ = searched
    loaded = keras_idim.SearchResult.from_json(path)
    assert loaded.d_int == 300
    for d in (None, 3):  # d_int, and another finished d
        model = loaded.model(model_fn=tiny_fc, d=d, seed=0)
        assert isinstance(model, keras_idim.SubspaceModel)
        record = next(r for r in loaded.runs if r.dim == (d or 300))
        assert model.dim == record.dim
        assert val_accuracy(model, digits[1]) == pytest.approx(record.metric, abs=1e-6)


def test_the_result_in_memory_knows_its_model_fn(searched, digits):
    _, result = searched
    model = result.model()  # the search's model_fn, d_int, seed 0
    assert val_accuracy(model, digits[1]) == pytest.approx(
        result.runs[-1].metric, abs=1e-6
    )


def test_a_d_never_finished_is_refused_naming_the_finished_ones(searched):
    path, _ = searched
    loaded = keras_idim.SearchResult.from_json(path)
    with pytest.raises(ValueError, match=r"seed 0 .*\[3, 300\]\. Received: `d=7`"):
        loaded.model(model_fn=tiny_fc, d=7)
    with pytest.raises(ValueError, match=r"seed 1 .*none\. Received: `d=300`"):
        loaded.model(model_fn=tiny_fc, d=300, seed=1)
    with pytest.raises(ValueError, match=r"`model_fn` should be the search's"):
        loaded.model(d=300)  # a results file holds no function


def test_another_model_fn_is_refused(searched):
    path, _ = searched
    loaded = keras_idim.SearchResult.from_json(path)

    def other():
        model = tiny_fc()
        model.layers[0].kernel.assign(np.zeros((64, 16), np.float32))
        return model

    with pytest.raises(ValueError, match=r"does not rebuild the run's theta_0"):
        loaded.model(model_fn=other, d=300)


def test_said_and_no_results_file(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train, val = digits
    result = keras_idim.search(
        tiny_fc, train, val, dims=[300], structure_aware=True, **TINY
    )
    assert os.listdir(tmp_path) == []  # no results_path: nothing written
    model = result.model()
    assert model.structure_aware
    assert val_accuracy(model, val) == pytest.approx(result.runs[0].metric, abs=1e-6)


def test_cli_export_rebuilds_the_search_model(tmp_path, digits, capsys):
    out = tmp_path / "fc"
    code = cli.main(
        ["search", "--dims", "20,200", "--epochs", "2", "--baseline", "1.0"]
        + ["--fraction", "0.5", "--lr", "0.05", "--out", str(out), "--quiet"]
    )
    assert code == 0
    assert sorted(os.listdir(out / "results-runs")) == [
        "d20-seed0.npz",
        "d200-seed0.npz",
    ]
    target = tmp_path / "exported"
    code = cli.main(
        ["export", str(out), "--dim", "20", "--format", "compact"]
        + ["--out", str(target)]
    )
    assert code == 0
    assert f"exported {target}.npz (compact)" in capsys.readouterr().out
    model = keras_idim.load_compact(f"{target}.npz")
    record = next(
        r
        for r in keras_idim.SearchResult.from_json(out / "results.json").runs
        if r.dim == 20
    )
    val = keras_idim.data.load("digits", arrays=True)[1]
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    logs = model.evaluate(*val, batch_size=128, verbose=0, return_dict=True)
    assert logs["accuracy"] == pytest.approx(record.metric, abs=1e-6)
    # search.json says its format version; one without it (keras_idim
    # 0.1.0's) is of version 1 and exports alike; a newer one is refused.
    spec = json.loads((out / "search.json").read_text())
    assert spec.pop("format_version") == 1
    (out / "search.json").write_text(json.dumps(spec))
    again = ["export", str(out), "--format", "compact", "--out"]
    assert cli.main([*again, str(tmp_path / "again")]) == 0
    (out / "search.json").write_text(json.dumps({**spec, "format_version": 2}))
    with pytest.raises(SystemExit):
        cli.main([*again, str(tmp_path / "newer")])
    assert "has format version 2; this keras_idim reads version 1" in (
        capsys.readouterr().err
    )
    # A folder whose model function is unknown is refused, saying so.
    os.remove(out / "search.json")
    with pytest.raises(SystemExit) as e:
        cli.main(["export", str(out)])
    assert e.value.code == 2
    assert "cannot be rebuilt from the folder alone" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["export", str(target) + ".npz", "--dim", "20"])
    assert "choose a run of a search folder" in capsys.readouterr().err
