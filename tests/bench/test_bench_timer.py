import keras
import numpy as np

from keras_idim import SubspaceModel
from keras_idim.bench.timer import StepTimer, median


def test_train_step_is_traced_a_bounded_number_of_times():
    base = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8), keras.layers.Dense(2)]
    )
    model = SubspaceModel(base, dim=5)
    model.compile(optimizer="adam", loss="mse")
    traces = []
    train_step = model.train_step

    def counted(data):
        traces.append(1)
        return train_step(data)

    model.train_step = counted
    x = np.zeros((330, 6), np.float32)  # 20 full batches of 16 and one of 10
    model.fit(x, np.zeros((330, 2)), batch_size=16, epochs=1, verbose=0)
    first = len(traces)
    assert 1 <= first <= 2  # the full batches, maybe the partial one
    model.fit(x, np.zeros((330, 2)), batch_size=16, epochs=3, verbose=0)
    assert len(traces) == first  # no retracing per batch or per epoch


def test_median_by_hand():
    assert median([3.0]) == 3.0
    assert median([5.0, 1.0, 3.0]) == 3.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_step_timer_times_each_batch():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    timer = StepTimer()
    x = np.zeros((12, 2), np.float32)
    model.fit(
        x, x[:, :1], batch_size=4, epochs=2, callbacks=[timer.callback], verbose=0
    )
    assert len(timer.times) == 6 and all(t > 0 for t in timer.times)
