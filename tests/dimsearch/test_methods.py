"""The method as a type: `Subspace` and `LoRA` (keras_idim.dimsearch.methods)."""

import argparse
import re

import keras
import pytest
from search_helpers import TINY, digits_arrays, tiny_fc

from keras_idim import lora, search, spaces
from keras_idim.cli.commands import search_method, search_start_dim
from keras_idim.dimsearch import InProcessRunner, RunRecord, methods
from keras_idim.dimsearch.driver import RunError
from keras_idim.dimsearch.runner import Recipe, run_kind
from keras_idim.dimsearch.search_config import SearchConfig


def dense_7_5() -> keras.Model:
    """One Dense(7 -> 5): D = 7 * 5 + 5 = 40; a rank-r adapter trains
    r (7 + 5) = 12 r numbers."""
    return keras.Sequential([keras.Input((7,)), keras.layers.Dense(5, name="dense")])


def test_each_method_names_its_integer():
    subspace, rank = methods.Subspace("sparse"), methods.LoRA()
    assert (subspace.name, subspace.symbol) == ("subspace", "d")
    assert (rank.name, rank.symbol) == ("lora", "r")
    assert subspace.description == "subspace dimension d"
    assert rank.description == "LoRA rank r"
    # What a run's record stores in `projection` (the format is unchanged).
    assert subspace.label == "sparse" and rank.label == "lora"
    assert subspace.title == "Intrinsic dimension (sparse projection)"
    assert rank.title == "Intrinsic rank (LoRA)"
    assert subspace.summary == "sparse subspace of weights"
    assert methods.Subspace("dense", True, "lora:2").summary == (
        "dense (SAID) subspace of lora:2"
    )
    assert rank.summary == "lora rank"
    assert methods.Subspace("dense", structure_aware=True).tag == "dense-said"
    assert rank.tag == "lora"
    assert subspace.keeps_theta and not rank.keeps_theta


def test_subspace_wrap_trains_exactly_k_numbers():
    model = methods.Subspace("dense").wrap(dense_7_5(), 3, seed=0)
    assert lora.trainable_count(model) == 3
    assert model.full_dim == 40


def test_lora_wrap_puts_rank_k_adapters_on():
    model = methods.LoRA().wrap(dense_7_5(), 2)
    assert lora.trainable_count(model) == 2 * (7 + 5)
    layer = model.get_layer("dense")
    assert layer.lora_enabled and layer.lora_rank == 2
    # A layer that also trains fully adds its own weights.
    model = methods.LoRA(train=["dense"]).wrap(dense_7_5(), 1)
    assert lora.trainable_count(model) == 1 * (7 + 5) + 40


def test_max_k_is_d_or_the_largest_useful_rank():
    assert methods.Subspace().max_k(dense_7_5()) == 40
    assert methods.Subspace().measure(dense_7_5()) == (40, 2)  # kernel, bias
    assert methods.Subspace(space="lora:2").max_k(dense_7_5()) == 2 * (7 + 5)
    # What the search took for LoRA: lora.max_rank, min(m, n) of each kernel.
    assert methods.LoRA().max_k(dense_7_5()) == lora.max_rank(dense_7_5()) == 5
    assert methods.LoRA().max_k(tiny_fc()) == 16  # 64 -> 16 -> 10
    assert methods.LoRA(targets=["dense"]).measure(dense_7_5()) == (5, None)


def test_check_dims_refuses_k_above_max_k():
    with pytest.raises(ValueError, match="at most 5, the largest useful LoRA rank"):
        methods.LoRA().check_dims([6], 1, None, (5, None))
    with pytest.raises(ValueError, match="at most D=40, the model's number"):
        methods.Subspace().check_dims([41], 10, None, (40, 2))
    assert methods.Subspace().check_dims([3], 10, None, (40, 2)) == 1
    assert methods.Subspace(structure_aware=True).check_dims([3], 10, None, (40, 2))
    with pytest.raises(ValueError, match="exceed the number of trainable weight"):
        methods.Subspace(structure_aware=True).check_dims([2], 10, None, (40, 2))


def test_get_builds_the_method_from_searchs_arguments():
    got = methods.get(
        "subspace", projection="dense", structure_aware=True, said_learning_rate=0.1
    )
    assert got == methods.Subspace("dense", True, None, 0.1)
    got = methods.get("lora", projection="dense", lora_targets=("a",), lora_train=None)
    assert got == methods.LoRA(["a"], None)


@pytest.mark.parametrize(
    "name, settings, match",
    [
        ("qlora", {}, "`method` should be 'subspace' or 'lora'. Received: "
         "`method='qlora'`"),
        (None, {}, "Received: `method=None`"),
        (["lora"], {}, r"Received: `method=\['lora'\]`"),
        ("lora", {"lora_train": 3}, "`lora_train` should be None.*"
         "Received: `lora_train=3`"),
        ("lora", {"lora_targets": "dense"}, "Received: `lora_targets='dense'`"),
        ("subspace", {"lora_targets": ["dense"]}, "apply to `method='lora'` only. "
         "Received: `method='subspace'`"),
        ("lora", {"space": "lora:2"}, r"`space` is the parameter set.*"
         r"Received: `space='lora:2'`, `method='lora'`"),
    ],
)  # fmt: skip
def test_get_errors_name_the_argument(name, settings, match):
    with pytest.raises(ValueError, match=match):
        methods.get(name, **settings)


def test_of_config_reads_a_stored_configuration():
    assert methods.of_config({"method": "lora", "lora_targets": ["a"]}) == (
        methods.LoRA(["a"])
    )
    # A file from before `method` was stored is a subspace search.
    old = methods.of_config({"projection": "fastfood", "structure_aware": False})
    assert isinstance(old, methods.Subspace) and old.label == "fastfood"
    with pytest.raises(ValueError, match="Received: `method='qlora'`"):
        methods.of_config({"method": "qlora"})


def test_search_config_holds_the_method_and_stores_its_name():
    train, val = digits_arrays()
    config = SearchConfig.from_arguments(
        tiny_fc, train, val, method="lora", lora_targets=["dense"]
    )
    assert config.method == methods.LoRA(["dense"])
    description = config.description()
    assert description["method"] == "lora"
    assert description["lora_targets"] == ["dense"]
    assert config.recipe().method is config.method
    assert methods.of_config(description) == config.method
    config = SearchConfig.from_arguments(tiny_fc, train, val, projection="dense")
    assert config.method == methods.Subspace("dense", False, config.space)
    assert config.description()["method"] == "subspace"


def test_a_recipe_turns_a_method_name_into_a_method():
    recipe = Recipe(
        None, None, None, 1, 1, "mse", "val_accuracy", "dense", False, None, None
    )
    assert recipe.method == methods.Subspace("dense", False, spaces.Weights())
    assert run_kind(recipe) == "dense"
    recipe = Recipe(
        None, None, None, 1, 1, "mse", "val_accuracy", "dense", False, None, None,
        method="lora", lora_targets=["x"],
    )  # fmt: skip
    assert recipe.method == methods.LoRA(["x"]) and run_kind(recipe) == "lora"


def test_the_command_lines_method():
    args = argparse.Namespace(
        method="subspace", projection="sparse", said=True, start_dim=None
    )
    assert search_method(args).tag == "sparse-said"
    assert search_start_dim(args) == 10
    args.method = "lora"
    assert search_method(args).tag == "lora" and search_start_dim(args) == 1
    assert not search_method(args).has_said


def fake_run(recipe, dim, seed, threshold):
    # Passes from k = 4 on; the record names the method's label.
    metric = 0.9 if dim is None or dim >= 4 else 0.1
    return RunRecord(dim, seed, run_kind(recipe), metric, 1, False, 0.0, "ok")


def test_a_lora_search_prints_r_not_d(capsys):
    train, val = digits_arrays()
    result = search(
        tiny_fc,
        train,
        val,
        method="lora",
        runner=InProcessRunner(fake_run),
        **dict(TINY, dims="auto", start_dim=1, verbose=1),
    )
    assert result.d_int == 4 and result.name == "r_int50"
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if line.startswith("progress:")]
    assert progress and all(
        re.search(r"\br (>|<=|in) ", line) for line in progress if "open" in line
    )
    assert re.search(r"^r +1  seed 0  val_accuracy 0.1000", out, re.M)
    assert not re.search(r"^d +\d", out, re.M)
    assert not re.search(r"\bd (>|<=|in) ", out)
    assert not re.search(r"\bd_int", out)
    assert result.summary().split("\n")[0].split()[0] == "r"


def test_a_failed_first_lora_run_names_its_rank():
    def failing(recipe, dim, seed, threshold):
        return RunRecord.error(dim, seed, run_kind(recipe), 0.0, "ValueError: no")

    train, val = digits_arrays()
    with pytest.raises(RunError, match=r"The first lora run \(r=1, seed 0\) failed"):
        search(
            tiny_fc,
            train,
            val,
            method="lora",
            runner=InProcessRunner(failing),
            **dict(TINY, dims=[1, 2]),
        )
