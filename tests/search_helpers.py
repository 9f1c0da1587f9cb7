"""Small, importable pieces for the search tests (also used by child processes)."""

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

CALLS = {"model_fn": 0}


def tiny_fc() -> keras.Model:
    """64-16-10 on flattened digits: D = 64*16 + 16 + 16*10 + 10 = 1,210."""
    CALLS["model_fn"] += 1
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def digits_arrays():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=0
    )
    return (x_train, y_train), (x_val, y_val)


def must_not_run(recipe, dim, seed, threshold):
    """A run function for a runner that must not train (a full resume)."""
    raise AssertionError(f"run ({dim}, {seed}) trained again")


# Settings under which tiny_fc on digits fails at d <= 3 and passes at d = 300.
# Fixed rates (the baseline's: the optimizer's own), not the probes of
# `learning_rate="auto"`, which tests/dimsearch/test_rates.py covers.
TINY = dict(
    baseline=1.0,
    fraction=0.5,
    epochs=3,
    batch_size=64,
    learning_rate=0.05,
    baseline_learning_rate=None,
    verbose=0,
)

# A whole automatic search on tiny_fc and digits (10 runs of 3 epochs), for
# the Ray tests.
TINY_RAY = dict(
    baseline=1.0,
    fraction=0.5,
    epochs=3,
    batch_size=64,
    learning_rate=0.05,
    baseline_learning_rate=None,
    dims="auto",
    start_dim=1,
    max_dim=1210,
)


def diabetes_arrays():
    """scikit-learn's diabetes data, standardised (on the training split)."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.2, random_state=0
    )
    mean, std = x_train.mean(0), x_train.std(0)
    y_mean, y_std = y_train.mean(), y_train.std()
    return (
        (
            ((x_train - mean) / std).astype(np.float32),
            ((y_train - y_mean) / y_std).astype(np.float32),
        ),
        (
            ((x_val - mean) / std).astype(np.float32),
            ((y_val - y_mean) / y_std).astype(np.float32),
        ),
    )


def tiny_regressor() -> keras.Model:
    """10-16-1, linear output: D = 10*16 + 16 + 16 + 1 = 193."""
    return keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1),
        ]
    )


def zero_or_not_arrays():
    """Digits as a binary task: is it a 0? Labels float32 of shape (n, 1)."""
    (x_train, y_train), (x_val, y_val) = digits_arrays()
    return (
        (x_train, (y_train == 0).astype(np.float32)[:, None]),
        (x_val, (y_val == 0).astype(np.float32)[:, None]),
    )


def tiny_binary() -> keras.Model:
    """64-8-1 with a sigmoid: D = 64*8 + 8 + 8 + 1 = 529."""
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
