"""d_int90 of CIFAR-10 with LeNet (D = 62,006). Li et al. report d_int90 = 2,900.

    python examples/cifar10_lenet_search.py --projection dense --data-dir DIR

TFDS downloads tfds:cifar10 on first use; offline, prepare it elsewhere and pass
its folder with `--data-dir`. The results go to runs/cifar10_lenet_PROJECTION/.
"""

from __future__ import annotations

from paper_search import main as search_tfds
from paper_search import parse_args

import keras_idim

DATASET, MODEL = "cifar10", "lenet"


def main(**kwargs) -> keras_idim.SearchResult:
    """The search with the paper's setting; keyword arguments override it."""
    return search_tfds(
        kwargs.pop("dataset", DATASET), kwargs.pop("model", MODEL), **kwargs
    )


if __name__ == "__main__":
    main(**parse_args({"dataset": DATASET, "model": MODEL}))
