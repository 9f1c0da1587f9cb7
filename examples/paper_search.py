"""A d-search on a TFDS dataset with one of the networks of Li et al. 2018.

The three paper examples (`mnist_fc_search.py`, `mnist_lenet_search.py`,
`cifar10_lenet_search.py`) are this function with their settings; run it
directly for any other pairing:

    python examples/paper_search.py --dataset fashion_mnist --model lenet

TFDS downloads the dataset on first use; offline, prepare it elsewhere and
pass its folder with `--data-dir`.
"""

from __future__ import annotations

import argparse
import os

import keras_idim


def main(
    dataset: str = "mnist",
    model: str = "fc",
    *,
    projection: str = "fastfood",
    dims="auto",
    seeds=(0,),
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 0.01,
    baseline_learning_rate: float = 1e-3,
    baseline: float | None = None,
    fraction: float = 0.9,
    start_dim: int = 10,
    max_dim: int | None = None,
    data_dir: str | None = None,
    out: str | None = None,
    verbose: int = 1,
) -> keras_idim.SearchResult:
    """Runs the search; writes results.json, results.csv and curve.png."""
    train, val, info = keras_idim.data.tfds_dataset(
        dataset, batch_size=batch_size, data_dir=data_dir
    )
    build = keras_idim.models.get(model)
    out = out or os.path.join("runs", f"{dataset}_{model}_{projection}")
    result = keras_idim.search(
        lambda: build(info.input_shape, info.num_classes),
        train,
        val,
        projection=projection,
        fraction=fraction,
        baseline=baseline,
        dims=dims,
        seeds=seeds,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        baseline_learning_rate=baseline_learning_rate,
        start_dim=start_dim,
        max_dim=max_dim,
        results_path=os.path.join(out, "results.json"),
        name=f"{model} on tfds:{dataset}",
        verbose=verbose,
    )
    result.to_csv(os.path.join(out, "results.csv"))
    result.plot(os.path.join(out, "curve.png"))
    if verbose:
        print(result.summary())
    return result


def parse_args(defaults: dict) -> dict:
    """Command-line overrides of an example's settings."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default=defaults.get("dataset", "mnist"))
    parser.add_argument("--model", default=defaults.get("model", "fc"))
    parser.add_argument("--projection", default="fastfood")
    parser.add_argument("--epochs", type=int, default=defaults.get("epochs", 10))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    return dict(
        dataset=args.dataset,
        model=args.model,
        projection=args.projection,
        epochs=args.epochs,
        seeds=tuple(range(args.seeds)),
        learning_rate=args.lr,
        data_dir=args.data_dir,
        out=args.out,
    )


if __name__ == "__main__":
    kwargs = parse_args({})
    main(kwargs.pop("dataset"), kwargs.pop("model"), **kwargs)
