"""`search(method="lora")` and `compare`: LoRA ranks beside subspace dims."""

import json

import pytest
from search_helpers import TINY, digits_arrays, must_not_run, tiny_fc

from keras_idim import compare, search
from keras_idim.dimsearch import CompareError, InProcessRunner, SearchResult

# tiny_fc is 64 -> 16 -> 10: a rank-r adapter on both layers trains
# r (64 + 16) + r (16 + 10) = 106 r numbers; everything else is frozen.
PER_RANK = 106
# A local baseline, and a learning rate that suits the adapters.
LOCAL = {**TINY, "baseline": None, "epochs": 2, "learning_rate": 0.02}


def test_lora_search_records_trainable_params(tmp_path):
    train, val = digits_arrays()
    path = tmp_path / "lora.json"
    result = search(
        tiny_fc,
        train,
        val,
        method="lora",
        dims=[1, 2, 16],
        results_path=path,
        **LOCAL,
    )
    assert result.method == "lora" and result.name.startswith("r_int")
    assert result.baseline_runs[0].trainable_params == 1210  # all of D
    for run in result.runs:
        assert run.projection == "lora"
        assert run.trainable_params == PER_RANK * run.dim
    if result.d_int is not None:
        assert result.trainable_params == PER_RANK * result.d_int
        assert f"{PER_RANK * result.d_int:,} trained parameters" in result.verdict()
    stored = json.loads(path.read_text())
    assert stored["config"]["method"] == "lora"
    assert stored["runs"][0]["trainable_params"] == PER_RANK
    # Resumes like any search: nothing trains again.
    again = search(
        tiny_fc,
        train,
        val,
        method="lora",
        dims=[1, 2, 16],
        results_path=path,
        runner=InProcessRunner(must_not_run),
        **LOCAL,
    )
    assert again.d_int == result.d_int


def test_subspace_runs_record_exactly_d():
    train, val = digits_arrays()
    result = search(tiny_fc, train, val, dims=[3, 300], **TINY)
    assert [r.trainable_params for r in result.runs] == [3, 300]
    assert result.trainable_params == 300


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "qlora"}, r"Received: `method='qlora'`"),
        ({"lora_targets": ["dense"]}, r"apply to `method='lora'` only"),
        ({"method": "lora", "lora_train": 3}, r"Received: `lora_train=3`"),
        ({"method": "lora", "dims": [17]}, r"at most 16, the largest useful LoRA"),
        ({"method": "lora", "lora_targets": ["x"]}, r"does not have: \['x'\]"),
    ],
)
def test_bad_lora_arguments(kwargs, match):
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=match):
        search(tiny_fc, train, val, **{**TINY, "dims": [1], **kwargs})


def test_compare_puts_both_methods_on_one_axis(tmp_path):
    train, val = digits_arrays()
    sub = search(tiny_fc, train, val, dims=[3, 300], name="tiny", **TINY)
    lo = search(tiny_fc, train, val, dims=[1, 16], name="tiny", method="lora", **TINY)
    sub.to_json(tmp_path / "sub" / "results.json")
    png = tmp_path / "cmp.png"
    text = compare([tmp_path / "sub", lo], path=png)
    lines = text.splitlines()
    assert "subspace" in lines[1] and "d_int50 = 300" in lines[1]
    assert lines[1].rstrip().endswith("300")
    assert "lora" in lines[2] and f"r_int50 = {lo.d_int}" in lines[2]
    assert lines[2].rstrip().endswith(f"{PER_RANK * lo.d_int:,}")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # An existing figure is refused before anything is read, unless told.
    png.write_bytes(b"drawn before")
    with pytest.raises(FileExistsError, match=r"cmp\.png.*overwrite=True"):
        compare([tmp_path / "sub", lo], path=png)
    assert png.read_bytes() == b"drawn before"
    compare([tmp_path / "sub", lo], path=png, overwrite=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_refuses_other_data_or_baseline(tmp_path):
    (x, y), (xv, yv) = digits_arrays()
    a = search(tiny_fc, (x, y), (xv, yv), dims=[300], **TINY)
    b = search(tiny_fc, (x, y), (xv[:100], yv[:100]), dims=[300], **TINY)
    with pytest.raises(CompareError, match="their validation data differ"):
        compare([a, b])
    c = search(tiny_fc, (x, y), (xv, yv), dims=[300], **{**TINY, "baseline": 0.9})
    with pytest.raises(CompareError, match="their baseline differ"):
        compare([a, c])
    with pytest.raises(ValueError, match="two or more"):
        compare([a])


def test_cli_lora_search_and_compare(tmp_path, capsys):
    from keras_idim import cli

    common = [
        "--dims",
        "1,2000",
        "--epochs",
        "1",
        "--baseline",
        "1.0",
        "--fraction",
        "0.3",
        "--quiet",
    ]
    assert cli.main(["search", *common, "--out", str(tmp_path / "s")]) == 0
    code = cli.main(
        [
            "search",
            "--method",
            "lora",
            "--dims",
            "1,200",
            "--epochs",
            "1",
            "--baseline",
            "1.0",
            "--fraction",
            "0.3",
            "--quiet",
            "--out",
            str(tmp_path / "l"),
        ]
    )
    assert code in (0, 1)
    lora_result = SearchResult.from_json(tmp_path / "l" / "results.json")
    assert lora_result.method == "lora"
    # fc on digits is 64 -> 200 -> 200 -> 10: rank 1 trains 1 (m + n) a layer.
    assert lora_result.runs[0].trainable_params == (64 + 200) + (200 + 200) + (200 + 10)
    capsys.readouterr()
    out = tmp_path / "c.png"
    assert (
        cli.main(
            ["compare", str(tmp_path / "s"), str(tmp_path / "l"), "--out", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "subspace" in printed and "lora" in printed and out.exists()
    with pytest.raises(SystemExit) as info:
        cli.main(["search", "--lora-targets", "dense", "--out", str(tmp_path / "x")])
    assert info.value.code == 2


def _result(fraction, value=1.0, kind="local"):
    from keras_idim.dimsearch import Baseline

    return SearchResult(
        d_int=None,
        fraction=fraction,
        threshold=fraction * value,
        baseline=Baseline(value, kind),
        runs=[],
        baseline_runs=[],
        config={"train_data": "t", "val_data": "v"},
    )


def test_compare_refuses_other_fractions():
    with pytest.raises(
        CompareError, match=r"their fraction differ \(0\.9 against 0\.5"
    ):
        compare([_result(0.9, 0.8), _result(0.5, 0.8)])
    # The same threshold for every search: the footer says so truthfully.
    text = compare([_result(0.9, 0.8), _result(0.9, 0.8)])
    assert text.splitlines()[-1].endswith(
        "= 0.9 x local baseline 0.8000 (every search)"
    )
