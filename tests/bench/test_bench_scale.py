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
