"""Train an FC network on scikit-learn's bundled digits in a random subspace.

Runs offline in seconds: it wraps a 64-200-200-10 network (D = 55,210
weights) in a `SubspaceModel` that trains only d of them, with each
projection, and prints the validation accuracy of each beside that of the
same network trained in all D dimensions.

    python examples/digits_subspace.py --dim 200 --epochs 10
"""

from __future__ import annotations

import argparse

import keras
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_idim


def fc_network(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(200, activation="relu"),
            keras.layers.Dense(200, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def train(model: keras.Model, data, epochs: int, learning_rate: float) -> float:
    x_train, x_val, y_train, y_val = data
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0)
    return float(model.evaluate(x_val, y_val, verbose=0)[1])


def main(
    dim: int = 200,
    epochs: int = 10,
    projections=("dense", "sparse", "fastfood"),
    seed: int = 0,
) -> dict[str, float]:
    """Prints and returns the validation accuracy per projection (and full)."""
    features, labels = load_digits(return_X_y=True)
    data = train_test_split(
        (features / 16.0).astype(np.float32),
        labels,
        test_size=0.2,
        stratify=labels,
        random_state=seed,
    )
    results = {"full (D = 55,210)": train(fc_network(seed), data, epochs, 1e-3)}
    for kind in projections:
        model = keras_idim.SubspaceModel(
            fc_network(seed), dim=dim, projection=kind, seed=seed
        )
        results[f"{kind} (d = {dim})"] = train(model, data, epochs, 0.1)
    for name, accuracy in results.items():
        print(f"{name:>20}: validation accuracy {accuracy:.3f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(dim=args.dim, epochs=args.epochs, seed=args.seed)
