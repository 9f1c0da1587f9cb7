"""The d-search: find the intrinsic dimension d_int automatically, resumably."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import heapq
import io
import json
import math
import numbers
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_idim import projections as projections_module
from keras_idim.callbacks import DivergenceStop, ThresholdStop
from keras_idim.projections.base import Projection, check_positive_int
from keras_idim.subspace import SubspaceModel

#: Format tag and version of the results file.
RESULTS_FORMAT = "keras_idim.search"
RESULTS_VERSION = 1
STATUSES = ("ok", "diverged", "error")


class SearchFileError(ValueError):
    """A results file that cannot be used: corrupt, foreign, or mismatched."""


# -- records --


class Baseline(NamedTuple):
    """The metric that the threshold is a fraction of.

    `kind` is `"local"` (the same network trained in all D dimensions with
    the same recipe; `value` is the mean over seeds of its best metric) or
    `"global"` (a number the user gave, e.g. 1.0).
    """

    value: float
    kind: str

    def __float__(self) -> float:
        return float(self.value)


@dataclasses.dataclass
class RunRecord:
    """One training run of the search (a subspace run, or a baseline run).

    Attributes:
        dim: int or None. d, or `None` for a baseline run (all D weights).
        seed: int. Seed of the initialisation and of the projection.
        projection: str. The projection kind, or `"none"` for a baseline.
        metric: float or None. Best monitored value over the run's epochs
            (finite values only), `None` if there was none.
        epochs: int. Epochs run.
        stopped_early: bool. Whether the threshold stopped the run.
        seconds: float. Wall time of the run.
        status: str. `"ok"`, `"diverged"` (NaN or infinite loss) or
            `"error"` (an exception; see `message`).
        message: str or None. What went wrong, if anything.
        history: list of float. The monitored value at each epoch.
    """

    dim: int | None
    seed: int
    projection: str
    metric: float | None
    epochs: int
    stopped_early: bool
    seconds: float
    status: str
    message: str | None = None
    history: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> RunRecord:
        return cls(
            **{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        )

    @classmethod
    def error(
        cls, dim: int | None, seed: int, projection: str, seconds: float, message: str
    ) -> RunRecord:
        """A run that ended in an error: no metric, no epoch."""
        return cls(dim, seed, projection, None, 0, False, seconds, "error", message)


def _ok_metrics(records: Sequence[RunRecord]) -> list[float]:
    return [r.metric for r in records if r.status == "ok" and r.metric is not None]


def _passes(records: Sequence[RunRecord], threshold: float) -> bool:
    """A d passes when every run of it is ok and their mean metric reaches it."""
    values = _ok_metrics(records)
    return (
        bool(values)
        and len(values) == len(records)
        and float(np.mean(values)) >= threshold
    )


# -- the strategy --


def auto_next_dim(
    outcomes: Mapping[int, bool],
    *,
    start: int = 10,
    tolerance: float = 0.1,
    max_dim: int,
) -> int | None:
    """The next d to try in an automatic search, or `None` when it is done.

    A pure function of the pass/fail outcomes so far. It brackets by doubling
    from `start` (or halving, if `start` already passes) until one d fails
    and a d at most twice as large passes, then bisects on a log scale (the
    geometric mean of the bracket, rounded) until `hi / lo <= 1 + tolerance`
    or no integer is left between them. The answer is then the smallest
    passing d; if `max_dim` fails, the search ends with no answer.

    Runs needed (per seed), for an answer d*: about `log2(d* / start) + 1`
    to bracket and `log2(log(2) / log(1 + tolerance))` (3 for the default
    tolerance of 0.1) to bisect: 11 runs for d* = 750 from start = 10,
    against 25 for a 25-point grid.

    Args:
        outcomes: Mapping. d -> whether it reached the threshold.
        start: int. The first d. Defaults to `10`.
        tolerance: float. Stop when the bracket's ratio is at most
            `1 + tolerance`. Defaults to `0.1`.
        max_dim: int. The largest d to try.

    Returns:
        The next d, or `None`.

    Example:

    >>> auto_next_dim({}, start=10, max_dim=1000)
    10
    >>> auto_next_dim({10: False}, start=10, max_dim=1000)
    20
    >>> auto_next_dim({10: False, 20: True}, start=10, max_dim=1000)
    14
    """
    start = min(start, max_dim)
    if not outcomes:
        return start
    passing = [d for d, ok in outcomes.items() if ok]
    if not passing:
        largest = max(outcomes)
        return None if largest >= max_dim else min(2 * largest, max_dim)
    hi = min(passing)
    failing = [d for d, ok in outcomes.items() if not ok and d < hi]
    if not failing:
        return None if hi <= 1 else hi // 2
    lo = max(failing)
    if hi / lo <= 1 + tolerance or hi - lo <= 1:
        return None
    mid = int(round(math.sqrt(lo * hi)))
    return min(max(mid, lo + 1), hi - 1)


def smallest_passing(outcomes: Mapping[int, bool]) -> int | None:
    """The smallest d that passed, or `None`."""
    passing = [d for d, ok in outcomes.items() if ok]
    return min(passing) if passing else None


def follow(
    next_dim: Callable[[Mapping[int, bool]], int | None],
    finished: Mapping[int, bool],
    path: Mapping[int, bool] | None = None,
) -> tuple[dict[int, bool], int | None]:
    """Follows a sequential strategy through the outcomes already known.

    Starting from `path`, asks `next_dim` for the next d and takes its
    outcome from `finished` for as long as it is there. This is what the
    sequential search would have done with the same runs, whatever else
    ran beside them.

    Args:
        next_dim: callable. The strategy: outcomes so far -> next d or
            `None` when it is done (e.g. `auto_next_dim` with its settings).
        finished: Mapping. d -> passed, for every d whose runs all finished.
        path: Mapping or None. Outcomes to start from. Defaults to none.

    Returns:
        `(path, next)`: the outcomes the strategy used, in the order it
        tried them, and the first d it wants that has not finished (`None`
        when the search is over).
    """
    path = dict(path or {})
    while (dim := next_dim(path)) is not None and dim in finished:
        path[dim] = finished[dim]
    return path, dim


def plan_dims(
    next_dim: Callable[[Mapping[int, bool]], int | None],
    finished: Mapping[int, bool],
    count: int,
    *,
    lean: float = 0.75,
) -> list[int]:
    """Up to `count` values of d worth running now, the most useful first.

    The first is the d the sequential strategy needs next (see `follow`).
    The others are speculative: the d the strategy would try after each
    possible outcome of the ones still open, taken best-first by the
    probability of that future. While the path so far is all fails (or all
    passes) the same outcome is given probability `lean`, because a
    bracketing search keeps doubling (or halving) until it turns; inside a
    bracket both outcomes count as even. The choice only decides what runs
    early: the answer is always taken along the sequential path, so it is
    the sequential search's answer for the same runs.

    Args:
        next_dim: callable. The strategy, as in `follow`.
        finished: Mapping. d -> passed, for every d whose runs all finished.
        count: int. How many values of d to return at most.
        lean: float. Probability given to continuing the trend. Defaults
            to `0.75`.

    Returns:
        A list of distinct d not in `finished`, at most `count` long; empty
        when the search is over.

    Example:

    >>> step = lambda o: auto_next_dim(o, start=10, max_dim=1000)
    >>> plan_dims(step, {}, 3)  # 10, then 20 if it fails, 5 if it passes
    [10, 20, 5]
    >>> plan_dims(step, {10: False, 20: True}, 3)
    [14, 17, 12]
    """
    path, first = follow(next_dim, finished)
    if first is None or count < 1:
        return []
    heap = [(-1.0, 0, path, first)]
    planned: list[int] = []
    pushed = 1
    while heap and len(planned) < count and pushed < 8 * count + 8:
        negative_p, _, path, dim = heapq.heappop(heap)
        if dim not in planned:
            planned.append(dim)
        seen = set(path.values())
        for outcome in (False, True):
            p = -negative_p * (
                0.5 if len(seen) != 1 else lean if outcome in seen else 1 - lean
            )
            branch, following = follow(next_dim, finished, {**path, dim: outcome})
            if following is not None:
                heapq.heappush(heap, (-p, pushed, branch, following))
                pushed += 1
    return planned


# -- the result --


@dataclasses.dataclass
class SearchResult:
    """What a d-search found.

    Attributes:
        d_int: int or None. The smallest d whose mean metric over seeds
            reached the threshold (`d_int90` for `fraction=0.9`), or `None`
            if no tried d reached it.
        fraction: float. The fraction of the baseline to reach.
        threshold: float. `fraction * baseline.value`.
        baseline: Baseline. The value and its kind (`"local"`/`"global"`).
        runs: list of RunRecord. The subspace runs on the search's path, in
            the order the sequential strategy tries them.
        baseline_runs: list of RunRecord. The local baseline's runs.
        speculative_runs: list of RunRecord. Runs that a parallel search
            (`workers > 1`) started ahead and that finished, but that the
            sequential strategy did not need; kept, but not part of the
            answer (empty for `workers=1`).
        config: dict. The search's configuration (what the results file
            checks when resuming).
        monitor: str. The metric (higher is better).
    """

    d_int: int | None
    fraction: float
    threshold: float
    baseline: Baseline
    runs: list[RunRecord]
    baseline_runs: list[RunRecord] = dataclasses.field(default_factory=list)
    config: dict = dataclasses.field(default_factory=dict)
    monitor: str = "val_accuracy"
    speculative_runs: list[RunRecord] = dataclasses.field(default_factory=list)

    # -- derived views --

    def dim_scores(self) -> dict[int, dict]:
        """Per d: mean and spread of the metric over seeds, and pass/fail."""
        scores: dict[int, dict] = {}
        for dim in sorted({r.dim for r in self.runs}):
            runs = [r for r in self.runs if r.dim == dim]
            values = _ok_metrics(runs)
            scores[dim] = {
                "mean": float(np.mean(values)) if values else None,
                "min": min(values) if values else None,
                "max": max(values) if values else None,
                "runs": len(runs),
                "passed": _passes(runs, self.threshold),
            }
        return scores

    @property
    def name(self) -> str:
        return f"d_int{round(100 * self.fraction)}"

    def summary(self) -> str:
        """A printable table of d against the metric, and the answer."""
        lines = [
            f"{'d':>9}  {'runs':>4}  {'mean ' + self.monitor:>18}  "
            f"{'min':>7}  {'max':>7}  pass",
        ]
        for dim, s in self.dim_scores().items():
            fmt = lambda v: "     --" if v is None else f"{v:7.4f}"  # noqa: E731
            lines.append(
                f"{dim:>9}  {s['runs']:>4}  {fmt(s['mean']):>18}  "
                f"{fmt(s['min'])}  {fmt(s['max'])}  {'yes' if s['passed'] else 'no'}"
            )
        lines.append(self.verdict())
        return "\n".join(lines)

    def verdict(self) -> str:
        """One line: the answer with its threshold and baseline."""
        base = (
            f"threshold {self.threshold:.4f} = {self.fraction:g} x "
            f"{self.baseline.kind} baseline {self.baseline.value:.4f}"
        )
        if self.d_int is None:
            tried = max((r.dim for r in self.runs), default=None)
            return (
                f"{self.name} not found: no tried d (up to {tried}) reached the {base}"
            )
        return f"{self.name} = {self.d_int} ({base})"

    def __str__(self) -> str:
        return self.summary()

    # -- files --

    def to_dict(self) -> dict:
        return _state_dict(
            self.config,
            self.monitor,
            self.fraction,
            self.baseline,
            self.baseline_runs,
            self.runs,
            self.d_int,
            self.speculative_runs,
        )

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The result as JSON; written atomically to `path` when given."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=True)
        if path is not None:
            atomic_write(path, text)
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike) -> SearchResult:
        """Reads a result from a JSON file path or a JSON string."""
        text = source
        if not (isinstance(source, str) and source.lstrip().startswith("{")):
            text = _read_text(source)
        data = _parse_results(text, source)
        baseline = data.get("baseline") or {}
        if baseline.get("value") is None:
            raise SearchFileError(
                f"The results file {source!s} holds no baseline yet: the "
                "search that wrote it did not get past its baseline."
            )
        return cls(
            d_int=data.get("d_int"),
            fraction=data["fraction"],
            threshold=data["threshold"],
            baseline=Baseline(baseline["value"], baseline["kind"]),
            runs=[RunRecord.from_dict(r) for r in data.get("runs", [])],
            baseline_runs=[
                RunRecord.from_dict(r) for r in data.get("baseline_runs", [])
            ],
            config=data.get("config", {}),
            monitor=data.get("monitor", "val_accuracy"),
            speculative_runs=[
                RunRecord.from_dict(r) for r in data.get("speculative_runs", [])
            ],
        )

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """One row per run: the baseline's, then the path's; written to `path`."""
        fields = [f.name for f in dataclasses.fields(RunRecord) if f.name != "history"]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for r in self.baseline_runs + self.runs:
            row = r.to_dict()
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in fields})
        if path is not None:
            atomic_write(path, out.getvalue())
        return out.getvalue()

    def plot(self, path: str | os.PathLike) -> str:
        """Saves a PNG: metric against d (log x), mean and spread over seeds.

        Dots are single runs, the line is the mean over seeds with the band
        from min to max; horizontal lines mark the baseline and the
        threshold, and a vertical line marks d_int.

        Returns:
            The path written.
        """
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        scores = {d: s for d, s in self.dim_scores().items() if s["mean"] is not None}
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
        try:
            ok = [r for r in self.runs if r.metric is not None]
            ax.scatter(
                [r.dim for r in ok],
                [r.metric for r in ok],
                s=14,
                color="tab:blue",
                alpha=0.45,
                label="runs",
            )
            dims = sorted(scores)
            if dims:
                ax.plot(
                    dims,
                    [scores[d]["mean"] for d in dims],
                    "-o",
                    ms=4,
                    color="tab:blue",
                    label="mean over seeds",
                )
                ax.fill_between(
                    dims,
                    [scores[d]["min"] for d in dims],
                    [scores[d]["max"] for d in dims],
                    color="tab:blue",
                    alpha=0.15,
                )
            ax.axhline(
                self.baseline.value,
                color="black",
                lw=1,
                ls="--",
                label=f"{self.baseline.kind} baseline {self.baseline.value:.3f}",
            )
            ax.axhline(
                self.threshold,
                color="tab:red",
                lw=1,
                label=f"threshold ({self.fraction:g} x baseline)",
            )
            if self.d_int is not None:
                ax.axvline(
                    self.d_int,
                    color="tab:green",
                    lw=1.2,
                    label=f"{self.name} = {self.d_int}",
                )
            ax.set_xscale("log")
            ax.set_xlabel("subspace dimension d")
            ax.set_ylabel(self.monitor)
            projection = self.config.get("projection", "")
            ax.set_title(f"Intrinsic dimension ({projection} projection)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(loc="lower right", fontsize=8)
            fig.tight_layout()
            fig.savefig(os.fspath(path))
        finally:
            plt.close(fig)
        return os.fspath(path)


# -- the results file --


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` through a temporary file and `os.replace`.

    A reader (or a crash) sees the old file or the new one, never half of
    one. The folder is created if needed.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def config_hash(config: Mapping) -> str:
    """SHA-256 of the canonical JSON of a configuration."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _read_text(path: str | os.PathLike) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _parse_results(text: str, source: Any) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise SearchFileError(
            f"The results file {source!s} is corrupt (not valid JSON: {e}). "
            "Move it away or delete it to start the search afresh."
        ) from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise SearchFileError(
            f"The file {source!s} is not a keras_idim search results file. "
            "Use another `results_path`."
        )
    if data.get("version") != RESULTS_VERSION:
        raise SearchFileError(
            f"The results file {source!s} has format version "
            f"{data.get('version')!r}; this keras_idim reads version "
            f"{RESULTS_VERSION}."
        )
    try:
        for key in ("config", "config_hash", "runs"):
            data[key]  # noqa: B018
        [RunRecord.from_dict(r) for r in data["runs"]]
        for key in ("baseline_runs", "speculative_runs"):
            [RunRecord.from_dict(r) for r in data.get(key, [])]
    except (KeyError, TypeError) as e:
        raise SearchFileError(
            f"The results file {source!s} is corrupt (missing or malformed "
            f"{e}). Move it away or delete it to start the search afresh."
        ) from None
    return data


def _load_previous(path: str, config: dict) -> dict | None:
    """The stored state of an earlier search with this config, if any."""
    if not os.path.exists(path):
        return None
    data = _parse_results(_read_text(path), path)
    if data["config_hash"] != config_hash(config):
        theirs = data.get("config", {})
        differ = sorted(
            k for k in set(config) | set(theirs) if config.get(k) != theirs.get(k)
        )
        raise SearchFileError(
            f"The results file {path} was written by a search with another "
            f"configuration (differing in: {', '.join(differ) or 'its hash'}). "
            "Nothing was overwritten: use another `results_path`, or delete "
            "the file to start afresh."
        )
    return data


# -- configuration helpers --


def _describe_data(data: Any) -> Any:
    """A JSON description of a dataset, to detect a changed one on resume."""
    if isinstance(data, tf.data.Dataset):
        return {
            "tf.data": str(data.element_spec),
            "cardinality": int(data.cardinality()),
        }
    if isinstance(data, (tuple, list)):
        return [_describe_data(a) for a in data]
    if isinstance(data, np.ndarray) or hasattr(data, "__array__"):
        array = np.ascontiguousarray(np.asarray(data))
        return {
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
        }
    return repr(data)


def _describe_object(obj: Any) -> Any:
    """A description of a loss or function that is stable across processes."""
    if isinstance(obj, str):
        return obj
    if hasattr(obj, "get_config"):
        return keras.saving.serialize_keras_object(obj)
    return (
        getattr(obj, "__module__", "")
        + "."
        + getattr(obj, "__qualname__", type(obj).__qualname__)
    )


def _optimizer_factory(
    optimizer: Any, learning_rate: float | None
) -> tuple[Callable[[], keras.optimizers.Optimizer], Any]:
    """A factory of fresh optimizers, and a JSON description of it."""
    if isinstance(optimizer, str):

        def make() -> keras.optimizers.Optimizer:
            opt = keras.optimizers.get(optimizer)
            if learning_rate is not None:
                opt.learning_rate = learning_rate
            return opt

        make()  # fail early on an unknown name
        return make, {"name": optimizer, "learning_rate": learning_rate}
    if isinstance(optimizer, keras.optimizers.Optimizer):
        config = keras.optimizers.serialize(optimizer)
        if learning_rate is not None:
            config["config"]["learning_rate"] = learning_rate
        return (lambda: keras.optimizers.deserialize(config)), config
    if callable(optimizer):
        return optimizer, _describe_object(optimizer)
    raise ValueError(
        "`optimizer` should be an optimizer name, a keras optimizer (its "
        "config is copied for each run) or a function returning a fresh "
        f"optimizer. Received: `optimizer={optimizer!r}`"
    )


def _is_positive_number(value: Any) -> bool:
    """A finite real number > 0 (bools are refused)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and value > 0
    )


def _check_fraction(fraction: Any) -> float:
    if not _is_positive_number(fraction) or fraction > 1:
        raise ValueError(
            "`fraction` should be a number in (0, 1], e.g. 0.9 for d_int90. "
            f"Received: `fraction={fraction!r}`"
        )
    return float(fraction)


def _check_dims(dims: Any) -> list[int] | str:
    if isinstance(dims, str):
        if dims != "auto":
            raise ValueError(
                "`dims` should be 'auto' or a list of positive integers. "
                f"Received: `dims={dims!r}`"
            )
        return dims
    try:
        values = sorted({check_positive_int("dims", d) for d in dims})
    except (TypeError, ValueError):
        raise ValueError(
            "`dims` should be 'auto' or a list of positive integers. "
            f"Received: `dims={dims!r}`"
        ) from None
    if not values:
        raise ValueError(f"`dims` should not be empty. Received: `dims={dims!r}`")
    return values


def _check_seeds(seeds: Any) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    try:
        values = list(seeds)
        if (
            not values
            or len(set(values)) != len(values)
            or any(
                isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0
                for s in values
            )
        ):
            raise TypeError
    except TypeError:
        raise ValueError(
            "`seeds` should be a non-empty sequence of distinct non-negative "
            f"integers. Received: `seeds={seeds!r}`"
        ) from None
    return [int(s) for s in values]


# -- the search --


def search(
    model_fn: Callable[[], keras.Model],
    train_data: Any,
    val_data: Any,
    *,
    projection: str = "fastfood",
    fraction: float = 0.9,
    baseline: float | None = None,
    dims: str | Sequence[int] = "auto",
    seeds: Iterable[int] = (0,),
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: Any = "adam",
    learning_rate: float | None = None,
    baseline_learning_rate: float | None = None,
    loss: Any = "sparse_categorical_crossentropy",
    monitor: str = "val_accuracy",
    structure_aware: bool = False,
    results_path: str | os.PathLike | None = None,
    tolerance: float = 0.1,
    start_dim: int = 10,
    max_dim: int | None = None,
    name: str | None = None,
    verbose: int = 1,
    workers: int = 1,
    ray_address: str | None = None,
) -> SearchResult:
    """Finds the intrinsic dimension: the smallest d that reaches the threshold.

    The threshold is `fraction` times a baseline. The baseline is *local* by
    default: `model_fn()` trained in all its D dimensions with the same
    recipe (for each seed; their mean of the best `monitor` value); a float
    makes it *global* (e.g. `1.0`). Then each tried d trains
    `SubspaceModel(model_fn(), d, projection, seed=s)` for every seed `s`
    (which seeds both the initialisation and P); a run stops as soon as it
    reaches the threshold (`ThresholdStop`). A d passes when the mean over
    seeds of the runs' best metric reaches the threshold; a run that
    diverges (NaN or infinite loss) or raises is recorded with that status,
    counts as not reaching it, and the search goes on.

    - `dims="auto"`: brackets by doubling from `start_dim` until a d passes,
      then bisects on a log scale until `hi / lo <= 1 + tolerance` (see
      `auto_next_dim`): about `log2(d_int / start_dim) + 4` values of d, e.g.
      11 for d_int = 750 against 25 for a 25-point grid.
    - `dims=[...]`: runs them in increasing order and stops at the first d
      that passes.

    With `results_path`, the state is written atomically after every run
    (the configuration and its hash, the baseline, every run). Calling
    `search` again with the same path and configuration skips every finished
    run and continues; a file from another configuration, or a corrupt one,
    is an error naming the file, and is never overwritten.

    Args:
        model_fn: callable. Returns a fresh, built `keras.Model` (called after
            `keras.utils.set_random_seed(seed)` for each run).
        train_data: tuple or tf.data.Dataset. `(x, y)` arrays (batched with
            `batch_size`, shuffled each epoch) or a batched dataset.
        val_data: tuple or tf.data.Dataset. Validation data, likewise.
        projection: str. `"fastfood"`, `"dense"` or `"sparse"`. Defaults to
            `"fastfood"`.
        fraction: float. Fraction of the baseline to reach. Defaults to `0.9`.
        baseline: float or None. A global baseline; `None` trains the local
            one. Defaults to `None`.
        dims: str or list of int. `"auto"` or the values of d to try.
            Defaults to `"auto"`.
        seeds: iterable of int. Seeds of each d (and of the baseline).
            Defaults to `(0,)`.
        epochs: int. Epochs per run at most. Defaults to `10`.
        batch_size: int. Batch size for array inputs. Defaults to `128`.
        optimizer: str, keras optimizer or callable. A fresh optimizer is
            made for each run. Defaults to `"adam"`.
        learning_rate: float or None. Learning rate of the subspace runs;
            `None` keeps the optimizer's. Subspace training usually wants a
            larger one than full training. Defaults to `None`.
        baseline_learning_rate: float or None. Learning rate of the local
            baseline's runs; `None` keeps the optimizer's. Defaults to `None`.
        loss: str or keras loss. Defaults to
            `"sparse_categorical_crossentropy"` (models that output
            probabilities, like `keras_idim.models`).
        monitor: str. The metric, higher is better. `"val_accuracy"` or
            `"accuracy"`, from the compiled accuracy metric. Defaults to
            `"val_accuracy"`.
        structure_aware: bool. SAID subspaces. Defaults to `False`.
        results_path: str or None. The resumable results file. Defaults to
            `None` (nothing written).
        tolerance: float. Relative precision of the automatic search.
            Defaults to `0.1`.
        start_dim: int. The first d of the automatic search. Defaults to `10`.
        max_dim: int or None. The largest d the automatic search tries;
            `None` means D, the model's parameter count. Defaults to `None`.
        name: str or None. A name for the experiment, stored in the
            configuration (e.g. model and dataset). Defaults to `None`.
        verbose: int. 0: silent; 1: one line per run. Defaults to `1`.
        workers: int. How many runs go at once. `1` runs them one after the
            other in this process. More runs them as Ray tasks (needs
            `pip install "keras-idim[ray]"`): the seeds of a d, and the d
            that the strategy may need next (see `plan_dims`), in worker
            processes that each import TensorFlow once and are reused; a run
            whose worker dies is run again (Ray's retries). The answer is
            the sequential search's for the same runs: runs started ahead
            and not needed are kept in `speculative_runs`. Only this process
            writes the results file. `workers` is not part of the
            configuration: a search can be resumed with another count.
            Defaults to `1`.
        ray_address: str or None. A Ray cluster to join (e.g. `"auto"`,
            or `"HEAD_IP:6379"`); `None` starts a Ray on this machine only,
            bound to 127.0.0.1, when `workers > 1`. If Ray is already
            initialised in this process, that connection is used. Defaults
            to `None`.

    Returns:
        A `SearchResult`.

    Example:

    >>> result = keras_idim.search(
    ...     lambda: keras_idim.models.fc((8, 8, 1), 10), train, val,
    ...     dims="auto", learning_rate=0.03, results_path="runs/results.json")
    >>> result.d_int, result.threshold
    """
    # Validate everything before any work.
    if not callable(model_fn):
        raise ValueError(
            "`model_fn` should be a function returning a fresh, built "
            f"keras.Model. Received: `model_fn={model_fn!r}`"
        )
    projection_name = projections_module.get(projection).name
    if isinstance(projection, Projection) or not isinstance(projection, str):
        projection = projection_name
    fraction = _check_fraction(fraction)
    if baseline is not None and not _is_positive_number(baseline):
        raise ValueError(
            "`baseline` should be None (a local baseline) or a positive "
            f"number (a global one). Received: `baseline={baseline!r}`"
        )
    dims = _check_dims(dims)
    seeds = _check_seeds(seeds)
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    start_dim = check_positive_int("start_dim", start_dim)
    if max_dim is not None:
        max_dim = check_positive_int("max_dim", max_dim)
    if not _is_positive_number(tolerance):
        raise ValueError(
            "`tolerance` should be a positive number (e.g. 0.1 for 10 %). "
            f"Received: `tolerance={tolerance!r}`"
        )
    for arg, value in (
        ("learning_rate", learning_rate),
        ("baseline_learning_rate", baseline_learning_rate),
    ):
        if value is not None and not _is_positive_number(value):
            raise ValueError(
                f"`{arg}` should be a positive number or None. "
                f"Received: `{arg}={value!r}`"
            )
    workers = check_positive_int("workers", workers)
    if ray_address is not None and not (isinstance(ray_address, str) and ray_address):
        raise ValueError(
            "`ray_address` should be None (a Ray on this machine) or the "
            "address of a Ray cluster, e.g. 'auto' or 'HEAD_IP:6379'. "
            f"Received: `ray_address={ray_address!r}`"
        )
    if workers > 1 or ray_address is not None:
        from keras_idim.workers import check_ray

        check_ray(workers, ray_address, train_data, val_data)
    if not isinstance(monitor, str) or not monitor:
        raise ValueError(
            f"`monitor` should be a metric name. Received: `monitor={monitor!r}`"
        )
    sub_optimizer, sub_opt_config = _optimizer_factory(optimizer, learning_rate)
    base_optimizer, base_opt_config = _optimizer_factory(
        optimizer, baseline_learning_rate
    )
    _as_dataset(train_data, batch_size, shuffle=True, arg="train_data")  # checks
    _as_dataset(val_data, batch_size, shuffle=False, arg="val_data")
    results_path = None if results_path is None else os.fspath(results_path)

    config = {
        "name": name,
        "model_fn": _describe_object(model_fn),
        "train_data": _describe_data(train_data),
        "val_data": _describe_data(val_data),
        "projection": projection_name,
        "structure_aware": structure_aware,
        "fraction": fraction,
        "baseline": baseline,
        "dims": dims,
        "seeds": seeds,
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": sub_opt_config,
        "baseline_optimizer": base_opt_config,
        "loss": _describe_object(loss),
        "monitor": monitor,
        "tolerance": float(tolerance),
        "start_dim": start_dim,
        "max_dim": max_dim,
    }
    config = json.loads(json.dumps(config, default=str))  # as stored in JSON
    previous = _load_previous(results_path, config) if results_path else None
    done: dict[tuple, RunRecord] = {}
    if previous:
        for r in (
            previous.get("baseline_runs", [])
            + previous["runs"]
            + previous.get("speculative_runs", [])
        ):
            record = RunRecord.from_dict(r)
            done[(record.dim, record.seed)] = record
    recipe = _Recipe(
        model_fn=model_fn,
        train_data=train_data,
        val_data=val_data,
        batch_size=batch_size,
        epochs=epochs,
        loss=loss,
        monitor=monitor,
        projection=projection_name,
        structure_aware=structure_aware,
        optimizer=sub_optimizer,
        baseline_optimizer=base_optimizer,
    )

    def say(message: str) -> None:
        if verbose:
            print(message, flush=True)

    if done:
        say(f"resuming from {results_path}: {len(done)} finished runs")

    # The strategy, as a pure function of the finished outcomes.
    if dims == "auto":

        def next_dim(outcomes: Mapping[int, bool]) -> int | None:
            return auto_next_dim(
                outcomes, start=start_dim, tolerance=tolerance, max_dim=max_dim
            )

    else:

        def next_dim(outcomes: Mapping[int, bool]) -> int | None:
            if any(outcomes.values()):
                return None
            return next((d for d in dims if d not in outcomes), None)

    threshold: float | None = None
    base: Baseline | None = None

    def finished_outcomes() -> dict[int, bool]:
        outcomes = {}
        for dim in {d for d, _ in done if d is not None}:
            records = [done.get((dim, s)) for s in seeds]
            if all(records):
                outcomes[dim] = _passes(records, threshold)
        return outcomes

    def ordered_runs() -> tuple[list[RunRecord], list[RunRecord]]:
        """Runs on the sequential path (in its order), and the others."""
        if threshold is None:
            path_dims: list[int] = []
        else:
            path, frontier = follow(next_dim, finished_outcomes())
            path_dims = [*path, *([frontier] if frontier is not None else [])]
        keys = [(d, s) for d in path_dims for s in seeds if (d, s) in done]
        on_path = set(keys)
        extra = [k for k in done if k[0] is not None and k not in on_path]
        return [done[k] for k in keys], [done[k] for k in extra]

    def save() -> None:
        if results_path:
            runs, speculative = ordered_runs()
            state = _state_dict(
                config,
                monitor,
                fraction,
                base,
                [done[(None, s)] for s in seeds if (None, s) in done],
                runs,
                None,
                speculative,
            )
            atomic_write(results_path, json.dumps(state, indent=1))

    def report(record: RunRecord) -> None:
        if record.dim is None:
            head = "baseline "
        else:
            head = f"d {record.dim:>8}"
        say(
            f"{head}  seed {record.seed}  {monitor} {_fmt(record.metric)}  "
            f"epochs {record.epochs}  {record.seconds:6.1f}s  {record.status}"
            f"{'  (reached threshold)' if record.stopped_early else ''}"
            f"{'  ' + record.message if record.message else ''}"
        )

    if max_dim is None and dims == "auto":  # D, the model's parameter count
        keras.utils.set_random_seed(seeds[0])
        probe = model_fn()
        max_dim = int(sum(int(np.prod(v.shape)) for v in probe.trainable_variables))
        del probe

    runner: _Runner | None = None

    def drive(wanted: Callable[[int], list[tuple]]) -> None:
        """Runs tasks until `wanted` asks for none; saves after each run."""
        nonlocal runner
        while True:
            slots = 1 if runner is None else runner.slots
            tasks = wanted(slots)
            if runner is None and tasks:
                runner = _make_runner(recipe, workers, ray_address, say)
            if runner is None:
                return
            for task in runner.running():
                if task not in tasks:
                    runner.cancel(task)  # speculative, and no longer useful
            for task in tasks:
                if runner.free() <= 0:
                    break
                if task not in runner.running():
                    runner.submit(task, threshold)
            if not runner.running():
                return
            task, record = runner.next_finished()
            if record is not None:  # None: cancelled before it finished
                done[task] = record
                report(record)
                save()

    try:
        # The baseline.
        baseline_runs: list[RunRecord] = []
        if baseline is None:
            drive(lambda _: [(None, s) for s in seeds if (None, s) not in done])
            baseline_runs = [done[(None, s)] for s in seeds]
            bad = [r for r in baseline_runs if r.status != "ok" or r.metric is None]
            if bad:
                raise RuntimeError(
                    f"The local baseline (full training, seed {bad[0].seed}) did "
                    f"not finish well: {bad[0].status}"
                    f"{': ' + bad[0].message if bad[0].message else ''}. Fix the "
                    "recipe (e.g. `baseline_learning_rate`) or pass a global "
                    "`baseline`."
                )
            base = Baseline(float(np.mean([r.metric for r in baseline_runs])), "local")
        else:
            base = Baseline(float(baseline), "global")
        threshold = fraction * base.value
        say(
            f"{base.kind} baseline {base.value:.4f}; threshold {threshold:.4f} "
            f"({fraction:g} x baseline)"
        )

        def wanted(slots: int) -> list[tuple]:
            planned = plan_dims(next_dim, finished_outcomes(), slots)
            return [(d, s) for d in planned for s in seeds if (d, s) not in done]

        drive(wanted)
    finally:
        if runner is not None:
            for task, record in runner.close():
                done[task] = record  # finished while the search wound down
            save()

    path, _ = follow(next_dim, finished_outcomes())
    runs, speculative = ordered_runs()
    result = SearchResult(
        d_int=smallest_passing(path),
        fraction=fraction,
        threshold=threshold,
        baseline=base,
        runs=runs,
        baseline_runs=baseline_runs,
        config=config,
        monitor=monitor,
        speculative_runs=speculative,
    )
    if results_path:
        result.to_json(results_path)
    say(result.verdict())
    return result


# -- running one training run, here or on a Ray worker --


@dataclasses.dataclass
class _Recipe:
    """Everything a run needs besides its d, seed and threshold."""

    model_fn: Callable[[], keras.Model]
    train_data: Any
    val_data: Any
    batch_size: int
    epochs: int
    loss: Any
    monitor: str
    projection: str
    structure_aware: bool
    optimizer: Callable[[], keras.optimizers.Optimizer]
    baseline_optimizer: Callable[[], keras.optimizers.Optimizer]


def _train_run(
    recipe: _Recipe, dim: int | None, seed: int, threshold: float | None
) -> RunRecord:
    """One run: the baseline (`dim=None`) or a subspace of dimension `dim`.

    A run that raises is recorded with status `"error"`; a missing `monitor`
    is the search's mistake, not the run's, and raises.
    """
    divergence = DivergenceStop()
    callbacks: list = [divergence]
    stop = None
    if threshold is not None and dim is not None:
        stop = ThresholdStop(monitor=recipe.monitor, target=threshold, mode="max")
        callbacks.append(stop)
    started = time.perf_counter()
    projection = recipe.projection if dim is not None else "none"
    try:
        keras.utils.set_random_seed(seed)
        model = recipe.model_fn()
        make_optimizer = recipe.baseline_optimizer
        if dim is not None:
            model = SubspaceModel(
                model,
                dim,
                projection=recipe.projection,
                seed=seed,
                structure_aware=recipe.structure_aware,
            )
            make_optimizer = recipe.optimizer
        model.compile(
            optimizer=make_optimizer(), loss=recipe.loss, metrics=["accuracy"]
        )
        # Arrays get a fresh dataset shuffled from the run's seed, so that a
        # run sees the same batches whatever ran before it (a resumed search
        # repeats an uninterrupted one); a tf.data dataset is used as it is.
        history = model.fit(
            _as_dataset(recipe.train_data, recipe.batch_size, shuffle=True, seed=seed),
            validation_data=_as_dataset(
                recipe.val_data, recipe.batch_size, shuffle=False
            ),
            epochs=recipe.epochs,
            callbacks=callbacks,
            shuffle=False,  # the dataset shuffles itself
            verbose=0,
        ).history
    except Exception as e:  # a failed run is recorded, the search goes on
        return RunRecord.error(
            dim,
            seed,
            projection,
            time.perf_counter() - started,
            f"{type(e).__name__}: {e}",
        )
    if recipe.monitor not in history:
        raise ValueError(
            f"The metric `monitor={recipe.monitor!r}` is not in the training "
            f"logs. Available: {sorted(history)}."
        )
    values = [float(v) for v in history[recipe.monitor]]
    finite = [v for v in values if math.isfinite(v)]
    return RunRecord(
        dim=dim,
        seed=seed,
        projection=projection,
        metric=max(finite) if finite else None,
        epochs=len(values),
        stopped_early=bool(stop is not None and stop.reached),
        seconds=time.perf_counter() - started,
        status="diverged" if divergence.diverged else "ok",
        message=(
            f"non-finite loss at epoch {divergence.diverged_at[0]}"
            f", batch {divergence.diverged_at[1]}"
            if divergence.diverged
            else None
        ),
        history=values,
    )


class _Runner:
    """Runs `(dim, seed)` tasks: `slots` at a time, results as they finish."""

    slots = 1

    def __init__(self, recipe: _Recipe):
        self._recipe = recipe
        self._queue: list[tuple] = []

    def running(self) -> list[tuple]:
        """Tasks submitted and not yet returned by `next_finished`."""
        return [task for task, _ in self._queue]

    def free(self) -> int:
        return self.slots - len(self._queue)

    def submit(self, task: tuple, threshold: float | None) -> None:
        self._queue.append((task, threshold))

    def cancel(self, task: tuple) -> None:
        self._queue = [q for q in self._queue if q[0] != task]

    def next_finished(self) -> tuple[tuple, RunRecord | None]:
        """Waits for a task; its record, or `None` if it was cancelled."""
        (dim, seed), threshold = self._queue.pop(0)
        return (dim, seed), _train_run(self._recipe, dim, seed, threshold)

    def close(self) -> list[tuple[tuple, RunRecord]]:
        """Stops what still runs; returns the runs that finished meanwhile."""
        self._queue = []
        return []


def _make_runner(recipe, workers, ray_address, say) -> _Runner:
    if workers == 1 and ray_address is None:
        return _Runner(recipe)
    from keras_idim.workers import RayRunner

    return RayRunner(recipe, workers=workers, address=ray_address, say=say)


def _fmt(value: float | None) -> str:
    return "  --  " if value is None else f"{value:.4f}"


def _state_dict(
    config, monitor, fraction, base, baseline_runs, runs, d_int, speculative=()
):
    """The content of a results file (also of a search still under way)."""
    return {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "config": config,
        "config_hash": config_hash(config),
        "monitor": monitor,
        "fraction": fraction,
        "threshold": None if base is None else fraction * base.value,
        "baseline": None if base is None else {"value": base.value, "kind": base.kind},
        "baseline_runs": [r.to_dict() for r in baseline_runs],
        "runs": [r.to_dict() for r in runs],
        "speculative_runs": [r.to_dict() for r in speculative],
        "d_int": d_int,
    }


def _as_dataset(
    data: Any, batch_size: int, *, shuffle: bool, arg: str = "data", seed: int = 0
):
    from keras_idim.data import to_dataset

    try:
        return to_dataset(data, batch_size, shuffle=shuffle, seed=seed)
    except ValueError as e:
        raise ValueError(str(e).replace("`data`", f"`{arg}`")) from None
