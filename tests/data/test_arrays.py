import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_idim import data
from keras_idim.data import DataInfo


def batches(ds):
    """The (x, y) batches of a dataset as NumPy arrays, in order."""
    return [(x.numpy(), y.numpy()) for x, y in ds]


def concat(ds):
    parts = batches(ds)
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


# digits


def test_digits_shapes_range_and_dtypes():
    (x_train, y_train), (x_val, y_val) = data.digits()
    assert x_train.shape == (1437, 8, 8, 1) and x_val.shape == (360, 8, 8, 1)
    assert y_train.shape == (1437,) and y_val.shape == (360,)
    assert x_train.dtype == np.float32 and x_val.dtype == np.float32
    assert y_train.dtype == np.int64 and y_val.dtype == np.int64
    x = np.concatenate([x_train, x_val])
    assert x.min() == 0.0 and x.max() == 1.0
    # The raw pixels are the integers 0..16, scaled by 1/16.
    np.testing.assert_array_equal(np.unique(x * 16), np.arange(17))
    assert set(np.unique(y_train)) == set(range(10))


@pytest.mark.parametrize("val_fraction", [0.2, 0.5])
def test_digits_split_is_stratified(val_fraction):
    (_, y_train), (_, y_val) = data.digits(seed=3, val_fraction=val_fraction)
    per_class = np.bincount(np.concatenate([y_train, y_val]), minlength=10)
    val_counts = np.bincount(y_val, minlength=10)
    train_counts = np.bincount(y_train, minlength=10)
    # Each class keeps its proportion in both parts, within one sample.
    assert np.all(np.abs(val_counts - val_fraction * per_class) <= 1)
    assert np.all(np.abs(train_counts - (1 - val_fraction) * per_class) <= 1)


def test_digits_split_is_reproducible_per_seed():
    (xa, ya), (xva, _) = data.digits(seed=1)
    (xb, yb), (xvb, _) = data.digits(seed=1)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(xva, xvb)
    (xc, yc), _ = data.digits(seed=2)
    assert not np.array_equal(xa, xc)
    # The same examples, split differently: the train sets differ as sets.
    as_rows = {row.tobytes() for row in xa.reshape(len(xa), -1)}
    assert as_rows != {row.tobytes() for row in xc.reshape(len(xc), -1)}


@pytest.mark.parametrize("val_fraction", [0.0, 1.0, -0.1, 1.5, "0.2", None, True])
def test_digits_bad_val_fraction(val_fraction):
    with pytest.raises(ValueError, match=r"`val_fraction` should be a number in"):
        data.digits(val_fraction=val_fraction)


@pytest.mark.parametrize("val_fraction", [0.001, 0.999])
def test_digits_val_fraction_leaving_a_class_out(val_fraction):
    echo = re.escape(f"`val_fraction={val_fraction!r}`")
    with pytest.raises(ValueError, match=rf"one per class.*{echo}"):
        data.digits(val_fraction=val_fraction)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.0, "0", None, True])
def test_digits_bad_seed(seed):
    with pytest.raises(ValueError, match=r"`seed` should be an integer in"):
        data.digits(seed=seed)


# to_dataset


def arrays(n=10):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = np.arange(n, dtype=np.int64)
    return x, y


def test_to_dataset_batches_in_order_without_shuffle():
    x, y = arrays(10)
    ds = data.to_dataset((x, y), batch_size=4)
    assert isinstance(ds, tf.data.Dataset)
    parts = batches(ds)
    assert [len(b) for b, _ in parts] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b for b, _ in parts]), x)
    np.testing.assert_array_equal(np.concatenate([b for _, b in parts]), y)
    assert ds.element_spec[0].dtype == tf.float32
    assert ds.element_spec[1].dtype == tf.int64


def test_to_dataset_shuffles_each_epoch_reproducibly():
    x, y = arrays(32)
    ds = data.to_dataset((x, y), batch_size=8, shuffle=True, seed=5)
    epoch1, epoch2 = concat(ds), concat(ds)
    for xs, ys in (epoch1, epoch2):
        # Every example once, pairs kept together.
        np.testing.assert_array_equal(np.sort(ys), y)
        np.testing.assert_array_equal(xs, x[ys])
    assert not np.array_equal(epoch1[1], y)
    assert not np.array_equal(epoch1[1], epoch2[1])
    again = data.to_dataset((x, y), batch_size=8, shuffle=True, seed=5)
    np.testing.assert_array_equal(concat(again)[1], epoch1[1])
    other = data.to_dataset((x, y), batch_size=8, shuffle=True, seed=6)
    assert not np.array_equal(concat(other)[1], epoch1[1])


def test_to_dataset_returns_a_dataset_unchanged():
    ds = tf.data.Dataset.from_tensor_slices(arrays(4)).batch(2)
    assert data.to_dataset(ds, batch_size=3, shuffle=True) is ds


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 2)),
        (np.zeros((4, 2)),),
        (np.zeros((4, 2)), np.zeros(4), np.zeros(4)),
        ([[0, 1]] * 4, [0] * 4),
        {"x": np.zeros((4, 2)), "y": np.zeros(4)},
        None,
    ],
)
def test_to_dataset_bad_data(bad):
    with pytest.raises(ValueError, match=r"`data` should be a tuple `\(x, y\)`"):
        data.to_dataset(bad, batch_size=2)


@pytest.mark.parametrize(
    "bad",
    [
        (np.zeros((4, 2)), np.zeros(3)),
        (np.zeros((0, 2)), np.zeros(0)),
        (np.zeros(()), np.zeros(())),
    ],
)
def test_to_dataset_mismatched_arrays(bad):
    with pytest.raises(ValueError, match=r"same positive number of examples"):
        data.to_dataset(bad, batch_size=2)


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, None, True])
def test_to_dataset_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match=r"`batch_size` should be a positive integer"):
        data.to_dataset(arrays(4), batch_size=batch_size)


def test_to_dataset_bad_shuffle_and_seed():
    with pytest.raises(ValueError, match=r"`shuffle` should be a bool"):
        data.to_dataset(arrays(4), batch_size=2, shuffle=1)
    with pytest.raises(ValueError, match=r"`seed=-3`"):
        data.to_dataset(arrays(4), batch_size=2, seed=-3)


def test_load_digits():
    train, val, info = data.load("digits", batch_size=100, seed=0)
    assert info == DataInfo("digits", (8, 8, 1), 10, 1437, 360)
    x_train, y_train = concat(train)
    x_val, y_val = concat(val)
    assert x_train.shape == (1437, 8, 8, 1) and x_val.shape == (360, 8, 8, 1)
    assert len(batches(train)[0][0]) == 100
    # The same split as digits(seed=0); the training set shuffled each epoch.
    (xa, ya), (xva, yva) = data.digits(seed=0)
    np.testing.assert_array_equal(x_val, xva)
    np.testing.assert_array_equal(y_val, yva)
    np.testing.assert_array_equal(np.sort(y_train), np.sort(ya))
    assert not np.array_equal(y_train, ya)
    assert not np.array_equal(y_train, concat(train)[1])


def test_load_digits_as_arrays():
    (x_train, y_train), (x_val, y_val), info = data.load("digits", arrays=True)
    assert info == DataInfo("digits", (8, 8, 1), 10, 1437, 360)
    (xa, ya), (xva, yva) = data.digits(seed=0)
    np.testing.assert_array_equal(x_train, xa)
    np.testing.assert_array_equal(y_val, yva)
    with pytest.raises(ValueError, match=r"Received: `arrays='yes'`"):
        data.load("digits", arrays="yes")


@pytest.mark.parametrize("spec", ["mnist", "tfds:", "tfds: ", "", "digit", None, 3])
def test_load_bad_spec(spec):
    echo = re.escape(f"Received: `dataset={spec!r}`")
    with pytest.raises(ValueError, match=rf"'digits', 'diabetes', 'tfds:NAME'.*{echo}"):
        data.load(spec)


def test_load_digits_validates_batch_size():
    with pytest.raises(ValueError, match=r"`batch_size=0`"):
        data.load("digits", batch_size=0)


# diabetes


def test_diabetes_shapes_and_dtypes():
    (x_train, y_train), (x_val, y_val) = data.diabetes()
    # 442 examples: ceil(0.2 * 442) = 89 held out.
    assert x_train.shape == (353, 10) and x_val.shape == (89, 10)
    assert y_train.shape == (353,) and y_val.shape == (89,)
    for a in (x_train, y_train, x_val, y_val):
        assert a.dtype == np.float32


def test_diabetes_is_standardised_on_the_training_split_only():
    from sklearn.datasets import load_diabetes

    raw_x, raw_y = load_diabetes(return_X_y=True, scaled=False)
    (x_train, y_train), (x_val, y_val) = data.diabetes(seed=4)
    train = np.column_stack([x_train, y_train])
    val = np.column_stack([x_val, y_val])
    # Mean 0 and standard deviation 1 on the training part, every column.
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.std(axis=0), 1.0, atol=1e-5)
    # The validation part is scaled with the training statistics, not its own.
    assert np.abs(val.mean(axis=0)).max() > 1e-2
    # Each column of both parts is one increasing affine map of the raw
    # column: (raw - mean_train) / std_train.
    raw = np.column_stack([raw_x, raw_y])
    both = np.concatenate([train, val])
    for j in range(raw.shape[1]):
        a, b = np.polyfit(np.sort(raw[:, j]), np.sort(both[:, j]), 1)
        assert a > 0
        np.testing.assert_allclose(
            a * np.sort(raw[:, j]) + b, np.sort(both[:, j]), atol=1e-4
        )


def test_diabetes_split_is_reproducible_per_seed():
    (xa, ya), (xva, yva) = data.diabetes(seed=1)
    (xb, yb), (xvb, yvb) = data.diabetes(seed=1)
    for a, b in ((xa, xb), (ya, yb), (xva, xvb), (yva, yvb)):
        np.testing.assert_array_equal(a, b)
    (xc, _), _ = data.diabetes(seed=2)
    assert xc.shape == xa.shape and not np.array_equal(xa, xc)


@pytest.mark.parametrize("val_fraction", [0.0, 1.0, "0.2", None, True])
def test_diabetes_bad_val_fraction(val_fraction):
    with pytest.raises(ValueError, match=r"`val_fraction` should be a number in"):
        data.diabetes(val_fraction=val_fraction)


def test_diabetes_val_fraction_leaving_one_example():
    with pytest.raises(ValueError, match=r"at least 2 examples.*`val_fraction=0.001`"):
        data.diabetes(val_fraction=0.001)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.0, None, True])
def test_diabetes_bad_seed(seed):
    with pytest.raises(ValueError, match=r"`seed` should be an integer in"):
        data.diabetes(seed=seed)


def test_load_diabetes_as_arrays_and_datasets():
    expected = DataInfo("diabetes", (10,), None, 353, 89, task="regression")
    (x_train, y_train), (x_val, y_val), info = data.load("diabetes", arrays=True)
    assert info == expected
    assert info.task == "regression" and info.num_outputs == 1
    (xa, ya), (xva, yva) = data.diabetes(seed=0)
    np.testing.assert_array_equal(x_train, xa)
    np.testing.assert_array_equal(y_val, yva)

    train, val, info = data.load("diabetes", batch_size=50, seed=0)
    assert info == expected
    assert train.element_spec[1].dtype == tf.float32
    assert len(batches(train)[0][0]) == 50
    np.testing.assert_array_equal(concat(val)[0], xva)
    np.testing.assert_array_equal(np.sort(concat(train)[1]), np.sort(ya))
    with pytest.raises(ValueError, match=r"Received: `arrays=1`"):
        data.load("diabetes", arrays=1)


# DataInfo


def test_data_info_outputs_and_task():
    digits_info = DataInfo("digits", (8, 8, 1), 10, 1437, 360)
    assert digits_info.task == "classification" and digits_info.num_outputs == 10
    assert DataInfo("x", (3,), None, 5, 2, task="regression").num_outputs == 1
    assert DataInfo("x", (3,), None, 5, 2, "regression", 2).num_outputs == 2
    with pytest.raises(ValueError, match=r"`task` should be one of.*`task='ranking'`"):
        DataInfo("x", (3,), 2, 5, 2, task="ranking")
    with pytest.raises(ValueError, match=r"`num_classes` should be `None` for regr"):
        DataInfo("x", (3,), 2, 5, 2, task="regression")
    with pytest.raises(ValueError, match=r"`num_outputs=3`"):
        DataInfo("x", (3,), 2, 5, 2, num_outputs=3)
    with pytest.raises(ValueError, match=r"`num_outputs=0`"):
        DataInfo("x", (3,), None, 5, 2, task="regression", num_outputs=0)


def test_importing_data_does_not_import_tensorflow_datasets():
    code = (
        "import sys, keras_idim.data as d; "
        "assert 'tensorflow_datasets' not in sys.modules, 'imported'; "
        "d.load('digits', arrays=True); "
        "assert 'tensorflow_datasets' not in sys.modules, 'loaded'; "
        "d.tfds_dataset; "
        "assert 'tensorflow_datasets' in sys.modules, 'lazy'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
