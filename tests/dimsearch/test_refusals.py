"""Inputs that used to give a wrong answer, hang or lose data, refused up
front: non-finite arrays, infinite or empty datasets, a results file that
another search is writing."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from search_helpers import TINY, digits_arrays, must_not_run, tiny_fc

from keras_idim import search
from keras_idim.dimsearch import (
    InProcessRunner,
    RunRecord,
    SearchFileError,
    SearchResult,
)
from keras_idim.dimsearch.comparison import compare
from keras_idim.dimsearch.data_checks import as_dataset

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_non_finite_arrays_are_refused_before_any_training():
    (x, y), (xv, yv) = digits_arrays()
    x = x.copy()
    x[5, 3] = np.nan  # one pixel: relu would hide it behind chance accuracy
    x[7, 0] = np.inf
    with pytest.raises(
        ValueError, match=r"`train_data` holds 2 non-finite .* its x array"
    ):
        search(
            tiny_fc,
            (x, y),
            (xv, yv),
            dims=[3],
            runner=InProcessRunner(must_not_run),
            **TINY,
        )
    bad_y = yv.astype(np.float32)
    bad_y[[0, 1, 2]] = -np.inf
    with pytest.raises(
        ValueError, match=r"`val_data` holds 3 non-finite .* its y array"
    ):
        search(
            tiny_fc,
            digits_arrays()[0],
            (xv, bad_y),
            dims=[3],
            runner=InProcessRunner(must_not_run),
            **TINY,
        )


def _digits_ds():
    (x, y), _ = digits_arrays()
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(64)


@pytest.mark.parametrize("arg", ["train_data", "val_data"])
def test_an_infinite_dataset_is_refused_before_any_training(arg):
    train, val = digits_arrays()
    data = {"train_data": train, "val_data": val, arg: _digits_ds().repeat()}
    with pytest.raises(ValueError, match=rf"`{arg}` is an infinite .*\.take\(n\)"):
        search(
            tiny_fc,
            data["train_data"],
            data["val_data"],
            dims=[3],
            runner=InProcessRunner(must_not_run),
            **TINY,
        )


def test_infinite_or_empty_dataset_from_a_callable_is_refused_in_the_run():
    with pytest.raises(ValueError, match=r"`train_data` is an infinite"):
        as_dataset(lambda: _digits_ds().repeat(), 64, shuffle=True, arg="train_data")
    with pytest.raises(ValueError, match=r"`val_data` is empty"):
        as_dataset(lambda: _digits_ds().take(0), 64, shuffle=False, arg="val_data")
    # An unknown cardinality (-2, e.g. after `filter`) is accepted.
    unknown = _digits_ds().filter(lambda x, y: True)
    assert int(unknown.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    assert as_dataset(unknown, 64, shuffle=False, arg="train_data") is unknown


@pytest.mark.parametrize("arg", ["train_data", "val_data"])
def test_an_empty_dataset_is_refused_before_any_training(arg):
    train, val = digits_arrays()
    for empty in (_digits_ds().take(0), (train[0][:0], train[1][:0])):
        data = {"train_data": train, "val_data": val, arg: empty}
        with pytest.raises(ValueError, match=rf"`{arg}`.*(empty|positive number)"):
            search(
                tiny_fc,
                data["train_data"],
                data["val_data"],
                dims=[3],
                runner=InProcessRunner(must_not_run),
                **TINY,
            )


_HOLDER = """
import sys, time
sys.path.insert(0, {tests!r})
sys.path.insert(0, {tests!r} + "/dimsearch")
from search_helpers import TINY, digits_arrays, tiny_fc
from keras_idim import search
from keras_idim.dimsearch import InProcessRunner

def hold(recipe, dim, seed, threshold):
    open({marker!r}, "w").close()
    time.sleep(600)

train, val = digits_arrays()
search(tiny_fc, train, val, dims=[3], results_path={path!r},
       runner=InProcessRunner(hold), **TINY)
"""


def _quick(recipe, dim, seed, threshold):
    return RunRecord(
        dim=dim,
        seed=seed,
        projection="fastfood",
        metric=0.75,
        epochs=1,
        stopped_early=True,
        seconds=0.0,
        status="ok",
    )


def test_a_second_search_on_the_same_file_is_refused_naming_the_first(tmp_path):
    train, val = digits_arrays()
    path, marker = tmp_path / "results.json", tmp_path / "running"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _HOLDER.format(tests=str(TESTS), path=str(path), marker=str(marker)),
        ],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and child.poll() is None:
            assert time.monotonic() < deadline, "the first search never started"
            time.sleep(0.05)
        assert child.poll() is None, "the first search ended early"
        with pytest.raises(SearchFileError) as info:
            search(
                tiny_fc,
                train,
                val,
                dims=[3],
                results_path=path,
                runner=InProcessRunner(must_not_run),
                **TINY,
            )
        message = str(info.value)
        assert str(path) in message
        assert f"process {child.pid} " in message
        assert socket.gethostname() in message
        # A first search killed outright leaves no lock behind.
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    result = search(
        tiny_fc,
        train,
        val,
        dims=[3],
        results_path=path,
        runner=InProcessRunner(_quick),
        **TINY,
    )
    assert [(r.dim, r.metric) for r in result.runs] == [(3, 0.75)]
    # The lock is let go when a search ends: the same file resumes.
    again = search(
        tiny_fc,
        train,
        val,
        dims=[3],
        results_path=path,
        runner=InProcessRunner(must_not_run),
        **TINY,
    )
    assert again.d_int == result.d_int == 3


# -- issue 23: mistakes that used to surface only after training --


def _refused(match, exc=ValueError, **kwargs):
    """`search` on digits with a runner that must not train is refused."""
    train, val = digits_arrays()
    args = {**TINY, "dims": [3], **kwargs}
    with pytest.raises(exc, match=match) as info:
        search(tiny_fc, train, val, runner=InProcessRunner(must_not_run), **args)
    return str(info.value)


def myfn(y_true, y_pred):
    return keras.ops.mean(y_pred)


def test_a_monitor_the_runs_will_not_log_is_refused_listing_the_names():
    from keras_idim.dimsearch.metric_checks import check_monitor

    # Before: the baseline (or the first run) trained, then "not in the logs".
    message = _refused(r"`monitor='val_nope'` is not among", monitor="val_nope")
    assert "['accuracy', 'loss', 'val_accuracy', 'val_loss']" in message
    _refused(r"`monitor='val_nope'` is not among", monitor="val_nope", mode="max")
    _refused(  # a LoRA search logs the same names
        r"`monitor='val_nope'` is not among",
        monitor="val_nope",
        mode="max",
        method="lora",
    )
    # 'acc' and Keras-named metric objects are logged under their names.
    check_monitor("val_acc", "max", ["acc"])
    check_monitor("val_x", "max", [keras.metrics.SparseCategoricalAccuracy(name="x")])
    check_monitor("mae", "min", ["mae", keras.metrics.AUC(name="auc")])
    # A name that cannot be told for sure (a lambda, a callable object, two
    # metrics Keras would number) is not refused.
    check_monitor("val_whatever", "max", [lambda t, p: p])
    check_monitor("val_mae_1", "min", ["mae", "mae"])
    # Callbacks may add logs (e.g. ReduceLROnPlateau's learning_rate).
    check_monitor("learning_rate", "min", ["accuracy"], [keras.callbacks.History()])


def test_a_misspelled_monitor_with_mode_auto_is_refused_as_not_logged():
    # Before: "`mode='auto'` cannot tell whether ... maximised or minimised".
    _refused(r"`monitor='val_accuarcy'` is not among the names", monitor="val_accuarcy")
    # A plain function as the only metric leaves accuracy out of the logs.
    message = _refused(r"`monitor='val_accuracy'` is not among", metrics=[myfn])
    assert "'val_myfn'" in message


def test_structure_aware_takes_bools_only():
    from keras_idim.dimsearch.config import check_structure_aware

    # Before: accepted until the first subspace run wrapped the model.
    _refused(
        r"`structure_aware` should be True .*`structure_aware='yes'`",
        structure_aware="yes",
    )
    assert check_structure_aware(np.True_) is True
    assert check_structure_aware(False) is False


@pytest.mark.parametrize("policy", ["mixed_float16", "bfloat16"])
def test_a_half_precision_dtype_policy_is_refused_up_front(policy):
    # Before: "Tensor conversion requested dtype bfloat16" in every run.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        _refused(rf"policy is '{policy}'.*set_dtype_policy\(\"float32\"\)")
    finally:
        keras.config.set_dtype_policy(previous)


def test_a_mode_against_keras_direction_is_refused():
    from keras_idim.dimsearch.metric_checks import check_monitor

    # Before: mode="min" on val_accuracy was accepted and answered d_int = 10.
    _refused(
        r"`mode='min'` contradicts `monitor='val_accuracy'`.*maximised",
        mode="min",
    )
    _refused(
        r"`mode='max'` contradicts `monitor='val_loss'`", monitor="val_loss", mode="max"
    )
    check_monitor("val_myfn", "min", [myfn])  # no known direction: the user's
    check_monitor("val_myfn", "max", [myfn])


def test_non_integer_class_labels_are_refused_with_a_sparse_loss():
    from keras_idim.dimsearch.data_checks import check_class_labels

    # Before: 0.5 and 1.7 were truncated to 0 and 1 without a word.
    (x, y), val = digits_arrays()
    y = y.astype(np.float32)
    y[:2] = [0.5, 1.7]
    train, _ = digits_arrays()
    with pytest.raises(ValueError, match=r"`train_data`'s y array .*e\.g\. 0\.5"):
        search(
            tiny_fc, (x, y), val, runner=InProcessRunner(must_not_run), dims=[3], **TINY
        )
    negative = val[1].copy()
    negative[0] = -1
    with pytest.raises(ValueError, match=r"`val_data`'s y array .*e\.g\. -1"):
        search(
            tiny_fc,
            train,
            (val[0], negative),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            runner=InProcessRunner(must_not_run),
            dims=[3],
            **TINY,
        )
    # Whole numbers stored as floats are class indices; another loss is not checked.
    check_class_labels("train_data", (x, y.round()), "sparse_categorical_crossentropy")
    check_class_labels("train_data", (x, y), "mse")


def test_a_ray_address_where_nothing_listens_is_refused_quickly():
    # Before: more than 150 s in Ray's retry loop.
    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    train, val = digits_arrays()
    started = time.monotonic()
    with pytest.raises(ValueError, match=rf"`ray_address='127.0.0.1:{port}'`"):
        search(tiny_fc, train, val, dims=[3], ray_address=f"127.0.0.1:{port}", **TINY)
    assert time.monotonic() - started < 10


def _edited(tmp_path, name, **fields):
    data = json.loads((FIXTURES / "results_v1_complete.json").read_text())
    for key, value in fields.items():
        if value is _MISSING:
            del data[key]
        else:
            data[key] = value
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


_MISSING = object()


@pytest.mark.parametrize(
    "field, value, shown",
    [
        ("baseline", "x", "'x'"),
        ("fraction", _MISSING, "it is missing"),
        ("fraction", 1.5, "1.5"),
        ("threshold", None, "None"),
        ("d_int", 123, "123"),
        ("d_int", "400", "'400'"),
    ],
)
def test_compare_refuses_a_hand_edited_results_file_in_one_line(
    tmp_path, field, value, shown
):
    # Before: a raw AttributeError, KeyError or TypeError traceback.
    good = FIXTURES / "results_v1_complete.json"
    bad = _edited(tmp_path, "bad.json", **{field: value})
    with pytest.raises(SearchFileError) as info:
        compare([good, bad])
    message = str(info.value)
    assert str(bad) in message and f"`{field}`: {shown}" in message
    assert "\n" not in message


def test_old_results_files_still_load_for_compare():
    for name in ("results_v1_complete.json", "results_v1_interrupted.json"):
        SearchResult.from_json(FIXTURES / name)
