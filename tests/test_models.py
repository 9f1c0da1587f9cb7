import pickle
import re

import keras
import numpy as np
import pytest

from keras_idim import data, models
from keras_idim.data import DataInfo


@pytest.mark.parametrize(
    "builder, input_shape, expected",
    [
        # Li et al. 2018: 784*200+200 + 200*200+200 + 200*10+10.
        (models.fc, (28, 28, 1), 199_210),
        (models.fc, (32, 32, 3), 656_810),
        # 156 + 2,416 + 256*120+120 + 120*84+84 + 84*10+10.
        (models.lenet, (28, 28, 1), 44_426),
        # 456 + 2,416 + 400*120+120 + 10,164 + 850.
        (models.lenet, (32, 32, 3), 62_006),
    ],
)
def test_parameter_counts_match_the_paper(builder, input_shape, expected):
    model = builder(input_shape=input_shape, num_classes=10)
    assert model.built
    assert model.count_params() == expected


def test_convnet_parameter_count_by_hand():
    # 3*3*1*16+16 = 160; 3*3*16*32+32 = 4,640; 8x8 -> 4x4 -> 2x2: 128*10+10.
    model = models.convnet(input_shape=(8, 8, 1), num_classes=10)
    assert model.count_params() == 160 + 4_640 + 1_290


def test_fc_hidden_widths():
    model = models.fc(input_shape=(64,), num_classes=3, hidden=(5,))
    assert model.count_params() == 64 * 5 + 5 + 5 * 3 + 3
    linear = models.fc(input_shape=(4, 4), num_classes=2, hidden=())
    assert linear.count_params() == 16 * 2 + 2


@pytest.mark.parametrize(
    "builder, input_shape",
    [
        (models.fc, (28, 28, 1)),
        (models.fc, (64,)),
        (models.lenet, (16, 16, 1)),
        (models.lenet, (32, 32, 3)),
        (models.convnet, (8, 8, 1)),
        (models.convnet, (7, 9, 3)),
    ],
)
def test_outputs_are_probabilities(builder, input_shape):
    model = builder(input_shape=input_shape, num_classes=7)
    assert isinstance(model, keras.Model)
    x = np.random.default_rng(0).random((5, *input_shape), dtype=np.float32)
    probs = keras.ops.convert_to_numpy(model(x))
    assert probs.shape == (5, 7)
    assert model.output_shape == (None, 7)
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.layers[-1].get_config()["activation"] == "softmax"


def test_convnet_trains_with_sparse_categorical_crossentropy():
    model = models.convnet(input_shape=(8, 8, 1), num_classes=3, filters=(4,))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((6, 8, 8, 1), dtype=np.float32)
    history = model.fit(x, np.arange(6) % 3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_get_and_all():
    assert models.get("fc") is models.fc
    assert models.get("LeNet") is models.lenet
    assert models.get("convnet") is models.convnet
    assert models.ALL == {
        "fc": models.fc,
        "lenet": models.lenet,
        "convnet": models.convnet,
    }
    with pytest.raises(ValueError, match=r"'convnet', 'fc', 'lenet'.*`model='vgg'`"):
        models.get("vgg")
    with pytest.raises(ValueError, match="Received: `model=None`"):
        models.get(None)


@pytest.mark.parametrize("builder", [models.fc, models.lenet, models.convnet])
@pytest.mark.parametrize("num_classes", [1, 0, 2.0, True, "10", None])
def test_bad_num_classes(builder, num_classes):
    with pytest.raises(
        ValueError,
        match=r"`num_classes` should be an integer >= 2\. Received: `num_classes=",
    ):
        builder(input_shape=(32, 32, 3), num_classes=num_classes)


@pytest.mark.parametrize("builder", [models.lenet, models.convnet])
@pytest.mark.parametrize(
    "input_shape",
    [(28, 28), (28, 28, 1, 1), (28, 0, 1), (28, -1, 1), (28.0, 28, 1), "28", None],
)
def test_bad_image_input_shape(builder, input_shape):
    with pytest.raises(ValueError, match=r"`input_shape` should be a tuple of 3"):
        builder(input_shape=input_shape, num_classes=10)


@pytest.mark.parametrize("input_shape", [(), (0,), (28, -1), (28.5,), 784, None])
def test_bad_fc_input_shape(input_shape):
    with pytest.raises(ValueError, match=r"`input_shape` should be a non-empty"):
        models.fc(input_shape=input_shape, num_classes=10)


@pytest.mark.parametrize("input_shape", [(15, 28, 1), (28, 15, 1), (8, 8, 1)])
def test_lenet_refuses_images_under_16x16(input_shape):
    echo = re.escape(f"Received: `input_shape={input_shape!r}`")
    with pytest.raises(ValueError, match=rf"at least 16 x 16.*{echo}"):
        models.lenet(input_shape=input_shape, num_classes=10)


def test_convnet_refuses_images_too_small_for_its_poolings():
    with pytest.raises(ValueError, match=r"at least 8 x 8.*`input_shape=\(7, 8, 1\)`"):
        models.convnet(input_shape=(7, 8, 1), num_classes=10, filters=(4, 4, 4))
    # One pooling fewer fits.
    models.convnet(input_shape=(4, 4, 1), num_classes=10, filters=(4, 4))
    with pytest.raises(ValueError, match=r"at least 4 x 4.*`input_shape=\(3, 8, 1\)`"):
        models.convnet(input_shape=(3, 8, 1), num_classes=10)


@pytest.mark.parametrize("hidden", [(0,), (200, -1), (2.5,), 200, None, (True,)])
def test_bad_hidden(hidden):
    with pytest.raises(ValueError, match=r"`hidden` should be a tuple of positive"):
        models.fc(input_shape=(8, 8, 1), num_classes=10, hidden=hidden)


@pytest.mark.parametrize("filters", [(), (0,), (16, -2), (1.5,), 16, None])
def test_bad_filters(filters):
    with pytest.raises(ValueError, match=r"`filters` should be a non-empty tuple"):
        models.convnet(input_shape=(8, 8, 1), num_classes=10, filters=filters)


# linear outputs (regression)


def test_fc_with_linear_outputs():
    model = models.fc(input_shape=(10,), num_classes=1, output_activation=None)
    # 10*200+200 + 200*200+200 + 200*1+1.
    assert model.count_params() == 2_200 + 40_200 + 201
    assert model.output_shape == (None, 1)
    assert model.layers[-1].get_config()["activation"] == "linear"
    # Linear: outputs are not squashed, a constant input gives a finite value.
    y = keras.ops.convert_to_numpy(model(np.full((2, 10), 100.0, np.float32)))
    assert np.abs(y).max() > 1.0
    two = models.fc((4,), 2, hidden=(), output_activation=None)
    assert two.count_params() == 4 * 2 + 2


@pytest.mark.parametrize("activation", ["relu", "linear", "", 0, True])
def test_fc_bad_output_activation(activation):
    echo = re.escape(f"Received: `output_activation={activation!r}`")
    with pytest.raises(ValueError, match=rf"'softmax' or None\. {echo}"):
        models.fc((4,), 2, output_activation=activation)


@pytest.mark.parametrize("num_outputs", [0, -1, 1.0, True, None])
def test_fc_bad_number_of_linear_outputs(num_outputs):
    with pytest.raises(ValueError, match=r"`num_classes` should be a positive integer"):
        models.fc((4,), num_outputs, output_activation=None)


# from_spec


def test_from_spec_builds_fresh_classifiers():
    info = DataInfo("digits", (8, 8, 1), 10, 1437, 360)
    build = models.from_spec("fc", info)
    a, b = build(), build()
    assert a is not b and a.count_params() == 64 * 200 + 200 + 40_200 + 2_010
    assert a.output_shape == (None, 10)
    assert a.layers[-1].get_config()["activation"] == "softmax"
    assert models.from_spec("ConvNet", info)().name == "convnet"
    # functools.partial: picklable, so Ray workers can call it.
    assert pickle.loads(pickle.dumps(build))().output_shape == (None, 10)
    lenet = models.from_spec("lenet", DataInfo("tfds:mnist", (28, 28, 1), 10, 1, 1))
    assert lenet().count_params() == 44_426


def test_from_spec_regression_fc_has_one_linear_output():
    _, _, info = data.load("diabetes", arrays=True)
    model = models.from_spec("fc", info)()
    assert model.input_shape == (None, 10) and model.output_shape == (None, 1)
    assert model.layers[-1].get_config()["activation"] == "linear"
    assert model.count_params() == 10 * 200 + 200 + 40_200 + 201
    two = DataInfo("y", (3,), None, 4, 2, task="regression", num_outputs=2)
    assert models.from_spec("fc", two)().output_shape == (None, 2)
    with pytest.raises(ValueError, match=r"`convnet` builds classifiers only"):
        models.from_spec("convnet", info)


def test_from_spec_saved_model(tmp_path):
    info = DataInfo("digits", (8, 8, 1), 10, 1437, 360)
    saved = models.fc((8, 8, 1), 10, hidden=(3,))
    path = str(tmp_path / "base.keras")
    saved.save(path)
    build = models.from_spec(path, info)
    a, b = build(), build()
    assert a is not b and a.count_params() == saved.count_params()
    for w, v in zip(a.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(w, v)
    missing = str(tmp_path / "missing.keras")
    echo = re.escape(f"Received: `model={missing!r}`")
    with pytest.raises(ValueError, match=rf"does not exist\. {echo}"):
        models.from_spec(missing, info)


def test_from_spec_unknown_model():
    info = DataInfo("digits", (8, 8, 1), 10, 1437, 360)
    with pytest.raises(ValueError, match=r"'convnet', 'fc', 'lenet'.*`model='vgg'`"):
        models.from_spec("vgg", info)
