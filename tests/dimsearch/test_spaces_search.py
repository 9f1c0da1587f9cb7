"""`search(space=)`, `--space` and `compare` over parameterisations."""

import json

import numpy as np
import pytest
from search_helpers import TINY, digits_arrays, tiny_fc

from keras_idim import compare, search, spaces
from keras_idim.dimsearch import SearchResult
from keras_idim.dimsearch.comparison import BYTES_PER_NUMBER

# tiny_fc is 64 -> 16 -> 10: rank-2 adapters on both Dense layers hold
# 2 (64 + 16) + 2 (16 + 10) = 212 numbers, the LoRA space's D.
LORA2_D = 2 * (64 + 16) + 2 * (16 + 10)
# Its biases: 16 + 10.
BIASES_D = 16 + 10


def test_a_search_in_the_lora_space_records_it_in_every_run(tmp_path):
    train, val = digits_arrays()
    path = tmp_path / "r.json"
    result = search(
        tiny_fc, train, val, space="lora:2", dims=[3, 200], results_path=path, **TINY
    )
    for run in result.runs:
        assert (run.space, run.space_dim) == ("lora:2", LORA2_D)
        assert run.trainable_params == run.dim
    stored = json.loads(path.read_text())
    assert stored["config"]["space"] == "lora:2"
    assert stored["runs"][0]["space"] == "lora:2"
    assert stored["runs"][0]["space_dim"] == LORA2_D
    # The same search resumes from its file without training.
    again = search(
        tiny_fc, train, val, space="lora:2", dims=[3, 200], results_path=path, **TINY
    )
    assert [r.seconds for r in again.runs] == [r.seconds for r in result.runs]
    # Another space is another configuration: refused, naming the key.
    with pytest.raises(ValueError, match=r"differing in: space"):
        search(
            tiny_fc,
            train,
            val,
            space="lora:3",
            dims=[3, 200],
            results_path=path,
            **TINY,
        )


def test_the_model_a_lora_space_run_found_is_rebuilt(tmp_path):
    train, val = digits_arrays()
    path = tmp_path / "r.json"
    result = search(
        tiny_fc, train, val, space="lora:2", dims=[50], results_path=path, **TINY
    )
    model = SearchResult.from_json(path).model(tiny_fc, d=50, seed=0)
    assert model.space == spaces.get("lora:2") and model.full_dim == LORA2_D
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x_val, y_val = val
    _, accuracy = model.evaluate(x_val, y_val, verbose=0)
    np.testing.assert_allclose(accuracy, result.runs[0].metric, atol=1e-6)


def test_the_largest_d_is_the_space_size():
    train, val = digits_arrays()
    space = spaces.Weights(include=["*bias*"])
    with pytest.raises(ValueError, match=rf"{BIASES_D}"):
        search(tiny_fc, train, val, space=space, dims=[BIASES_D + 1], **TINY)
    result = search(tiny_fc, train, val, space=space, dims=[BIASES_D], **TINY)
    assert result.runs[0].space_dim == BIASES_D
    assert result.runs[0].space == "weights[include=*bias*]"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"space": "lora:0"}, "rank"),
        ({"space": "bias"}, "space"),
        ({"space": "lora:2", "method": "lora"}, r"space='lora:2'.*method='lora'"),
    ],
)
def test_bad_spaces_are_refused_naming_the_argument(kwargs, match):
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=match):
        search(tiny_fc, train, val, **{**TINY, "dims": [3], **kwargs})


def test_compare_puts_three_parameterisations_on_one_axis(tmp_path):
    train, val = digits_arrays()
    weights = search(tiny_fc, train, val, dims=[3, 300], name="tiny", **TINY)
    lora2 = search(
        tiny_fc, train, val, space="lora:2", dims=[3, 200], name="tiny", **TINY
    )
    rank = search(tiny_fc, train, val, method="lora", dims=[1, 8], name="tiny", **TINY)
    text = compare([weights, lora2, rank], path=tmp_path / "c.png")
    lines = text.splitlines()
    assert "fastfood subspace of weights" in lines[1]
    assert "fastfood subspace of lora:2" in lines[2]
    assert "lora rank" in lines[3]
    for line, result in zip(lines[1:4], (weights, lora2, rank)):
        if result.d_int is None:
            continue
        n = result.trainable_params
        assert line.split()[-2:] == [f"{BYTES_PER_NUMBER * n:,}", f"{n:,}"]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_space_flag(tmp_path, capsys):
    from keras_idim import cli

    args = ["search", "--dims", "5", "--epochs", "1", "--lr", "0.03"]
    args += ["--baseline", "1.0", "--fraction", "0.3", "--quiet"]
    code = cli.main([*args, "--space", "lora:2", "--out", str(tmp_path / "s")])
    assert code in (0, 1)
    result = SearchResult.from_json(tmp_path / "s" / "results.json")
    # fc on digits is 64 -> 200 -> 200 -> 10.
    assert result.runs[0].space_dim == 2 * ((64 + 200) + (200 + 200) + (200 + 10))
    with pytest.raises(SystemExit) as info:
        cli.main([*args, "--space", "lora:0", "--out", str(tmp_path / "x")])
    assert info.value.code == 2
    assert "lora:RANK" in capsys.readouterr().err
