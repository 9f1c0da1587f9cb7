import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import search_helpers
from search_helpers import digits_arrays, tiny_fc

from keras_idim import cli
from keras_idim.search import (
    SearchFileError,
    SearchResult,
    auto_next_dim,
    search,
    smallest_passing,
)

TESTS = Path(__file__).resolve().parent

# Settings under which tiny_fc on digits fails at d <= 3 and passes at d = 300.
TINY = dict(
    baseline=1.0, fraction=0.5, epochs=3, batch_size=64, learning_rate=0.05, verbose=0
)


def drive_auto(boundary, **kwargs):
    """Runs the automatic strategy against a known pass/fail boundary."""
    outcomes, order = {}, []
    while (d := auto_next_dim(outcomes, **kwargs)) is not None:
        assert d not in outcomes, "a d must never be tried twice"
        outcomes[d] = d >= boundary
        order.append(d)
    return smallest_passing(outcomes), order


def test_auto_sequence_worked_by_hand():
    # 10..640 fail, 1280 passes; then sqrt(640*1280) = 905.1 -> 905 passes,
    # sqrt(640*905) = 761.05 -> 761 passes, sqrt(640*761) = 697.9 -> 698
    # fails, and 761/698 = 1.09 <= 1.1 ends it.
    d, order = drive_auto(750, start=10, tolerance=0.1, max_dim=100_000)
    assert order == [10, 20, 40, 80, 160, 320, 640, 1280, 905, 761, 698]
    assert d == 761


def test_auto_halves_when_the_start_passes():
    # 10, 5 pass, 2 fails; sqrt(2*5) = 3.16 -> 3 passes; 2 and 3 are adjacent.
    assert drive_auto(3, start=10, tolerance=0.1, max_dim=100) == (3, [10, 5, 2, 3])


def test_auto_gives_up_at_max_dim():
    assert drive_auto(10**9, start=10, max_dim=100) == (None, [10, 20, 40, 80, 100])


@pytest.mark.parametrize("boundary", [1, 2, 7, 64, 99, 750, 1234, 9000, 190_000])
def test_auto_finds_the_boundary_within_tolerance(boundary):
    d, order = drive_auto(boundary, start=10, tolerance=0.1, max_dim=10**6)
    assert d >= boundary
    fails = [x for x in order if x < boundary]
    if fails:
        lo = max(fails)
        assert d / lo <= 1.1 or d - lo == 1
    # Far fewer runs than a 25-point grid: log2(d/10) to bracket, 3 to bisect.
    assert len(order) <= abs(math.log2(boundary / 10)) + 6


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
from keras_idim.search import search
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


def test_cli_search_end_to_end(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_idim.cli",
            "search",
            "--dims",
            "2,2000",
            "--epochs",
            "2",
            "--fraction",
            "0.5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "d_int50 = 2000" in proc.stdout
    assert "local baseline" in proc.stdout
    for name in ("results.json", "results.csv", "curve.png"):
        assert (out / name).stat().st_size > 0
    assert SearchResult.from_json(out / "results.json").d_int == 2000


def test_cli_exit_1_when_no_d_reaches(tmp_path, capsys):
    code = cli.main(
        [
            "search",
            "--dims",
            "1",
            "--epochs",
            "1",
            "--baseline",
            "1.0",
            "--fraction",
            "1",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 1
    assert "not found" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--dims", "ten"],
        ["search", "--fraction", "2"],
        ["search", "--seeds", "0"],
        ["search", "--baseline", "high"],
        ["search", "--model", "resnet"],
        ["search", "--dataset", "mnist"],
        ["search", "--projection", "svd"],
        ["train"],
        ["frobnicate"],
    ],
)
def test_cli_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err
