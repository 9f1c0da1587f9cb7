"""`keras_idim.search` end to end, on tiny_fc and digits."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import search_helpers
from search_helpers import TINY, digits_arrays, tiny_fc

from keras_idim import search
from keras_idim.dimsearch import SearchResult

TESTS = Path(__file__).resolve().parents[1]


def test_list_sweep_stops_at_the_first_passing_d(tmp_path):
    train, val = digits_arrays()
    search_helpers.CALLS["model_fn"] = 0
    result = search(
        tiny_fc,
        train,
        val,
        dims=[3, 1, 2, 300, 600, 1000],
        results_path=tmp_path / "r.json",
        **TINY,
    )
    assert [r.dim for r in result.runs] == [1, 2, 3, 300]
    assert search_helpers.CALLS["model_fn"] == 4  # 600 and 1000 never ran
    assert result.d_int == 300
    assert result.threshold == 0.5 and result.baseline == (1.0, "global")
    assert result.runs[-1].stopped_early
    assert result.runs[-1].epochs < 3 or result.runs[-1].metric >= 0.5
    stored = json.loads((tmp_path / "r.json").read_text())
    assert [r["dim"] for r in stored["runs"]] == [1, 2, 3, 300]
    assert stored["d_int"] == 300


def test_local_baseline_and_result_files(tmp_path):
    train, val = digits_arrays()
    result = search(
        tiny_fc,
        train,
        val,
        dims=[2, 400],
        fraction=0.5,
        epochs=2,
        batch_size=64,
        learning_rate=0.05,
        baseline_learning_rate=0.01,
        seeds=(0, 1),
        verbose=0,
    )
    assert result.baseline.kind == "local"
    assert [r.dim for r in result.baseline_runs] == [None, None]
    mean = np.mean([r.metric for r in result.baseline_runs])
    assert result.baseline.value == pytest.approx(mean)
    assert result.threshold == pytest.approx(0.5 * mean)
    assert [(r.dim, r.seed) for r in result.runs] == [
        (2, 0),
        (2, 1),
        (400, 0),
        (400, 1),
    ]
    assert result.d_int == 400
    again = SearchResult.from_json(result.to_json(tmp_path / "x.json"))
    assert again.to_dict() == result.to_dict()
    csv_text = result.to_csv(tmp_path / "x.csv")
    assert csv_text.splitlines()[0].startswith("dim,seed,projection,metric")
    assert len(csv_text.splitlines()) == 1 + 2 + 4
    png = Path(result.plot(tmp_path / "curve.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = result.summary()
    assert "d_int50 = 400" in summary and "local baseline" in summary


def test_diverging_runs_are_recorded_and_the_search_goes_on():
    train, val = digits_arrays()
    result = search(
        tiny_fc,
        train,
        val,
        dims=[20, 40],
        baseline=1.0,
        optimizer="sgd",
        learning_rate=1e12,
        epochs=2,
        verbose=0,
    )
    assert [r.status for r in result.runs] == ["diverged", "diverged"]
    assert [r.dim for r in result.runs] == [20, 40]
    assert "non-finite loss" in result.runs[0].message
    assert result.d_int is None
    assert "not found" in result.verdict()


def test_failing_run_is_recorded_as_error():
    train, val = digits_arrays()

    def broken():
        raise RuntimeError("no GPU today")

    result = search(broken, train, val, dims=[5], baseline=1.0, verbose=0)
    assert result.runs[0].status == "error"
    assert "no GPU today" in result.runs[0].message


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from search_helpers import digits_arrays, tiny_fc
from keras_idim import search
train, val = digits_arrays()
search(tiny_fc, train, val, dims="auto", start_dim=1, max_dim=1210,
       results_path={path!r}, **{tiny!r})
"""


def test_resume_after_sigkill_recomputes_no_finished_run(tmp_path):
    train, val = digits_arrays()
    path = tmp_path / "results.json"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CHILD.format(tests=str(TESTS), path=str(path), tiny=TINY),
        ],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    try:
        deadline = time.monotonic() + 240
        finished = []
        while time.monotonic() < deadline and child.poll() is None:
            if path.exists():
                finished = json.loads(path.read_text())["runs"]
                if len(finished) >= 3:
                    break
            time.sleep(0.05)
        assert child.poll() is None, "the child ended before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    finished = json.loads(path.read_text())["runs"]
    assert len(finished) >= 3
    search_helpers.CALLS["model_fn"] = 0
    resumed = search(
        tiny_fc,
        train,
        val,
        dims="auto",
        start_dim=1,
        max_dim=1210,
        results_path=path,
        **TINY,
    )
    assert search_helpers.CALLS["model_fn"] == len(resumed.runs) - len(finished)
    for old, new in zip(finished, resumed.runs):
        assert (old["dim"], old["metric"], old["seconds"]) == (
            new.dim,
            new.metric,
            new.seconds,
        )
    fresh = search(tiny_fc, train, val, dims="auto", start_dim=1, max_dim=1210, **TINY)
    assert resumed.d_int == fresh.d_int is not None
    assert [r.dim for r in resumed.runs] == [r.dim for r in fresh.runs]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fraction": 1.5}, r"Received: `fraction=1.5`"),
        ({"dims": "grid"}, r"Received: `dims='grid'`"),
        ({"dims": [10, 0]}, r"Received: `dims=\[10, 0\]`"),
        ({"seeds": (1, 1)}, r"Received: `seeds=\(1, 1\)`"),
        ({"baseline": -1.0}, r"Received: `baseline=-1.0`"),
        ({"epochs": 0}, r"Received: `epochs=0`"),
        ({"projection": "svd"}, r"Received: `projection='svd'`"),
        ({"tolerance": 0}, r"Received: `tolerance=0`"),
        ({"optimizer": 3}, r"Received: `optimizer=3`"),
        ({"learning_rate": -0.1}, r"Received: `learning_rate=-0.1`"),
    ],
)
def test_bad_arguments(kwargs, match):
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=match):
        search(tiny_fc, train, val, **kwargs)


def test_bad_model_fn_and_data():
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=r"Received: `model_fn=3`"):
        search(3, train, val)
    with pytest.raises(ValueError, match=r"`train_data`"):
        search(tiny_fc, "train.csv", val)
