"""The frame of every keras_idim plot: a log-x axes saved as a PNG.

matplotlib loads only when a plot is drawn.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from keras_idim.utils.io import staged


@contextlib.contextmanager
def log_x_axes(
    path: str | os.PathLike, *, size: tuple[float, float] = (7, 4.2), legend: int = 8
) -> Iterator[Any]:
    """Yields matplotlib axes; on exit, finishes and saves them to `path`.

    The x axis is logarithmic; the grid, the legend (font size `legend`) and
    the layout are set after the caller has drawn, and the PNG is written
    atomically (see `keras_idim.utils.io.staged`). The figure is closed
    whatever happens.

    Example:

    >>> with log_x_axes("curve.png") as ax:
    ...     ax.plot([10, 100], [0.5, 0.9], label="mean")
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=120)
    try:
        yield ax
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize=legend)
        fig.tight_layout()
        with staged(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
