"""d_int90 of MNIST with the FC net 784-200-200-10 (D = 199,210); Li et al.: 750.

    python examples/mnist_fc_search.py --projection dense --data-dir DIR

TFDS downloads tfds:mnist on first use; offline, prepare it elsewhere and pass
its folder with `--data-dir`. The results go to runs/mnist_fc_PROJECTION/.
"""

from __future__ import annotations

from paper_search import main as search_tfds
from paper_search import parse_args

import keras_idim

DATASET, MODEL = "mnist", "fc"


def main(**kwargs) -> keras_idim.SearchResult:
    """The search with the paper's setting; keyword arguments override it."""
    return search_tfds(
        kwargs.pop("dataset", DATASET), kwargs.pop("model", MODEL), **kwargs
    )


if __name__ == "__main__":
    main(**parse_args({"dataset": DATASET, "model": MODEL}))
