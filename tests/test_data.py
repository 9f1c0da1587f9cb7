import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

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


# tfds_dataset and load


def check_mnist_batches(ds, num_examples, batch_size):
    parts = batches(ds)
    assert sum(len(x) for x, _ in parts) == num_examples
    assert len(parts[0][0]) == batch_size
    for x, y in parts:
        assert x.shape[1:] == (28, 28, 1) and x.dtype == np.float32
        assert y.dtype == np.int64 and ((0 <= y) & (y < 10)).all()
        assert x.min() >= 0.0 and x.max() <= 1.0
    # Scaled from random uint8 pixels: spread over [0, 1], multiples of 1/255.
    x = np.concatenate([x for x, _ in parts])
    assert x.max() > 0.5
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)


def test_tfds_dataset_under_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=10):
        train, val, info = data.tfds_dataset(
            "mnist", batch_size=4, seed=1, data_dir=tmp_path
        )
        # mock_data leaves info.splits empty, so the sizes are unknown.
        assert info == DataInfo("tfds:mnist", (28, 28, 1), 10, None, None)
        check_mnist_batches(train, 10, 4)
        check_mnist_batches(val, 10, 4)
        assert train.element_spec[0].shape.as_list() == [None, 28, 28, 1]
        # The training set is reshuffled each epoch; validation is not.
        epoch1, epoch2 = concat(train), concat(train)
        assert not np.array_equal(epoch1[0], epoch2[0])
        np.testing.assert_array_equal(
            np.sort(epoch1[0].reshape(10, -1), axis=0),
            np.sort(epoch2[0].reshape(10, -1), axis=0),
        )
        np.testing.assert_array_equal(concat(val)[0], concat(val)[0])


def test_load_tfds_spec_under_mock_data():
    with tfds.testing.mock_data(num_examples=6):
        train, val, info = data.load("tfds:mnist", batch_size=4, seed=0)
        assert info.name == "tfds:mnist"
        assert (info.input_shape, info.num_classes) == ((28, 28, 1), 10)
        check_mnist_batches(train, 6, 4)
        check_mnist_batches(val, 6, 4)


def test_tfds_dataset_refuses_a_dataset_without_image_label_keys():
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(
            ValueError, match=r"supervised keys are \('image', 'label'\).*wine"
        ):
            data.tfds_dataset("wine_quality", batch_size=2)


def test_tfds_dataset_download_failure_explains_data_dir(monkeypatch, tmp_path):
    def offline_load(*args, **kwargs):
        raise ConnectionError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(tfds, "load", offline_load)
    with pytest.raises(RuntimeError) as info:
        data.tfds_dataset("cifar10", data_dir=str(tmp_path / "tfds"))
    message = str(info.value)
    assert "'cifar10'" in message
    assert "download failed" in message
    assert "ConnectionError: [Errno 101] Network is unreachable" in message
    assert f"data_dir={str(tmp_path / 'tfds')!r}" in message
    assert "tfds build cifar10" in message and "--data-dir" in message
    assert isinstance(info.value.__cause__, ConnectionError)

    # Through `load`, without a data_dir: the default one is named.
    with pytest.raises(RuntimeError, match=r"(?s)'mnist'.*default TFDS data_dir"):
        data.load("tfds:mnist")


def test_tfds_dataset_missing_without_download(tmp_path):
    # The real tfds.load: nothing in an empty data_dir, and no download asked.
    with pytest.raises(RuntimeError, match=r"(?s)'mnist'.*`download=False`.*data_dir"):
        data.tfds_dataset("mnist", data_dir=tmp_path, download=False)


def test_tfds_dataset_unknown_name():
    # The real tfds.load: the registry answers without any network access.
    with pytest.raises(
        ValueError,
        match=r"(?s)Unknown TFDS dataset 'mnistt'.*mnist.*`dataset='tfds:mnistt'`",
    ):
        data.tfds_dataset("mnistt")


def test_tfds_dataset_unknown_split(monkeypatch):
    def load_without_split(*args, **kwargs):
        raise ValueError("Unknown split 'validation'. Should be one of ['train'].")

    monkeypatch.setattr(tfds, "load", load_without_split)
    with pytest.raises(ValueError, match=r"Unknown split.*`val_split='validation'`"):
        data.tfds_dataset("mnist", val_split="validation")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": ""}, "`name` should be a non-empty string"),
        ({"name": None}, "`name` should be a non-empty string"),
        ({"batch_size": 0}, "`batch_size` should be a positive integer"),
        ({"seed": -1}, "`seed` should be an integer"),
        ({"data_dir": 3}, "`data_dir` should be a path"),
        ({"train_split": ""}, "`train_split` should be a non-empty string"),
        ({"val_split": None}, "`val_split` should be a non-empty string"),
        ({"download": "yes"}, "`download` should be a bool"),
    ],
)
def test_tfds_dataset_bad_arguments(monkeypatch, kwargs, match):
    def must_not_load(*args, **kwargs):
        raise AssertionError("validation should come before tfds.load")

    monkeypatch.setattr(tfds, "load", must_not_load)
    kwargs = {"name": "mnist", **kwargs}
    with pytest.raises(ValueError, match=re.escape(match)):
        data.tfds_dataset(**kwargs)


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
    with pytest.raises(ValueError, match=rf"'digits', 'tfds:NAME'.*{echo}"):
        data.load(spec)


def test_load_digits_validates_batch_size():
    with pytest.raises(ValueError, match=r"`batch_size=0`"):
        data.load("digits", batch_size=0)
