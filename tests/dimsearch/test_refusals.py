"""Inputs that used to give a wrong answer, hang or lose data, refused up
front: non-finite arrays, infinite or empty datasets, a results file that
another search is writing."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from search_helpers import TINY, digits_arrays, must_not_run, tiny_fc

from keras_idim import search
from keras_idim.dimsearch import InProcessRunner, RunRecord, SearchFileError
from keras_idim.dimsearch.runner import as_dataset

TESTS = Path(__file__).resolve().parents[1]


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
