"""Searches side by side, one parameterisation each, on one axis: the
number of trained parameters. A random subspace of the weights, of the
LoRA matrices (`space="lora:4"`) or of a subset of the weights, beside
LoRA's own rank r_int.

`compare` refuses searches that are not comparable: other training or
validation data, another monitored metric or direction, another
baseline (value and kind), or another `fraction`: every search has one
threshold, which the table's footer states.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

from keras_idim.dimsearch import methods
from keras_idim.dimsearch.result import SearchResult
from keras_idim.dimsearch.store import ADDED_KEYS, config_hash
from keras_idim.utils.exports import keras_idim_export
from keras_idim.utils.plotting import log_x_axes


@keras_idim_export("keras_idim.dimsearch.CompareError")
class CompareError(ValueError):
    """Searches that cannot be compared."""


def load(source: str | os.PathLike | SearchResult) -> SearchResult:
    """A result from a `SearchResult`, a results file, or a run folder
    holding `results.json` (as `keras-idim search --out` writes)."""
    if isinstance(source, SearchResult):
        return source
    path = os.fspath(source)
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No results file at {path!r}.")
    return SearchResult.from_json(path)


def parameterisation(result: SearchResult) -> str:
    """What a search trained, in words: `"lora rank"`, or the projection and
    the space of its subspaces (`"fastfood subspace of weights"`,
    `"sparse subspace of lora:4"`)."""
    return methods.of_config(result.config).summary


def _label(result: SearchResult, index: int) -> str:
    name = result.config.get("name") or f"search {index + 1}"
    return f"{name}: {parameterisation(result)}"


def _absolute(result: SearchResult) -> bool:
    return result.baseline.kind == "absolute"


def _setting(*keys: str) -> Callable[[Mapping], object]:
    """Reads configuration keys (an absent added key at its old default)."""

    def read(config: Mapping) -> object:
        values = tuple(config.get(k, ADDED_KEYS.get(k)) for k in keys)
        return values[0] if len(values) == 1 else values

    return read


#: What makes two searches one problem: (what, reads it from a config).
SAME_PROBLEM = (
    ("training data", _setting("train_data")),
    ("validation data", _setting("val_data")),
    ("monitored metric", _setting("monitor", "mode")),
)

#: What trains a local baseline, beside the problem: a search may reuse
#: another's baseline when these are the same too.
BASELINE_RECIPE = (
    ("model", _setting("model_fn")),
    ("seeds", _setting("seeds")),
    ("epochs", _setting("epochs")),
    ("batch size", _setting("batch_size")),
    ("baseline optimizer", _setting("baseline_optimizer")),
    ("loss", _setting("loss")),
    ("metrics", _setting("metrics")),
    ("callbacks", _setting("callbacks")),
)


def difference(first: Mapping, other: Mapping, checks=SAME_PROBLEM) -> str | None:
    """The first of `checks` in which two configurations differ, in words
    ("their validation data differ (A against B)"), or `None`."""
    for what, key in checks:
        if key(first) != key(other):
            return f"their {what} differ ({key(first)!r} against {key(other)!r})"
    return None


def _problem(result: SearchResult) -> dict:
    """A result's configuration, with the metric and direction it used."""
    return {**result.config, "monitor": result.monitor, "mode": result.mode}


def check_comparable(results: Sequence[SearchResult]) -> None:
    """Raises `CompareError` in one line when two searches differ in data,
    metric, direction, baseline or fraction (so in threshold)."""
    first = results[0]
    for i, other in enumerate(results[1:], start=2):
        differs = difference(_problem(first), _problem(other))
        for what, key in (
            ("baseline", lambda r: (r.baseline.kind, r.baseline.value)),
            # An absolute threshold uses no fraction; the baseline check
            # above already compared it.
            ("fraction", lambda r: None if _absolute(r) else r.fraction),
        ):
            if differs is None and key(first) != key(other):
                differs = f"their {what} differ ({key(first)!r} against {key(other)!r})"
        if differs:
            raise CompareError(
                f"Search 1 and search {i} cannot be compared: {differs}."[:400]
            )


def reusable_baseline(
    config: Mapping, source: str | os.PathLike | SearchResult
) -> tuple[SearchResult, dict]:
    """Another search's local baseline, checked to be this search's.

    It is reusable when the two searches are one problem (`SAME_PROBLEM`:
    the data's fingerprints, the monitored metric and its direction, as
    `compare` checks them) and their baselines were trained alike
    (`BASELINE_RECIPE`: model, seeds, epochs, batch size, the baseline's
    optimizer and learning rate, loss, metrics and callbacks, as their
    configurations record them).

    Args:
        config: Mapping. This search's configuration.
        source: SearchResult, results file or run folder.

    Returns:
        `(result, baseline_from)`: the other search, and what the results
        file records of it (`{"path", "config_hash"}`).

    Raises:
        ValueError: in one line, naming what differs, or that the other
            search has no local baseline.
    """
    other = load(source)
    where = (
        "the given search"
        if isinstance(source, SearchResult)
        else (f"{os.fspath(source)}")
    )
    if other.baseline.kind != "local" or not other.baseline_runs:
        raise ValueError(
            f"Cannot reuse the baseline of {where}: it trained none (its "
            f"baseline is {other.baseline.kind}, {other.baseline.value:g})."
        )
    mine = {**config, "mode": config.get("mode", ADDED_KEYS["mode"])}
    differs = difference(mine, _problem(other), SAME_PROBLEM + BASELINE_RECIPE)
    if differs:
        raise ValueError(f"Cannot reuse the baseline of {where}: {differs}."[:400])
    path = None if isinstance(source, SearchResult) else os.fspath(source)
    return other, {"path": path, "config_hash": config_hash(other.config)}


#: Bytes of one trained number in a compact file (float32).
BYTES_PER_NUMBER = 4


def table(results: Sequence[SearchResult]) -> str:
    """One row per search: its parameterisation, d_int or r_int, and the
    trained numbers that reach the threshold, with their bytes as float32
    (what a compact file stores besides its seed and configuration)."""
    rows = [
        f"{'search':<24}  {'parameterisation':<34}  {'answer':>14}  "
        f"{'bytes':>12}  {'trained params':>14}",
    ]
    for i, r in enumerate(results):
        name = r.config.get("name") or f"search {i + 1}"
        answer = f"{r.name} = {'--' if r.d_int is None else r.d_int}"
        params = r.trainable_params
        size = None if params is None else BYTES_PER_NUMBER * params
        rows.append(
            f"{name[:24]:<24}  {parameterisation(r)[:34]:<34}  {answer:>14}  "
            f"{'--' if size is None else f'{size:,}':>12}  "
            f"{'--' if params is None else f'{params:,}':>14}"
        )
    rows.append(
        "bytes: the trained numbers as float32, what a compact file holds "
        "beside its seed and configuration"
    )
    first = results[0]
    rows.append(f"{first.threshold_text()} (every search)")
    return "\n".join(rows)


def plot(results: Sequence[SearchResult], path: str | os.PathLike) -> str:
    """A PNG: the metric against trained parameters (log x), one curve per
    search, with its threshold and its answer marked."""
    with log_x_axes(path, size=(7.5, 4.5), legend=7) as ax:
        for i, r in enumerate(results):
            color = f"C{i}"
            points = sorted(
                (s["trainable_params"], s["mean"])
                for s in r.dim_scores().values()
                if s["mean"] is not None and s["trainable_params"]
            )
            if points:
                ax.plot(*zip(*points), "-o", ms=4, color=color, label=_label(r, i))
            if r.trainable_params:
                ax.axvline(
                    r.trainable_params,
                    color=color,
                    lw=1,
                    ls=":",
                    label=f"{r.name} = {r.d_int} ({r.trainable_params:,} params)",
                )
            ax.axhline(r.threshold, color=color, lw=0.8, ls="--")
        ax.set_xlabel("trained parameters")
        ax.set_ylabel(results[0].monitor)
        ax.set_title("Trained parameters per parameterisation (dashed: threshold)")
    return os.fspath(path)


@keras_idim_export("keras_idim.compare", "keras_idim.dimsearch.compare")
def compare(
    results: Sequence[str | os.PathLike | SearchResult],
    path: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> str:
    """Compares searches on the same data, baseline and threshold.

    Args:
        results: list. `SearchResult`s, results files or run folders.
        path: str or None. Where to write the PNG. Defaults to `None`.
        overwrite: bool. Replace an existing file at `path`. Defaults to
            `False`: it is refused before anything is read.

    Returns:
        The table, one row per search.

    Raises:
        CompareError: the searches differ in data, metric, baseline or
            fraction.
        FileExistsError: `path` exists and `overwrite` is false.

    Example:

    >>> print(keras_idim.compare(["runs/subspace", "runs/lora"],
    ...                          path="runs/compare.png"))
    """
    if isinstance(results, (str, os.PathLike, SearchResult)) or len(results) < 2:
        raise ValueError(
            "`results` should be a list of two or more searches (results, "
            f"results files or run folders). Received: `results={results!r}`"
        )
    if path is not None and os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"`path` {os.fspath(path)!r} already exists. Pass overwrite=True "
            "(--overwrite) to replace it, or choose another path."
        )
    loaded = [load(r) for r in results]
    check_comparable(loaded)
    if path is not None:
        plot(loaded, path)
    return table(loaded)
