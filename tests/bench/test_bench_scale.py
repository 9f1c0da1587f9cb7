"""keras_idim.bench.scale: the pretrained-size rows, on a tiny BERT here."""

import pytest

from keras_idim.bench import scale

TINY_BERT = {
    "vocabulary_size": 50,
    "num_layers": 1,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
}


def test_jobs_one_plain_process_and_one_per_subspace_kind():
    specs = scale.jobs(["bert-base"])
    assert [(s["side"], s["projection"], s["said"]) for s in specs] == [
        ("plain", None, False),
        ("subspace", "dense", False),
        ("subspace", "dense", True),
        ("subspace", "sparse", False),
        ("subspace", "sparse", True),
        ("subspace", "fastfood", False),
        ("subspace", "fastfood", True),
    ]
    large = scale.jobs(["roberta-large-size"])
    assert all(s.get("memory_only") for s in large if s["side"] == "subspace")
    assert scale.jobs([]) == []
    assert "dense" in scale.skip_reason(specs[1])
    assert scale.skip_reason(specs[-1]) is None


@pytest.mark.parametrize("memory_only", [False, True])
def test_a_subspace_process_on_a_tiny_bert(memory_only):
    pytest.importorskip("keras_hub")  # the [hub] extra, in [dev]
    spec = {
        "name": "tiny",
        "backbone": TINY_BERT,
        "dim": 40,
        "side": "subspace",
        "projection": "fastfood",
        "said": True,
        "memory_only": memory_only,
        "warmup": 1,
        "steps": 1,
        "rounds": 1,
        "round_steps": 1,
    }
    record = scale.run_side(spec)
    # 50 x 16 token + 512 x 16 position + 2 x 16 segment embeddings, layer
    # norm 2 x 16; attention 4 x (16 x 16 + 16), its norm 2 x 16; the
    # feed-forward 16 x 32 + 32 + 32 x 16 + 16, its norm 2 x 16; the pooler
    # 16 x 16 + 16; the head 16 x 2 + 2.
    by_hand = (
        (50 + 512 + 2) * 16
        + 32
        + 4 * (16 * 16 + 16)
        + 32
        + (16 * 32 + 32 + 32 * 16 + 16)
        + 32
        + (16 * 16 + 16)
        + (16 * 2 + 2)
    )
    assert record["status"] == "ok" and record["full_dim"] == by_hand
    assert record["step_ms"] > 0 and record["peak_rss_bytes"] > 0
    assert ("ratio" in record) is not memory_only
    rows = scale.rows([{**spec, "side": "plain", **_ok(2e9)}, record])
    assert len(rows) == 1
    assert rows[0]["rss_ratio"] == pytest.approx(record["peak_rss_bytes"] / 2e9)
    table = "\n".join(scale.markdown(rows))
    backend = "fastfood (kernel)" if record.get("kernel") else "fastfood"
    assert "| tiny | " in table and f"| {backend} | yes |" in table
    assert ("memory only" in table) is memory_only


def _ok(peak):
    return {"status": "ok", "peak_rss_bytes": peak, "step_ms": 1000.0}


TINY_LLAMA = {
    "vocabulary_size": 50,
    "num_layers": 1,
    "num_query_heads": 2,
    "num_key_value_heads": 1,
    "hidden_dim": 16,
    "intermediate_dim": 32,
}


def test_the_decoder_row_is_lora_against_subspaces_of_its_lora_space():
    specs = scale.jobs(["llama-1b"])
    assert {(s["family"], s["space"]) for s in specs} == {("llama", "lora:8")}
    assert specs[0]["side"] == "plain" and specs[0]["backbone"]["num_layers"] == 22


@pytest.mark.parametrize("side", ["plain", "subspace"])
def test_a_tiny_decoder_process(side):
    pytest.importorskip("keras_hub")  # the [hub] extra, in [dev]
    spec = {
        "name": "tiny-llama",
        "family": "llama",
        "space": "lora:2",
        "backbone": TINY_LLAMA,
        "dim": 20,
        "side": side,
        "projection": "fastfood" if side == "subspace" else None,
        "said": False,
        "warmup": 1,
        "steps": 1,
        "rounds": 1,
        "round_steps": 1,
    }
    record = scale.run_side(spec)
    assert record["status"] == "ok" and record["step_ms"] > 0
    # Rank-2 adapters on query (16 -> 2 heads x 8, A 16 x 2 x 2 as Keras
    # splits the kernel, B 2 x 8) and value (16 -> 1 head x 8: A 16 x 1 x 2,
    # B 2 x 8) of the one layer.
    assert record["space_dim"] == (16 * 2 * 2 + 2 * 8) + (16 * 1 * 2 + 2 * 8)
    # Every weight of the decoder: token embedding 50 x 16 and its untied
    # reverse 16 x 50, the layer (norms 2 x 16, q 16 x 16, k and v 16 x 8
    # each, o 16 x 16, gate and up 16 x 32 each, down 32 x 16), final norm
    # 16; the adapters not counted.
    layer = 2 * 16 + 16 * 16 + 2 * 16 * 8 + 16 * 16 + 2 * 16 * 32 + 32 * 16
    assert record["full_dim"] == 50 * 16 * 2 + layer + 16
    assert ("ratio" in record) is (side == "subspace")


def test_the_decoder_said_row_moves_every_weight_without_theta_0():
    specs = scale.jobs(["llama-1b-weights"])
    assert [(s["side"], s["said"]) for s in specs] == [
        ("plain", False),
        ("subspace", True),
    ]
    assert {s["space"] for s in specs} == {None}  # every weight, no LoRA
    said = specs[1]
    assert said["memory_only"] and said["projection"] == "fastfood"
    assert said["options"] == {
        "keep_theta_0": False,
        "projection_kwargs": {"regenerate": True},
    }
    label = scale.projection_label({**said, "status": "ok"})
    assert label == "fastfood, B and G drawn again, no theta_0"


def test_a_tiny_decoder_said_process_without_theta_0():
    pytest.importorskip("keras_hub")  # the [hub] extra, in [dev]
    spec = {
        "name": "tiny-llama",
        "family": "llama",
        "space": None,
        "backbone": TINY_LLAMA,
        "dim": 20,
        "side": "subspace",
        "projection": "fastfood",
        "said": True,
        "memory_only": True,
        "options": {"keep_theta_0": False, "projection_kwargs": {"regenerate": True}},
        "warmup": 1,
        "steps": 1,
        "rounds": 1,
        "round_steps": 1,
    }
    record = scale.run_side(spec)
    assert record["status"] == "ok" and "ratio" not in record
    layer = 2 * 16 + 16 * 16 + 2 * 16 * 8 + 16 * 16 + 2 * 16 * 32 + 32 * 16
    assert record["space_dim"] == record["full_dim"] == 50 * 16 * 2 + layer + 16
    # Held: the permutations (int16) and S (float16) of every padded row,
    # and one float32 normalisation a block: 4 bytes a weight and a little.
    assert 4 * record["full_dim"] <= record["projection_bytes"] < 8 * record["full_dim"]
