import re
import socket
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_idim import data
from keras_idim.data import DataInfo
from keras_idim.data import tfds as tfds_module

pytestmark = pytest.mark.usefixtures("tempfiles_in_tmp_path")


def batches(ds):
    """The (x, y) batches of a dataset as NumPy arrays, in order."""
    return [(x.numpy(), y.numpy()) for x, y in ds]


def concat(ds):
    parts = batches(ds)
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


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


@pytest.fixture
def online(monkeypatch):
    """TFDS's mirror "answers": a socket on 127.0.0.1 stands in for it, so
    that a download is attempted (and fails as the test's fake says)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    monkeypatch.setattr(tfds_module, "PROBE_ADDRESS", server.getsockname())
    yield
    server.close()


@pytest.fixture
def offline(monkeypatch):
    """TFDS's mirror does not answer: a closed port on 127.0.0.1."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    address = probe.getsockname()
    probe.close()  # nothing listens there now: connections are refused
    monkeypatch.setattr(tfds_module, "PROBE_ADDRESS", address)


def test_offline_download_fails_within_seconds_and_leaves_nothing(offline, tmp_path):
    # Before: TFDS retried for about 210 s, and left empty folders behind.
    root = tmp_path / "tfds"
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"(?s)'mnist'.*no network.*--no-download"):
        data.tfds_dataset("mnist", data_dir=str(root))
    assert time.monotonic() - started < 30
    assert not root.exists() or not list(root.rglob("*"))


def test_cli_no_download_uses_prepared_data_only(tmp_path, capsys):
    from keras_idim import cli

    root = tmp_path / "tfds"
    started = time.monotonic()
    with pytest.raises(SystemExit) as info:
        cli.main(
            [
                "search",
                "--dataset",
                "tfds:mnist",
                "--data-dir",
                str(root),
                "--no-download",
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert info.value.code == 1
    assert "`download=False`" in capsys.readouterr().err
    assert time.monotonic() - started < 60
    assert not (tmp_path / "out").exists()


def test_tfds_dataset_download_failure_explains_data_dir(monkeypatch, tmp_path, online):
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


def test_tfds_dataset_unknown_split(monkeypatch, online):
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


# tfds_splits: any TFDS dataset (text too), with the same checks


def test_tfds_splits_gives_feature_dicts_of_a_text_dataset():
    with tfds.testing.mock_data(num_examples=7):
        (train, val), info = data.tfds_splits("glue/mrpc", ["train", "validation"])
    assert info.features["label"].num_classes == 2
    rows = list(train.as_numpy_iterator())
    assert len(rows) == 7 and len(list(val)) == 7
    assert {"sentence1", "sentence2", "label"} <= set(rows[0])
    assert isinstance(rows[0]["sentence1"], bytes)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"splits": "train"}, r"`splits` should be a non-empty list.*`splits='train'`"),
        ({"splits": []}, r"`splits=\[\]`"),
        ({"data_dir": 3}, r"`data_dir` should be a path.*`data_dir=3`"),
        ({"download": "no"}, r"`download='no'`"),
    ],
)
def test_tfds_splits_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.tfds_splits("glue/mrpc", **{"splits": ["train"], **kwargs})


def test_tfds_splits_unknown_split_and_name_echo_their_arguments(monkeypatch, online):
    with pytest.raises(
        ValueError, match=r"(?s)Unknown TFDS dataset.*`name='glu/mrpc'`"
    ):
        data.tfds_splits("glu/mrpc", ["train"])

    def load_without_split(*args, **kwargs):
        raise ValueError("Unknown split 'dev'. Should be one of ['train'].")

    monkeypatch.setattr(tfds, "load", load_without_split)
    with pytest.raises(ValueError, match=r"Unknown split 'dev'.*`splits=\['dev'\]`"):
        data.tfds_splits("glue/mrpc", ["dev"])
