"""The `keras-idim` command line."""

import os
import subprocess
import sys

import pytest

from keras_idim import cli
from keras_idim.dimsearch import SearchResult


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


def test_cli_regression_search_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(
        [
            "search",
            "--dataset",
            "diabetes",
            "--metric",
            "mae",
            "--dims",
            "1,2000",
            "--epochs",
            "5",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = SearchResult.from_json(out / "results.json")
    assert (result.monitor, result.mode) == ("val_mae", "min")
    assert result.config["loss"] == "mse" and result.config["metrics"] == ["mae"]
    assert result.d_int == 2000
    assert "val_mae: lower is better" in printed
    header = (out / "results.csv").read_text().splitlines()[0]
    assert header.endswith("monitor,mode,passes_when")


def test_cli_absolute_threshold_and_tensorboard(tmp_path, capsys):
    out, logs = tmp_path / "out", tmp_path / "tb"
    code = cli.main(
        [
            "search",
            "--dims",
            "2000",
            "--epochs",
            "1",
            "--threshold",
            "0.3",
            "--tensorboard",
            str(logs),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    assert "d_int = 2000 (threshold val_accuracy >= 0.3000 = absolute)" in (
        capsys.readouterr().out
    )
    assert [p.name for p in logs.iterdir()] == ["d002000-seed0"]  # no baseline
