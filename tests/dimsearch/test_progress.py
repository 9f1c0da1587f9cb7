"""Progress while a search runs: a line after each run, epochs with verbose=2."""

import re

import pytest
from search_helpers import TINY, TINY_RAY, digits_arrays, tiny_fc

from keras_idim import search
from keras_idim.dimsearch import Baseline, InProcessRunner, RunRecord, SearchResult
from keras_idim.dimsearch.driver import Driver, open_range
from keras_idim.dimsearch.runner import Recipe
from keras_idim.dimsearch.strategy import make_strategy, most_dims_left


def fake_run(recipe, dim, seed, threshold):
    # Passes from d = 100 on.
    metric = 0.9 if dim is None or dim >= 100 else 0.1
    return RunRecord(dim, seed, "fastfood", metric, 1, False, 0.0, "ok")


def test_a_progress_line_follows_each_run_line(capsys):
    train, val = digits_arrays()
    search(
        tiny_fc,
        train,
        val,
        runner=InProcessRunner(fake_run),
        **dict(TINY_RAY, start_dim=10, baseline=None, verbose=1),
    )
    lines = capsys.readouterr().out.splitlines()
    runs = [
        i for i, line in enumerate(lines) if re.match(r"(baseline |d +\d+)  seed", line)
    ]
    assert len(runs) > 3
    for count, i in enumerate(runs, start=1):
        assert lines[i + 1].startswith(f"progress: {count} runs done; ")
    # The baseline first; then the open range as the strategy narrows it.
    assert "baseline training" in lines[runs[0] + 1]
    assert "d > 10 open (none passed yet)" in lines[runs[1] + 1]
    assert "d in (80, 160] open" in lines[runs[5] + 1]
    # A bound on the runs left, and the time at most: the auto search's
    # worst case from d = 10 to D = 1210 is 11 values of d.
    assert re.search(r"at most 11 runs left, about \d+s at most", lines[runs[0] + 1])
    assert lines[runs[-1] + 1].endswith("no runs left")


def test_resumed_runs_are_counted_apart(tmp_path, capsys):
    train, val = digits_arrays()
    kwargs = dict(TINY_RAY, baseline=None, verbose=1, results_path=tmp_path / "r.json")
    ran = []

    def two_then_stop(recipe, dim, seed, threshold):
        if len(ran) == 2:
            raise KeyboardInterrupt
        ran.append(dim)
        return fake_run(recipe, dim, seed, threshold)

    with pytest.raises(KeyboardInterrupt):
        search(tiny_fc, train, val, runner=InProcessRunner(two_then_stop), **kwargs)
    capsys.readouterr()
    search(tiny_fc, train, val, runner=InProcessRunner(fake_run), **kwargs)
    lines = capsys.readouterr().out.splitlines()
    progress = [line for line in lines if line.startswith("progress:")]
    assert progress[0].startswith("progress: 1 runs done (and 2 resumed); d > 2 open")


def test_no_time_estimate_without_a_bound():
    lines = []

    def endless(outcomes):  # no bound on the values of d it may try
        return None if any(outcomes.values()) else len(outcomes) + 1

    recipe = Recipe(
        None, None, None, 1, 1, "mse", "val_accuracy", "dense", False, None, None
    )
    result = SearchResult(
        d_int=None,
        fraction=0.5,
        threshold=None,
        baseline=Baseline(1.0, "global"),
        runs=[],
        config={"seeds": [0]},
    )
    driver = Driver(
        recipe,
        endless,
        InProcessRunner(
            lambda r, d, s, t: RunRecord(d, s, "dense", 0.3 * d, 1, False, 0.0, "ok")
        ),
        result,
        say=lines.append,
    )
    assert most_dims_left(endless, {}) is None
    driver.run()
    progress = [line for line in lines if line.startswith("progress:")]
    assert progress[0] == "progress: 1 runs done; d > 1 open (none passed yet)"
    assert progress[1] == "progress: 2 runs done; d in (1, 2] open; no runs left"


def test_most_dims_left_is_a_bound_or_none():
    step = make_strategy("auto", start=10, max_dim=1000)
    assert most_dims_left(step, {10: False, 20: True}) == 4
    assert most_dims_left(step, {10: False, 20: True}, budget=3) is None
    assert most_dims_left(make_strategy([5, 50]), {5: False, 50: True}) == 0
    assert open_range({}) == "no d tried yet"
    assert open_range({10: True}, "r") == "r <= 10 open (none failed below it yet)"


@pytest.mark.parametrize("verbose, epochs_shown", [(1, False), (2, True)])
def test_verbose_2_shows_each_runs_epochs(capsys, verbose, epochs_shown):
    train, val = digits_arrays()
    search(
        tiny_fc,
        train,
        val,
        dims=[300],
        **{**TINY, "baseline": None, "epochs": 1, "verbose": verbose},
    )
    out = capsys.readouterr().out
    # Keras' epoch line, for the baseline and for d = 300.
    epoch_lines = re.findall(r"^\d+/\d+ - .*/step - .*val_accuracy: ", out, re.M)
    assert len(epoch_lines) == (2 if epochs_shown else 0)


def test_bad_verbose_is_refused():
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=r"Received: `verbose=3`"):
        search(tiny_fc, train, val, dims=[300], **{**TINY, "verbose": 3})


def test_cli_verbose_shows_epochs_and_not_with_quiet(tmp_path, capsys):
    from keras_idim import cli

    args = ["search", "--dims", "2000", "--epochs", "1", "--baseline", "1.0"]
    args += ["--fraction", "0.3", "--out", str(tmp_path / "s")]
    assert cli.main([*args, "-v"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"/step - .*val_accuracy: ", out)
    assert "progress: 1 runs done" in out
    with pytest.raises(SystemExit) as e:
        cli.main([*args, "--quiet", "--verbose"])
    assert e.value.code == 2
    assert "not with --quiet" in capsys.readouterr().err
