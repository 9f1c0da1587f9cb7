"""Pretrained-size models: the subspace step of a 10^8- to 10^9-weight
transformer.

A random-init keras-hub BERT of a pretrained model's size (BERT-base:
109,483,778 weights; RoBERTa-large's shape: about 355M), a classification
head, batch 8 x 128 tokens, Adam; and a decoder of TinyLlama's shape
(`llama-1b`: 1,100,048,384 weights), next-token loss, batch 2 x 128
tokens, whose plain side is keras-hub's own `enable_lora(8)` fine-tuning
and whose subspaces move its LoRA matrices (`space="lora:8"`). Peak memory
is what these rows are about, so plain fine-tuning and each subspace run in
processes of their own:

- the plain process builds the model, trains `steps` steps after a warm-up
  step, and reports its peak RSS and median step;
- each subspace process wraps the same model (same seed), trains likewise
  and reports its peak RSS; then, unless the row is memory only, it builds
  the plain model too and times both in alternating rounds, so that the
  step ratio is measured in one process (the peak is taken before).

`llama-1b-weights` is the same decoder with SAID Fastfood over all its
weights (memory only): plain fine-tuning of every weight with Adam, and a
subspace that holds no theta_0 (`keep_theta_0=False`) and a Fastfood P
that draws its signs, Gaussians and scales again in each product
(`regenerate=True`).

    keras-idim bench --configs bert-base --no-search-cost
    keras-idim bench --configs llama-1b --no-search-cost
    keras-idim bench --configs llama-1b-weights --no-search-cost
"""

from __future__ import annotations

import resource
import time

#: (name, backbone arguments, d, projections, memory only); a BERT
#: classifier unless `FAMILY` says otherwise.
SCALE = [
    (
        "bert-base",
        {
            "vocabulary_size": 30522,
            "num_layers": 12,
            "num_heads": 12,
            "hidden_dim": 768,
            "intermediate_dim": 3072,
        },
        1_000,
        ("dense", "sparse", "fastfood"),
        False,
    ),
    (
        "roberta-large-size",
        {
            "vocabulary_size": 50265,
            "num_layers": 24,
            "num_heads": 16,
            "hidden_dim": 1024,
            "intermediate_dim": 4096,
        },
        1_000,
        ("fastfood",),
        True,
    ),
    (
        "llama-1b",
        {
            "vocabulary_size": 32000,
            "num_layers": 22,
            "num_query_heads": 32,
            "num_key_value_heads": 4,
            "hidden_dim": 2048,
            "intermediate_dim": 5632,
        },
        1_000,
        ("fastfood", "sparse"),
        False,
    ),
]
#: The same decoder, SAID Fastfood over all its weights (not its LoRA
#: space), memory only: plain fine-tuning of every weight with Adam beside
#: a subspace that holds neither theta_0 nor all of P.
SCALE.append(("llama-1b-weights", SCALE[-1][1], 1_000, ("fastfood",), True))
NAMES = tuple(row[0] for row in SCALE)
#: Rows that are not BERT classifiers: a keras-hub `LlamaCausalLM`.
FAMILY = {"llama-1b": "llama", "llama-1b-weights": "llama"}
#: Rows whose subspaces are SAID only, and the `SubspaceModel` arguments
#: they add: weights written in place (no theta_0) and a Fastfood P that
#: draws its signs and Gaussians again in each product.
SAID_ONLY = {"llama-1b-weights"}
OPTIONS = {
    "llama-1b-weights": {
        "keep_theta_0": False,
        "projection_kwargs": {"regenerate": True},
    }
}
#: Rows whose plain side is LoRA fine-tuning and whose subspaces move the
#: LoRA matrices: the space's name (`keras_idim.spaces`).
LORA_SPACE = {"llama-1b": "lora:8"}
#: Tokens of the synthetic batch: examples x sequence length.
BATCH, SEQUENCE = 8, 128
#: Examples of a decoder's batch (of `SEQUENCE` tokens each).
DECODER_BATCH = 2
TIMING = {"warmup": 1, "steps": 3, "rounds": 2, "round_steps": 2}


def jobs(names) -> list[dict]:
    """The processes of the named rows: one plain, one per subspace kind."""
    out = []
    for name, backbone, dim, projections, memory_only in SCALE:
        if name not in names:
            continue
        base = {
            "name": name,
            "family": FAMILY.get(name, "bert"),
            "space": LORA_SPACE.get(name),
            "backbone": backbone,
            "dim": dim,
            **TIMING,
        }
        out.append({**base, "side": "plain", "projection": None, "said": False})
        for projection in projections:
            for said in (True,) if name in SAID_ONLY else (False, True):
                out.append(
                    {
                        **base,
                        "side": "subspace",
                        "projection": projection,
                        "said": said,
                        "memory_only": memory_only,
                        "options": OPTIONS.get(name, {}),
                    }
                )
    return out


def skip_reason(spec: dict) -> str | None:
    """Why a row is not run: a dense P of 10^11 entries."""
    if spec["projection"] == "dense":
        return (
            "dense P of about 1e11 entries (D x d): regenerating it on the fly "
            "would take hours per step here"
        )
    return None


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _task(spec: dict):
    """`(model_fn, data)`: a fresh random-init model (seed 0) and a repeated
    synthetic batch. A BERT classifier on two classes; a decoder
    (`FAMILY`) with the next token as label."""
    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    vocabulary = spec["backbone"]["vocabulary_size"]
    rng = np.random.default_rng(0)
    if spec.get("family", "bert") == "llama":

        def model() -> keras.Model:
            keras.utils.set_random_seed(0)
            backbone = keras_hub.models.LlamaBackbone(**spec["backbone"])
            return keras_hub.models.LlamaCausalLM(backbone, preprocessor=None)

        tokens = rng.integers(0, vocabulary, (DECODER_BATCH, SEQUENCE + 1))
        x = {
            "token_ids": tokens[:, :-1].astype("int32"),
            "padding_mask": np.ones((DECODER_BATCH, SEQUENCE), "int32"),
        }
        y = tokens[:, 1:].astype("int32")
    else:

        def model() -> keras.Model:
            keras.utils.set_random_seed(0)
            backbone = keras_hub.models.BertBackbone(
                max_sequence_length=512, **spec["backbone"]
            )
            return keras_hub.models.BertTextClassifier(
                backbone, num_classes=2, preprocessor=None
            )

        x = {
            "token_ids": rng.integers(0, vocabulary, (BATCH, SEQUENCE)).astype("int32"),
            "padding_mask": np.ones((BATCH, SEQUENCE), "int32"),
            "segment_ids": np.zeros((BATCH, SEQUENCE), "int32"),
        }
        y = rng.integers(0, 2, BATCH)
    return model, tf.data.Dataset.from_tensors((x, y)).repeat()


def run_side(spec: dict) -> dict:
    """One process of `jobs`: its peak RSS and median step, and for a timed
    subspace row the paired ratio to plain steps in this process. With a
    LoRA space (`LORA_SPACE`), "plain" is LoRA fine-tuning of that rank."""
    import keras
    import numpy as np

    from keras_idim import spaces
    from keras_idim.bench.timer import StepTimer, median
    from keras_idim.subspace import SubspaceModel

    model, data = _task(spec)
    space = spec.get("space")

    def plain_model_of(m: keras.Model) -> keras.Model:
        if space is not None:  # keras-hub's own enable_lora, the rest frozen
            spaces.get(space).prepare(m)
        return m

    def compiled(m: keras.Model) -> keras.Model:
        m.compile(
            optimizer=keras.optimizers.Adam(1e-4),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        return m

    def steps(m: keras.Model, n: int) -> list[float]:
        timer = StepTimer()
        m.fit(data, epochs=1, steps_per_epoch=n, callbacks=[timer.callback], verbose=0)
        return timer.times

    first = model()
    # D: the model's weights (its trainable ones, and every one where the
    # plain side is LoRA's, which freezes them), before any adapter.
    counted = first.trainable_variables if space is None else first.weights
    record = {**spec, "full_dim": sum(int(np.prod(v.shape)) for v in counted)}
    if spec["side"] == "plain" and space is not None:
        first = plain_model_of(first)
        record["space_dim"] = sum(
            int(np.prod(v.shape)) for v in first.trainable_variables
        )
    if spec["side"] == "subspace":
        started = time.perf_counter()
        first = SubspaceModel(
            first,
            spec["dim"],
            projection=spec["projection"],
            seed=0,
            structure_aware=spec["said"],
            space=space,
            **spec.get("options", {}),
        )
        record["build_seconds"] = time.perf_counter() - started
        record["space_dim"] = first.full_dim
        record["projection_bytes"] = first.projection.memory_bytes
        record["kernel"] = getattr(first.projection, "uses_kernel", False)
    compiled(first)
    steps(first, spec["warmup"])
    record["step_ms"] = 1e3 * median(steps(first, spec["steps"]))
    record["peak_rss_bytes"] = _peak()
    if spec["side"] == "subspace" and not spec.get("memory_only"):
        plain = compiled(plain_model_of(model()))
        steps(plain, spec["warmup"])
        ratios = []
        for _ in range(spec["rounds"]):
            p = median(steps(plain, spec["round_steps"]))
            s = median(steps(first, spec["round_steps"]))
            ratios.append(s / p)
        record.update(
            ratio=median(ratios), ratio_min=min(ratios), ratio_max=max(ratios)
        )
    record["status"] = "ok"
    return record


def rows(records: list[dict]) -> list[dict]:
    """Each subspace record beside its model's plain one: the RSS ratio."""
    plain = {r["name"]: r for r in records if r["side"] == "plain"}
    out = []
    for r in records:
        if r["side"] != "subspace":
            continue
        p = plain.get(r["name"], {})
        row = {**r, "plain_peak_rss_bytes": p.get("peak_rss_bytes")}
        row["plain_step_ms"] = p.get("step_ms")
        if r["status"] == "ok" and p.get("status") == "ok":
            row["rss_ratio"] = r["peak_rss_bytes"] / p["peak_rss_bytes"]
        out.append(row)
    return out


def describe(r: dict) -> str:
    """One line of a record, for the progress printout."""
    if r["status"] != "ok":
        return f"{r['status']}: {r.get('message')}"
    text = f"step {_s(r['step_ms'])} s  peak RSS {_gib(r['peak_rss_bytes'])}"
    if "ratio" in r:
        spread = f"[{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]"
        text += f"  ratio to plain {r['ratio']:.2f} {spread}"
    return text


def markdown(rows_: list[dict]) -> list[str]:
    """The section of RESULTS.md for the pretrained-size rows."""
    lines = [
        "",
        "## Pretrained-size transformers",
        "",
        f"A random-init keras-hub BERT classifier, batch {BATCH} x {SEQUENCE} "
        f"tokens (a decoder: {DECODER_BATCH} x {SEQUENCE}, next-token loss), "
        "Adam; d = 1,000. Peak RSS of plain fine-tuning and of each "
        "subspace in processes of their own; the step ratio is paired in the "
        "subspace's process (alternating rounds, after its peak was read). "
        "Where the projection names a LoRA space, plain fine-tuning is "
        "keras-hub's own LoRA of that rank and the subspace moves its "
        "matrices (their number in brackets).",
        "",
        "| model | D | projection | SAID | plain step s | subspace step s | "
        "ratio [spread] | plain peak RSS | subspace peak RSS | RSS ratio | P bytes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows_:
        head = (
            f"| {r['name']} | {r.get('full_dim', '')} | {projection_label(r)} | "
            f"{'yes' if r['said'] else 'no'} |"
        )
        if r["status"] != "ok":
            lines.append(f"{head} {r['status']}: {r.get('message', '')} |||||||")
            continue
        ratio = (
            f"{r['ratio']:.2f} [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]"
            if "ratio" in r
            else "memory only"
        )
        plain = r.get("plain_peak_rss_bytes")
        rss_ratio = f"{r['rss_ratio']:.2f}" if "rss_ratio" in r else ""
        lines.append(
            f"{head} {_s(r.get('plain_step_ms'))} | {_s(r['step_ms'])} | {ratio} | "
            f"{_gib(plain)} | {_gib(r['peak_rss_bytes'])} | {rss_ratio} | "
            f"{_gib(r.get('projection_bytes'))} |"
        )
    return lines


def projection_label(r: dict) -> str:
    """A row's projection, "(kernel)" where Fastfood's compiled kernel
    made its products, and the space it moved when not every weight."""
    label = f"{r['projection']}{' (kernel)' if r.get('kernel') else ''}"
    options = r.get("options") or {}
    if options.get("projection_kwargs", {}).get("regenerate"):
        label += ", B and G drawn again"
    if options.get("keep_theta_0") is False:
        label += ", no theta_0"
    if r.get("space"):
        size = f" ({r['space_dim']:,})" if r.get("space_dim") else ""
        label += f" in {r['space']}{size}"
    return label


def _s(ms: float | None) -> str:
    return "" if ms is None else f"{ms / 1e3:.2f}"


def _gib(n: float | None) -> str:
    return "" if n is None else f"{n / 2**30:.2f} GiB"
