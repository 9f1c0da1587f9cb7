"""The results file: refused when foreign or corrupt, and old files resume."""

import json
import shutil
from pathlib import Path

import pytest
from search_helpers import TINY, digits_arrays, must_not_run, tiny_fc

from keras_idim import search
from keras_idim.dimsearch import (
    InProcessRunner,
    SearchFileError,
    SearchResult,
    store,
)
from keras_idim.dimsearch.comparison import load as compare_load
from keras_idim.dimsearch.runner import train_run


def test_another_config_is_refused_and_the_file_kept(tmp_path):
    train, val = digits_arrays()
    path = tmp_path / "r.json"
    search(tiny_fc, train, val, dims=[5], results_path=path, **TINY)
    before = path.read_text()
    with pytest.raises(
        SearchFileError,
        match=r"r\.json.*another configuration"
        r" \(differing in: epochs\)",
    ):
        search(
            tiny_fc, train, val, dims=[5], results_path=path, **{**TINY, "epochs": 4}
        )
    assert path.read_text() == before


def test_corrupt_file_is_refused(tmp_path):
    train, val = digits_arrays()
    path = tmp_path / "r.json"
    path.write_text('{"format": "keras_idim.search", "runs": [')
    with pytest.raises(SearchFileError, match=r"r\.json is corrupt"):
        search(tiny_fc, train, val, dims=[5], results_path=path, **TINY)
    path.write_text(json.dumps({"format": "keras_idim.search", "version": 1}))
    with pytest.raises(SearchFileError, match=r"r\.json is corrupt"):
        search(tiny_fc, train, val, dims=[5], results_path=path, **TINY)
    path.write_text("[1, 2]")
    with pytest.raises(SearchFileError, match="not a keras_idim search results"):
        SearchResult.from_json(path)


# -- files written before the restructuring (keras_idim at e7bd915) --

FIXTURES = Path(__file__).resolve().parent / "fixtures"
COMPLETE = dict(
    dims=[2, 400],
    fraction=0.5,
    epochs=2,
    batch_size=64,
    learning_rate=0.05,
    baseline_learning_rate=0.01,
    seeds=(0, 1),
    verbose=0,
)
INTERRUPTED = dict(TINY, dims="auto", start_dim=1, max_dim=1210)


def test_old_complete_file_resumes_without_training(tmp_path):
    path = tmp_path / "results.json"
    shutil.copy(FIXTURES / "results_v1_complete.json", path)
    old = json.loads(path.read_text())
    train, val = digits_arrays()
    result = search(
        tiny_fc,
        train,
        val,
        results_path=path,
        runner=InProcessRunner(must_not_run),
        **COMPLETE,
    )
    assert result.d_int == old["d_int"] == 400
    assert result.baseline == (old["baseline"]["value"], "local")
    assert result.threshold == old["threshold"]
    assert [r.to_dict() for r in result.runs] == old["runs"]
    assert [r.to_dict() for r in result.baseline_runs] == old["baseline_runs"]
    assert result.mode == "max"
    # Read back as a result too.
    assert SearchResult.from_json(FIXTURES / "results_v1_complete.json").d_int == 400


def test_old_interrupted_file_resumes_where_it_stopped(tmp_path):
    path = tmp_path / "results.json"
    shutil.copy(FIXTURES / "results_v1_interrupted.json", path)
    old = json.loads(path.read_text())["runs"]
    assert len(old) == 4 and [r["dim"] for r in old] == [1, 2, 4, 8]
    trained = []

    def counting(recipe, dim, seed, threshold):
        trained.append(dim)
        return train_run(recipe, dim, seed, threshold)

    train, val = digits_arrays()
    resumed = search(
        tiny_fc,
        train,
        val,
        results_path=path,
        runner=InProcessRunner(counting),
        **INTERRUPTED,
    )
    assert [r.to_dict() for r in resumed.runs[:4]] == old  # kept as they were
    assert trained == [r.dim for r in resumed.runs[4:]]  # only the rest trained
    assert 1 not in trained and resumed.d_int is not None


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d["runs"][0].update(status="finished"), r"runs\[0\].*`status`"),
        (lambda d: d["runs"][1].update(metric="high"), r"runs\[1\].*`metric`='high'"),
        (lambda d: d["runs"][0].update(metric=float("nan")), r"runs\[0\].*`metric`"),
        (lambda d: d["runs"][2].pop("seed"), r"runs\[2\] has no `seed`"),
        (lambda d: d["baseline_runs"].append(7), r"baseline_runs\[2\] is not an"),
        (lambda d: d.update(runs={}), r"`runs` is not a list"),
        (lambda d: d.update(mode="up"), r"`mode`='up'"),
    ],
)
def test_every_record_is_checked_and_the_error_names_file_and_field(
    tmp_path, change, match
):
    data = json.loads((FIXTURES / "results_v1_complete.json").read_text())
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SearchFileError, match=r"bad\.json is corrupt .*" + match):
        store.load(path)


def test_binary_garbage_names_the_file(tmp_path):
    path = tmp_path / "garbage.json"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(SearchFileError, match=r"garbage\.json is not text"):
        store.load(path)


def test_config_hash_ignores_added_keys_at_their_old_value():
    old = json.loads((FIXTURES / "results_v1_complete.json").read_text())
    config = dict(old["config"])
    assert store.config_hash(config) == old["config_hash"]
    new = dict(config, metrics=["accuracy"], mode="max", threshold=None, callbacks=None)
    assert store.config_hash(new) == old["config_hash"]
    assert store.config_hash(dict(new, mode="min")) != old["config_hash"]
    assert store.config_hash(dict(new, metrics=["mae"])) != old["config_hash"]


def test_a_results_folder_whose_name_starts_with_a_brace_is_read(tmp_path, monkeypatch):
    source = FIXTURES / "results_v1_complete.json"
    monkeypatch.chdir(tmp_path)  # a relative path: "{lr=0.1}/results.json"
    Path("{lr=0.1}").mkdir()
    shutil.copy(source, Path("{lr=0.1}", "results.json"))
    for path in ("{lr=0.1}/results.json", Path("{lr=0.1}/results.json")):
        assert SearchResult.from_json(path).d_int == 400
    assert compare_load("{lr=0.1}").d_int == 400  # a run folder, as compare takes
    # JSON text is still read as JSON text.
    assert SearchResult.from_json(source.read_text()).d_int == 400
