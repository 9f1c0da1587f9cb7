"""The intrinsic dimension of a regression: scikit-learn's diabetes data.

The d-search is not only for classification accuracy: here the network
regresses a disease-progression score, the search judges `val_mae` (mean
absolute error, lower is better: `mode="min"`, which `"auto"` also finds),
and a d passes when its error is at most the baseline's error / 0.9. The
data ship with scikit-learn, so it runs offline.

    python examples/regression_search.py [--out runs/diabetes]

The same search from the command line:

    keras-idim search --dataset diabetes --metric mae --out runs/diabetes-cli
"""

from __future__ import annotations

import argparse
import os

import keras_idim


def main(
    dims: str | list[int] = "auto",
    epochs: int = 20,
    out: str = "runs/diabetes",
    verbose: int = 1,
) -> keras_idim.SearchResult:
    """Runs the search; writes OUT/results.json, results.csv and curve.png.

    Args:
        dims: str or list of int. `"auto"` or the d to try. Defaults to
            `"auto"`.
        epochs: int. Epochs per run at most. Defaults to `20`.
        out: str. Output folder. Defaults to `"runs/diabetes"`.
        verbose: int. 0: silent; 1: a line per run. Defaults to `1`.

    Returns:
        The `SearchResult`.
    """
    train, val, info = keras_idim.data.load("diabetes", arrays=True)
    model_fn = keras_idim.models.from_spec("fc", info)
    result = keras_idim.search(
        model_fn,
        train,
        val,
        loss="mse",
        metrics=["mae"],
        monitor="val_mae",
        mode="min",
        dims=dims,
        epochs=epochs,
        batch_size=32,
        learning_rate=0.03,
        baseline_learning_rate=1e-3,
        results_path=os.path.join(out, "results.json"),
        name="fc on diabetes",
        verbose=verbose,
    )
    result.to_csv(os.path.join(out, "results.csv"))
    result.plot(os.path.join(out, "curve.png"))
    if verbose:
        print(result.summary())
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/diabetes")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    main(epochs=args.epochs, out=args.out)
