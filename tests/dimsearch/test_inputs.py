"""Inputs as Keras takes them: dicts and lists of inputs, sample weights,
and the refusal of an unbatched dataset (issue 19, item 5)."""

import hashlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_idim
from keras_idim.data.arrays import fit_dataset
from keras_idim.dimsearch import describe
from tests.search_helpers import TINY, digits_arrays, tiny_fc


def two_inputs() -> keras.Model:
    """Two named inputs of 32 pixels each (the digits' halves)."""
    a = keras.Input((32,), name="a")
    b = keras.Input((32,), name="b")
    h = keras.layers.Concatenate()([a, b])
    h = keras.layers.Dense(16, activation="relu")(h)
    out = keras.layers.Dense(10, activation="softmax")(h)
    return keras.Model({"a": a, "b": b}, out)


def halves(x, kind):
    a, b = x[:, :32], x[:, 32:]
    return {"b": b, "a": a} if kind == "dict" else [a, b]


@pytest.fixture(scope="module")
def digits():
    return digits_arrays()


def test_a_two_input_model_takes_a_dict_and_a_list(digits):
    (xt, yt), (xv, yv) = digits
    metrics = {}
    for kind in ("dict", "list"):
        result = keras_idim.search(
            two_inputs,
            (halves(xt, kind), yt),
            (halves(xv, kind), yv),
            dims=[300],
            **TINY,
        )
        (run,) = result.runs
        assert run.status == "ok", run.message
        metrics[kind] = run.metric
        assert result.config["train_data"][0] == (
            {"dict": {k: describe.describe_data(halves(xt, "dict")[k]) for k in "ab"}}
            if kind == "dict"
            else [describe.describe_data(a) for a in halves(xt, "list")]
        )
    assert metrics["dict"] > 0.3
    # The same examples in the same order, whether named or listed.
    assert metrics["dict"] == pytest.approx(metrics["list"], abs=1e-6)


def test_sample_weights_change_the_result(digits, tmp_path):
    (xt, yt), val = digits
    weights = np.ones(len(yt), np.float32)
    weights[len(yt) // 2 :] = 0.0  # half the data does not count
    plain = keras_idim.search(tiny_fc, (xt, yt), val, dims=[30], **TINY)
    weighted = keras_idim.search(
        tiny_fc,
        (xt, yt, weights),
        val,
        dims=[30],
        results_path=tmp_path / "results.json",
        **TINY,
    )
    assert weighted.runs[0].status == "ok"
    assert weighted.runs[0].metric != plain.runs[0].metric
    assert weighted.config["train_data"] != plain.config["train_data"]
    assert weighted.config["train_data"][2] == describe.describe_data(weights)
    # The weights are part of the fingerprint: a resume with others is refused.
    with pytest.raises(Exception, match="results.json"):
        keras_idim.search(
            tiny_fc,
            (xt, yt, np.ones_like(weights)),
            val,
            dims=[30],
            results_path=tmp_path / "results.json",
            **TINY,
        )


def test_the_fingerprint_of_plain_arrays_is_unchanged():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.arange(4)
    old = [
        {
            "shape": list(a.shape),
            "dtype": str(a.dtype),
            "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
        }
        for a in (x, y)
    ]
    assert describe.describe_data((x, y)) == old
    # A dict's fingerprint does not depend on the order of its keys.
    assert describe.describe_data(({"a": x, "b": x}, y)) == describe.describe_data(
        ({"b": x, "a": x}, y)
    )


def test_an_unbatched_dataset_is_refused_up_front(digits, capsys):
    (xt, yt), (xv, yv) = digits
    unbatched = tf.data.Dataset.from_tensor_slices((xt, yt))
    batched = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(64)
    with pytest.raises(ValueError, match=r"^`train_data` is an unbatched") as e:
        keras_idim.search(tiny_fc, unbatched, batched, dims=[30], **TINY)
    assert "ds.batch(" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"^`val_data` is an unbatched"):
        keras_idim.search(
            tiny_fc,
            unbatched.batch(64),
            tf.data.Dataset.from_tensor_slices((xv, yv)),
            dims=[30],
            **TINY,
        )
    # Named inputs too, matched by name.
    named = tf.data.Dataset.from_tensor_slices((halves(xt, "dict"), yt))
    with pytest.raises(ValueError, match=r"^`train_data` is an unbatched"):
        keras_idim.search(two_inputs, named, batched, dims=[30], **TINY)


def test_bad_structures_name_the_argument_and_the_arrays(digits):
    (xt, yt), val = digits
    with pytest.raises(
        ValueError, match=r"`train_data` holds 1 non-finite .* x\['a'\]"
    ):
        bad = halves(xt, "dict")
        bad["a"] = bad["a"].copy()
        bad["a"][0, 0] = np.nan
        keras_idim.search(two_inputs, (bad, yt), val, dims=[30], **TINY)
    with pytest.raises(
        ValueError, match=r"`train_data` should hold the same .* x\[1\]"
    ):
        keras_idim.search(
            two_inputs, ([xt[:, :32], xt[:-1, 32:]], yt), val, dims=[30], **TINY
        )
    with pytest.raises(ValueError, match=r"`val_data` should be `\(x, y\)` or"):
        keras_idim.search(tiny_fc, (xt, yt), (val[0], val[1], "w"), dims=[30], **TINY)


def test_fit_dataset_batches_triples_and_keeps_plain_arrays():
    x, y, w = np.zeros((5, 2)), np.arange(5), np.ones(5)
    (bx, by, bw), *_ = list(fit_dataset(({"in": x}, y, w), batch_size=4))
    assert bx["in"].shape == (4, 2) and bw.shape == (4,)
    plain = [b[1].numpy().tolist() for b in fit_dataset((x, y), 2, shuffle=True)]
    again = [
        b[1].numpy().tolist()
        for b in keras_idim.data.to_dataset((x, y), 2, shuffle=True)
    ]
    assert plain == again
