"""Inputs that used to give a wrong answer, hang or lose data, refused up
front: non-finite arrays, infinite or empty datasets, a results file that
another search is writing."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from search_helpers import TINY, digits_arrays, must_not_run, tiny_fc

from keras_idim import search
from keras_idim.dimsearch import InProcessRunner
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
