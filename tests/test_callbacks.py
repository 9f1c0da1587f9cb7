import keras
import numpy as np
import pytest

from keras_idim.callbacks import DivergenceStop, ThresholdStop


def drive(callback, epoch_logs):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    for epoch, logs in enumerate(epoch_logs):
        callback.on_epoch_end(epoch, logs)
        if model.stop_training:
            return epoch
    return None


def test_stops_at_the_first_epoch_reaching_the_target():
    stop = ThresholdStop(monitor="val_accuracy", target=0.8)
    logs = [{"val_accuracy": v} for v in (0.5, 0.79, 0.8, 0.9)]
    assert drive(stop, logs) == 2
    assert stop.reached and stop.stopped_epoch == 2 and stop.best == 0.8


def test_min_mode_and_reset_between_runs():
    stop = ThresholdStop(monitor="val_loss", target=0.1, mode="min")
    assert drive(stop, [{"val_loss": 0.5}, {"val_loss": 0.05}]) == 1
    assert drive(stop, [{"val_loss": 0.5}, {"val_loss": 0.3}]) is None
    assert not stop.reached and stop.stopped_epoch is None and stop.best == 0.3


def test_nan_never_reaches():
    stop = ThresholdStop(target=0.5)
    assert drive(stop, [{"val_accuracy": float("nan")}] * 3) is None
    assert stop.best is None


def test_missing_metric_warns_with_available_keys():
    stop = ThresholdStop(monitor="val_acc", target=0.5)
    with pytest.warns(UserWarning, match=r"'val_acc'.*\['accuracy', 'loss'\]"):
        drive(stop, [{"loss": 1.0, "accuracy": 0.9}])


def test_stops_a_real_fit():
    x = np.random.default_rng(0).random((64, 4)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2, activation="softmax")]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.1),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    stop = ThresholdStop(monitor="accuracy", target=0.0)
    history = model.fit(x, y, epochs=20, callbacks=[stop], verbose=0)
    assert len(history.history["loss"]) == 1 and stop.stopped_epoch == 0


def test_divergence_stop_records_the_batch():
    x = np.ones((64, 2), np.float32)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(1e30), loss="mse")
    watch = DivergenceStop()
    history = model.fit(
        x,
        np.full(64, 1e10, np.float32),
        batch_size=8,
        epochs=5,
        callbacks=[watch],
        verbose=0,
    )
    assert watch.diverged and watch.diverged_at[0] == 0
    assert len(history.history["loss"]) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"target": None},
            r"`target` should be a finite number. "
            r"Received: `target=None`",
        ),
        ({"target": float("inf")}, r"Received: `target=inf`"),
        ({"target": 0.9, "mode": "up"}, r"Received: `mode='up'`"),
        ({"target": 0.9, "monitor": ""}, r"Received: `monitor=''`"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ThresholdStop(**kwargs)
