"""`search(baseline=other)`: a LoRA search reuses a subspace search's local
baseline instead of a second full training."""

import json

import pytest
from search_helpers import TINY, digits_arrays, must_not_run, tiny_fc

from keras_idim import compare, search
from keras_idim.dimsearch import InProcessRunner, SearchResult
from keras_idim.dimsearch.runner import train_run

LOCAL = {**TINY, "baseline": None, "epochs": 2, "learning_rate": 0.02}
# The same recipe, for a search given its baseline.
RECIPE = {k: v for k, v in LOCAL.items() if k != "baseline"}


def no_baseline(recipe, dim, seed, threshold):
    """Trains subspace or LoRA runs; a baseline run is a failure here."""
    assert dim is not None, "the baseline trained again"
    return train_run(recipe, dim, seed, threshold)


@pytest.fixture(scope="module")
def subspace(tmp_path_factory):
    train, val = digits_arrays()
    out = tmp_path_factory.mktemp("sub")
    result = search(
        tiny_fc, train, val, dims=[300], results_path=out / "results.json", **LOCAL
    )
    return out, result


def test_lora_search_reuses_the_subspace_baseline(subspace, tmp_path):
    out, sub = subspace
    train, val = digits_arrays()
    path = tmp_path / "lora.json"
    lora = search(
        tiny_fc,
        train,
        val,
        method="lora",
        dims=[1, 16],
        baseline=out,
        results_path=path,
        runner=InProcessRunner(no_baseline),
        **RECIPE,
    )
    assert lora.baseline == sub.baseline and lora.baseline.kind == "local"
    assert [r.to_dict() for r in lora.baseline_runs] == [
        r.to_dict() for r in sub.baseline_runs
    ]
    assert lora.threshold == sub.threshold
    stored = json.loads(path.read_text())
    assert stored["baseline_from"]["path"] == str(out)
    assert (
        stored["baseline_from"]["config_hash"]
        == json.loads((out / "results.json").read_text())["config_hash"]
    )
    assert SearchResult.from_json(path).baseline_from == stored["baseline_from"]
    compare([sub, lora])  # comparable: one baseline, one threshold
    # Resumes like any search (the same source), nothing trains again.
    again = search(
        tiny_fc,
        train,
        val,
        method="lora",
        dims=[1, 16],
        baseline=out / "results.json",
        results_path=path,
        runner=InProcessRunner(must_not_run),
        **RECIPE,
    )
    assert again.d_int == lora.d_int


def test_an_in_memory_result_can_be_reused(subspace):
    _, sub = subspace
    train, val = digits_arrays()
    got = search(
        tiny_fc,
        train,
        val,
        method="lora",
        dims=[16],
        baseline=sub,
        runner=InProcessRunner(no_baseline),
        **RECIPE,
    )
    assert got.baseline == sub.baseline
    assert got.baseline_from["path"] is None


@pytest.mark.parametrize(
    "change, match",
    [
        ({"epochs": 3}, r"their epochs differ \(3 against 2\)"),
        ({"baseline_learning_rate": 0.5}, r"their baseline optimizer differ"),
        ({"seeds": (0, 1)}, r"their seeds differ \(\[0, 1\] against \[0\]\)"),
        ({"monitor": "val_loss"}, r"their monitored metric differ"),
        ({"threshold": 0.5}, r"not both"),
    ],
)
def test_another_recipe_is_refused_naming_it(subspace, change, match):
    out, _ = subspace
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=match) as e:
        search(
            tiny_fc,
            train,
            val,
            dims=[16],
            baseline=out,
            runner=InProcessRunner(must_not_run),
            **{**RECIPE, **change},
        )
    assert "\n" not in str(e.value)


def test_other_data_or_no_local_baseline_is_refused(subspace, tmp_path):
    out, _ = subspace
    (x, y), (xv, yv) = digits_arrays()
    with pytest.raises(ValueError, match=r"their validation data differ"):
        search(tiny_fc, (x, y), (xv[:100], yv[:100]), dims=[16], baseline=out, **RECIPE)
    glob = search(tiny_fc, (x, y), (xv, yv), dims=[300], **TINY)
    with pytest.raises(ValueError, match=r"it trained none \(its baseline is global"):
        search(tiny_fc, (x, y), (xv, yv), dims=[16], baseline=glob, **RECIPE)
    with pytest.raises(FileNotFoundError):
        search(tiny_fc, (x, y), (xv, yv), dims=[16], baseline=tmp_path, **RECIPE)


def test_cli_baseline_from(tmp_path, capsys):
    from keras_idim import cli

    common = ["--epochs", "1", "--fraction", "0.3", "--quiet"]
    sub = tmp_path / "s"
    assert cli.main(["search", *common, "--dims", "2000", "--out", str(sub)]) == 0
    lo = tmp_path / "l"
    argv = ["search", *common, "--method", "lora", "--dims", "1,16"]
    assert cli.main([*argv, "--baseline-from", str(sub), "--out", str(lo)]) in (0, 1)
    stored = json.loads((lo / "results.json").read_text())
    before = json.loads((sub / "results.json").read_text())
    assert stored["baseline_from"]["path"] == str(sub)
    assert stored["baseline"] == before["baseline"]
    assert stored["baseline_runs"] == before["baseline_runs"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main([*argv, "--baseline-from", str(sub), "--baseline", "1.0"])
    assert e.value.code == 2
    assert "--baseline-from: not with --baseline" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(
            [*argv, "--baseline-from", str(sub), "--epochs", "2", "--out", f"{lo}2"]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "their epochs differ (2 against 1)" in err
