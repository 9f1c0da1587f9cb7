import importlib.util
import sys
from pathlib import Path

import pytest
import tensorflow_datasets as tfds

pytestmark = pytest.mark.usefixtures("tempfiles_in_tmp_path")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def load(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # examples import paper_search

    def load(name):
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    yield load
    sys.modules.pop("paper_search", None)


def test_digits_subspace_example_runs(load):
    results = load("digits_subspace").main(dim=50, epochs=1, projections=("fastfood",))
    assert set(results) == {"full (D = 55,210)", "fastfood (d = 50)"}
    assert all(0.0 <= a <= 1.0 for a in results.values())


@pytest.mark.parametrize(
    "example, dataset, model",
    [
        ("mnist_fc_search", "mnist", "fc"),
        ("mnist_lenet_search", "mnist", "lenet"),
        ("cifar10_lenet_search", "cifar10", "lenet"),
    ],
)
def test_paper_examples_on_mock_tfds(load, tmp_path, example, dataset, model):
    module = load(example)
    assert (module.DATASET, module.MODEL) == (dataset, model)
    with tfds.testing.mock_data(num_examples=64):
        result = module.main(
            dims=[2, 4],
            epochs=1,
            batch_size=32,
            fraction=0.01,
            out=str(tmp_path),
            verbose=0,
        )
    assert result.config["name"] == f"{model} on tfds:{dataset}"
    assert result.baseline.kind == "local"
    assert [r.dim for r in result.runs] == [2]  # 0.01 x baseline: d = 2 passes
    assert result.d_int == 2
    for name in ("results.json", "results.csv", "curve.png"):
        assert (tmp_path / name).stat().st_size > 0
    # The network is the paper's (its parameter count is checked in
    # test_models), and the subspace run trained it through the projection.
    assert result.runs[0].projection == "fastfood"


def test_fine_tuning_said_example(load, tmp_path, capsys):
    results = load("fine_tuning_said").main(
        epochs=1,
        pretrain_epochs=1,
        dims=[12, 40],
        hidden=(16,),
        out=str(tmp_path),
        verbose=0,
    )
    assert "one seed each: these answers move with the seed" in capsys.readouterr().out
    assert list(results) == ["from scratch", "fine-tuning", "fine-tuning, SAID"]
    said = results["fine-tuning, SAID"]
    assert said.config["structure_aware"] is True
    assert all(r.status == "ok" for r in said.runs)
    assert (tmp_path / "fine_tuning_SAID" / "results.json").exists()


def test_regression_example_minimises_val_mae(load, tmp_path):
    result = load("regression_search").main(
        dims=[1, 2000], epochs=5, out=str(tmp_path), verbose=0
    )
    assert result.mode == "min" and result.monitor == "val_mae"
    assert result.threshold == pytest.approx(result.baseline.value / 0.9)
    assert result.runs[0].metric > result.threshold  # d = 1 cannot
    assert result.d_int == 2000
    for name in ("results.json", "results.csv", "curve.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_lora_vs_subspace_example_runs_shrunk(load, tmp_path):
    got = load("lora_vs_subspace").main(
        out=str(tmp_path),
        epochs=1,
        subspace_dims=[2, 2000],
        lora_ranks=[1, 200],
        verbose=0,
    )
    assert got["subspace"].method == "subspace" and got["lora"].method == "lora"
    lines = got["table"].splitlines()
    assert "subspace" in lines[1] and "lora" in lines[2]
    assert (tmp_path / "compare.png").stat().st_size > 0
    for method in ("subspace", "lora"):
        assert got["seconds"][method] > 0
        if got[method].d_int is not None:
            assert got["compact_bytes"][method] > 0


def test_said_glue_example_runs_offline_on_a_tiny_backbone(load, tmp_path, capsys):
    pytest.importorskip("keras_hub")  # the [hub] extra, part of [dev]
    said_glue = load("said_glue")
    with tfds.testing.mock_data(num_examples=32):
        x, y = next(
            iter(
                said_glue.glue_dataset(
                    "mrpc",
                    "train",
                    preset="tiny-random",
                    batch_size=8,
                    sequence_length=16,
                    shuffle=True,
                )
            )
        )
        # Token ids, tokenised in the pipeline: [CLS] first, a [SEP] per text.
        assert set(x) == {"token_ids", "padding_mask", "segment_ids"}
        assert x["token_ids"].shape == (8, 16) and y.shape == (8,)
        assert (x["token_ids"][:, 0].numpy() == 2).all()
        assert ((x["token_ids"].numpy() == 3).sum(axis=1) >= 1).all()
        result = said_glue.main(
            preset="tiny-random",
            dims=[60],
            epochs=1,
            batch_size=16,
            sequence_length=16,
            out=str(tmp_path),
        )
    assert result.config["structure_aware"] is True
    assert result.config["projection"] == "fastfood"
    assert [r.dim for r in result.runs] == [60]
    assert all(r.status == "ok" for r in result.runs)
    assert result.baseline[1] == "local"
    assert (tmp_path / "results.json").exists() and (tmp_path / "curve.png").exists()
    assert "majority-class accuracy on validation" in capsys.readouterr().out


def test_lora_vs_subspace_example_on_the_hub_classifier_offline(load, tmp_path):
    pytest.importorskip("keras_hub")  # the [hub] extra, part of [dev]
    example = load("lora_vs_subspace")
    with tfds.testing.mock_data(num_examples=32):
        got = example.main_hub(
            preset="tiny-random",
            out=str(tmp_path),
            epochs=1,
            subspace_dims=[60],
            lora_ranks=[2],
            batch_size=16,
            sequence_length=16,
            verbose=0,
        )
    said, lora = got["subspace"], got["lora"]
    assert said.config["structure_aware"] is True and lora.method == "lora"
    assert said.config["train_data"] == lora.config["train_data"]
    assert all(r.status == "ok" for r in said.runs + lora.runs)
    # LoRA on the backbone's own targets (query and value of 2 layers, each
    # kernel 32 x (2 heads x 16) as Keras splits it: A 64 x r, B r x 16),
    # plus the head "logits" (32 x 2 + 2) trained in full.
    assert lora.runs[0].trainable_params == 4 * 2 * (64 + 16) + 66
    assert said.runs[0].trainable_params == 60
    assert (tmp_path / "compare.png").stat().st_size > 0
    assert "lora" in got["table"] and "subspace" in got["table"]


def test_said_glue_without_its_data_says_so_in_one_message(tmp_path):
    """Offline, with no GLUE prepared: the reason and the way to prepare it,
    exit 1, no traceback (TFDS is never asked to download)."""
    import os
    import subprocess

    pytest.importorskip("keras_hub")
    empty = tmp_path / "tfds"
    empty.mkdir()
    script = Path(__file__).parent.parent / "examples" / "said_glue.py"
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--preset",
            "tiny-random",
            "--data-dir",
            str(empty),
            "--no-download",
            "--out",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "said_glue.py: Could not load the TFDS dataset 'glue/mrpc'" in proc.stderr
    assert "--data-dir /copied/dir --no-download" in proc.stderr


def test_rates_vs_grid_example_runs(load, tmp_path):
    results = load("rates_vs_grid").main(
        grid=(0.1,), out=str(tmp_path), dims=[40], epochs=1, verbose=0
    )
    assert set(results) == {"auto", 0.1}
    assert (tmp_path / "auto" / "results.json").exists()


def test_spaces_compare_example_runs_shrunk(load, tmp_path):
    got = load("spaces_compare").main(
        out=str(tmp_path), epochs=1, dims=[3, 2000], lora_ranks=[1, 200], verbose=0
    )
    spaces = {name: got[name].config.get("space") for name in ("weights", "lora4")}
    assert spaces == {"weights": "weights", "lora4": "lora:4"}
    assert got["lora16"].runs[0].space_dim == 16 * (
        (64 + 200) + (200 + 200) + (200 + 10)
    )
    assert got["lora"].method == "lora"
    # One baseline for all: the later searches reuse the first one's.
    assert all(
        got[name].baseline.value == got["weights"].baseline.value
        for name in ("lora4", "lora16", "lora")
    )
    rows = got["table"].splitlines()[1:5]
    assert ["of weights" in rows[0], "of lora:4" in rows[1]] == [True, True]
    assert "of lora:16" in rows[2] and "lora rank" in rows[3]
    assert (tmp_path / "compare.png").stat().st_size > 0
    # A LoRA space's compact file leaves its base out too: d numbers and a
    # header, not the 220 KB of the base.
    for name in ("lora4", "lora16"):
        if got[name].d_int is not None:
            assert 0 < got["compact_bytes"][name] < 4 * got[name].d_int + 4096


def test_spaces_compare_example_on_the_hub_classifier_offline(load, tmp_path):
    pytest.importorskip("keras_hub")  # the [hub] extra, part of [dev]
    example = load("spaces_compare")
    with tfds.testing.mock_data(num_examples=32):
        got = example.main_hub(
            preset="tiny-random",
            out=str(tmp_path),
            epochs=1,
            dims=[60],
            lora_ranks=[2],
            batch_size=16,
            sequence_length=16,
            verbose=0,
        )
    lora4 = got["lora4"]
    assert lora4.config["space"] == "lora:4[train=logits]"
    # Rank-4 adapters on query and value of 2 layers (A 64 x 4, B 4 x 16,
    # as Keras splits a 32 x (2 x 16) kernel), and the head (32 x 2 + 2).
    assert lora4.runs[0].space_dim == 4 * 4 * (64 + 16) + 66
    assert all(r.status == "ok" for name in SEARCHES for r in got[name].runs)
    assert (tmp_path / "compare.png").stat().st_size > 0


SEARCHES = ("weights", "lora4", "lora16", "lora")
