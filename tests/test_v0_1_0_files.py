"""Files written by keras_idim 0.1.0 load and resume (tests/fixtures/v0_1_0,
written by its make_fixtures.py with that version)."""

import json
import pathlib
import shutil

import keras
import numpy as np
import pytest
from search_helpers import TINY, digits_arrays, must_not_run, tiny_fc

import keras_idim
from keras_idim import SubspaceModel, subspace
from keras_idim.dimsearch import InProcessRunner, found, store
from keras_idim.utils.io import read_header_npz

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures" / "v0_1_0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def predictions(model) -> np.ndarray:
    return model.predict(np.asarray(EXPECTED["x"], "float32"), verbose=0)


def assert_the_saved_model(model):
    assert isinstance(model, SubspaceModel)
    assert model.structure_aware and model.dim == 10 and model.seed == 3
    np.testing.assert_array_equal(model.theta_d.numpy(), EXPECTED["theta_d"])
    np.testing.assert_array_equal(model.lambdas.numpy(), EXPECTED["lambdas"])
    np.testing.assert_allclose(
        predictions(model), EXPECTED["predictions"], rtol=1e-5, atol=1e-6
    )


def test_the_fixtures_are_files_of_0_1_0():
    with open(FIXTURES / "compact.npz", "rb") as f:
        header, _ = read_header_npz(f.read())
    assert header["keras_idim_version"] == "0.1.0"
    assert header["format_version"] == 1
    results = json.loads((FIXTURES / "results.json").read_text())
    assert results["version"] == 1 and "keras_idim_version" not in results
    run = found.read(str(FIXTURES / "results-runs" / "d300-seed0.npz"))
    assert run["format_version"] == 1 and "keras_idim_version" not in run
    import zipfile

    with zipfile.ZipFile(FIXTURES / "subspace.keras") as z:
        config = json.loads(z.read("config.json"))
    assert "format_version" not in config["config"]


def test_a_keras_file_of_0_1_0_loads_and_saves_as_the_current_version(tmp_path):
    model = keras.saving.load_model(FIXTURES / "subspace.keras")
    assert_the_saved_model(model)
    model.save(tmp_path / "again.keras")
    again = keras.saving.load_model(tmp_path / "again.keras")
    assert again.get_config()["format_version"] == subspace.FORMAT_VERSION == 2
    assert_the_saved_model(again)


def test_a_compact_file_of_0_1_0_loads():
    assert_the_saved_model(keras_idim.load_compact(FIXTURES / "compact.npz"))


@pytest.fixture
def old_search(tmp_path):
    """The fixture's results file and run files, in a folder of their own."""
    shutil.copy(FIXTURES / "results.json", tmp_path / "results.json")
    shutil.copytree(FIXTURES / "results-runs", tmp_path / "results-runs")
    return tmp_path / "results.json"


def test_a_results_file_of_0_1_0_loads(old_search):
    state = store.load(old_search)
    assert state["version"] == 1
    loaded = keras_idim.SearchResult.from_json(old_search)
    assert loaded.d_int == 300
    assert [(r.dim, r.seed) for r in loaded.runs] == [(2, 0), (300, 0)]


def test_a_search_of_0_1_0_resumes_without_training(old_search):
    train, val = digits_arrays()
    result = keras_idim.search(
        tiny_fc,
        train,
        val,
        dims=[2, 300],
        results_path=old_search,
        runner=InProcessRunner(must_not_run),
        **TINY,
    )
    assert result.d_int == 300
    written = json.loads(old_search.read_text())
    assert written["version"] == store.RESULTS_VERSION
    assert written["keras_idim_version"] == keras_idim.__version__


def test_a_run_file_of_0_1_0_rebuilds_its_model(old_search):
    kept = found.read(str(old_search.parent / "results-runs" / "d300-seed0.npz"))
    loaded = keras_idim.SearchResult.from_json(old_search)
    model = loaded.model(model_fn=tiny_fc, d=300, seed=0)
    assert isinstance(model, SubspaceModel) and model.dim == 300
    np.testing.assert_array_equal(model.theta_d.numpy(), kept["arrays"]["theta_d"])
