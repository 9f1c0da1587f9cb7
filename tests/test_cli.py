"""The `keras-idim` command line."""

import json
import os
import signal
import subprocess
import sys
import time

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
    assert proc.stdout.count("d_int50 = ") == 1  # the verdict, said once
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


def test_cli_offers_every_projection_kind():
    from keras_idim import projections

    for command in (["search"], ["train", "--dim", "10"]):
        for kind in projections.ALL:
            args = cli.build_parser().parse_args([*command, "--projection", kind])
            assert args.projection == kind


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


# -- misuse refused up front (each of these trained, crashed or hung before) --


def run_cli(*argv, cwd=None, timeout=300):
    """The CLI in a child process: exit status, stdout, stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "keras_idim.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize(
    "argv, match",
    [
        (["train", "--dim", "5", "--lr", "inf"], "--lr: should be a finite positive"),
        (["train", "--dim", "5", "--save", "m.h5"], "--save: should be a PATH.keras"),
        (["search", "--dims", "-5,10"], "--dims: should be 'auto' or positive"),
        (["search", "--start-dim", "100", "--max-dim", "50"], "--max-dim: should be"),
        (["search", "--lr", "nan"], "--lr: should be a finite positive"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, match, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("keras-idim ")


def test_usage_errors_that_span_options_come_before_tensorflow_loads():
    """Each answered by argparse's checks alone: TensorFlow (5-15 s to
    load) is never imported, in a child process that starts without it."""
    cases = [
        (["search", "--dims", ""], "argument --dims: should be 'auto' or positive"),
        (["search", "--dims", ","], "argument --dims: should be 'auto' or positive"),
        (
            ["search", "--threshold", "0.5", "--baseline", "0.9"],
            "--threshold: not with --baseline (an absolute threshold needs no "
            "baseline): --threshold 0.5 --baseline 0.9",
        ),
        (
            ["export", "--no-base", "x.keras"],
            "--no-base: applies to --format compact only (received --format "
            "saved_model)",
        ),
        (["train", "--dim", "5", "--no-base"], "--no-base: applies to --format"),
    ]
    code = (
        "import contextlib, io, json, sys\n"
        "from keras_idim.cli import main\n"
        "out = []\n"
        f"for argv in {[argv for argv, _ in cases]!r}:\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as e:\n"
        "            tf = 'tensorflow' in sys.modules\n"
        "            out.append([e.code, err.getvalue(), tf])\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(cases)
    for (argv, match), (status, err, loaded) in zip(cases, results):
        assert status == 2 and match in err, (argv, err)
        assert not loaded, argv


def test_train_checks_save_and_export_targets_before_training(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--dim", "5", "--export", str(tmp_path / "taken")])
    assert info.value.code == 1  # as when an export finds its target taken
    assert "already exists" in capsys.readouterr().err
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions
        pytest.skip("running as root: permissions are not enforced")
    with pytest.raises(SystemExit):
        cli.main(["train", "--dim", "5", "--save", str(locked / "m.keras")])
    assert "cannot be written" in capsys.readouterr().err


def test_train_save_refuses_an_existing_file_unless_overwrite(tmp_path, capsys):
    saved = tmp_path / "m.keras"
    saved.write_text("trained before")
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--dim", "5", "--save", str(saved)])
    assert info.value.code == 1  # as an export that finds its target taken
    err = capsys.readouterr().err
    assert f"`--save` {str(saved)!r} already exists. Pass --overwrite" in err
    assert saved.read_text() == "trained before"


def test_lora_with_said_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["search", "--method", "lora", "--said"])
    assert info.value.code == 2
    assert "argument --said: not with --method lora" in capsys.readouterr().err


def test_lora_options_without_method_lora_are_the_librarys_usage_error(
    tmp_path, capsys
):
    with pytest.raises(SystemExit) as info:
        cli.main(["search", "--lora-targets", "dense", "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("keras-idim search: error: ")
    assert "`lora_targets` and `lora_train` apply to `method='lora'` only" in err[-1]
    assert not (tmp_path / "o" / "results.json").exists()


def test_train_with_a_metric_that_does_not_fit_says_so_in_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(
            ["train", "--dim", "5", "--epochs", "1", "--metric", "MeanAbsoluteError"]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    # The labels (32,) against the 10 class probabilities (32, 10).
    assert "training failed: InvalidArgumentError: Incompatible shapes" in err
    assert "--metric (MeanAbsoluteError)" in err


def test_train_refuses_dim_above_D_and_a_saved_subspace_model(tmp_path):
    code, out, err = run_cli("train", "--dim", "100000000", "--epochs", "1")
    assert code == 2 and "`dim` should be at most D=55,210" in err
    assert "epoch" not in out.lower()  # refused before training
    saved = tmp_path / "sub.keras"
    code, _, err = run_cli("train", "--dim", "5", "--epochs", "1", "--save", str(saved))
    assert code == 0 and saved.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".keras_idim")]
    code, out, err = run_cli("train", "--dim", "5", "--model", str(saved))
    assert code == 2 and "already a SubspaceModel" in err and "base_model" in err


def test_search_out_checked_before_the_baseline(tmp_path, capsys):
    taken = tmp_path / "file"
    taken.write_text("not a folder")
    with pytest.raises(SystemExit) as info:
        cli.main(["search", "--out", str(taken)])
    assert info.value.code == 2
    assert "exists and is a file" in capsys.readouterr().err


def test_a_keras_file_that_is_not_a_model_says_so(tmp_path, capsys):
    bad = tmp_path / "broken.keras"
    bad.write_text("garbage")
    with pytest.raises(SystemExit) as info:
        cli.main(["search", "--model", str(bad), "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "is not a saved Keras model" in err and "not found" not in err


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    out = tmp_path / "out"
    child = subprocess.Popen(
        [sys.executable, "-m", "keras_idim.cli", "search", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        # Ctrl-C as a terminal gives it: a child inherits an ignored
        # SIGINT (pytest started with `&` by a shell without job control).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 240
        results = out / "results.json"
        while time.monotonic() < deadline and child.poll() is None:
            if results.exists() and json.loads(results.read_text())["runs"]:
                break
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("interrupted: ") and "run the same command" in lines[-1]
    assert "Traceback" not in err
    saved = json.loads((out / "results.json").read_text())
    count = sum(len(saved[k]) for k in ("baseline_runs", "runs", "speculative_runs"))
    assert f"interrupted: {count} runs saved in {out / 'results.json'}" in lines[-1]


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_train_seed_out_of_range_is_a_usage_error(seed, capsys):
    # Before: accepted by argparse, refused by SubspaceModel after the data
    # and TensorFlow had loaded.
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--dim", "5", "--seed", seed])
    assert info.value.code == 2
    assert "--seed: should be in [0, 2**32)" in capsys.readouterr().err


def test_version_comes_from_one_source(capsys):
    import keras_idim
    from keras_idim.version import __version__

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"keras-idim {__version__}"
    assert keras_idim.__version__ == __version__


def test_tensorflow_start_up_lines_are_kept_off_the_output():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-m", "keras_idim.cli", "doctor"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.stdout.startswith("keras-idim ")
    # TensorFlow's C++ lines (I0000 ..., E0000 ... cuInit, absl's notice).
    noise = [
        line
        for line in proc.stderr.splitlines()
        if line[:5] in ("I0000", "W0000", "E0000") or "absl::InitializeLog" in line
    ]
    assert noise == []


def test_a_failed_start_shows_what_was_held():
    code = (
        "import os, sys\n"
        "from keras_idim.cli.quiet import held_stderr\n"
        "with held_stderr():\n"
        "    os.write(2, b'dropped\\n')\n"
        "try:\n"
        "    with held_stderr():\n"
        "        os.write(2, b'kept: why it failed\\n')\n"
        "        raise ImportError('no')\n"
        "except ImportError:\n"
        "    pass\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stderr == "kept: why it failed\n"


def test_cli_search_refuses_another_search_in_out_unless_overwrite(tmp_path, capsys):
    argv = ["search", "--dims", "1", "--baseline", "1.0", "--fraction", "1"]
    argv += ["--out", str(tmp_path), "--quiet"]
    assert cli.main([*argv, "--epochs", "1"]) == 1
    old = (tmp_path / "results.json").read_text()
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, "--epochs", "2"])
    assert info.value.code == 2
    assert "another configuration (differing in: epochs)" in capsys.readouterr().err
    assert (tmp_path / "results.json").read_text() == old
    assert cli.main([*argv, "--epochs", "2", "--overwrite"]) == 1
    assert (tmp_path / "results.json.bak").read_text() == old
    assert json.loads((tmp_path / "results.json").read_text())["config"]["epochs"] == 2
