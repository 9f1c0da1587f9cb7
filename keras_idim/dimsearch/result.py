"""What a d-search found: `SearchResult`, its summary, CSV, JSON and plot
(the files' details in `result_files`, the plot's in `result_plot`, the
models' in `found`)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

from keras_idim.dimsearch import methods, result_files, result_plot, store
from keras_idim.dimsearch.records import (
    Baseline,
    RunRecord,
    mean,
    ok_metrics,
    passes,
    rule,
)
from keras_idim.objective import Objective
from keras_idim.utils.exports import keras_idim_export
from keras_idim.utils.io import atomic_write
from keras_idim.utils.plotting import log_x_axes


@keras_idim_export("keras_idim.SearchResult", "keras_idim.dimsearch.SearchResult")
@dataclasses.dataclass
class SearchResult:
    """What a d-search found.

    Attributes:
        d_int: int or None. The smallest d whose mean metric over seeds
            reached the threshold (`d_int90` for `fraction=0.9`), or `None`
            if no tried d reached it.
        fraction: float. The fraction of the baseline to reach.
        threshold: float. `fraction * baseline.value` for a metric to
            maximise, `baseline.value / fraction` for one to minimise, or
            the absolute threshold the search was given.
        baseline: Baseline. The value and its kind (`"local"`, `"global"`,
            or `"absolute"` when the threshold was given).
        runs: list of RunRecord. The subspace runs on the search's path, in
            the order the sequential strategy tries them.
        baseline_runs: list of RunRecord. The local baseline's runs.
        speculative_runs: list of RunRecord. Runs that a parallel search
            (`workers > 1`) started ahead and that finished, but that the
            sequential strategy did not need; kept, but not part of the
            answer (empty for `workers=1`).
        config: dict. The search's configuration (what the results file
            checks when resuming).
        monitor: str. The metric.
        mode: str. `"max"` (higher is better: a d passes when its mean is
            >= threshold) or `"min"` (lower is better: <= threshold).
        threshold_rule: str. How the threshold came from the baseline:
            `"baseline"` (`fraction * baseline`, or `baseline / fraction`
            for `mode="min"`) or `"above_floor"` (`floor + fraction *
            (baseline - floor)`).
        floor: float or None. The chance floor: what a constant predictor
            scores on the monitored data (see `keras_idim.dimsearch.floor`),
            or the user's `floor=`; `None` when none was checked (or for
            files written before it was recorded).
        floor_source: str or None. How the floor was obtained, or why there
            is none.
        d_int_ci: tuple or None. `(low, high)`: the bootstrap interval over
            seeds of d_int at level `ci_level` (see
            `keras_idim.dimsearch.interval`); an end is `None` when it lies
            beyond every tried d. `None` with one seed.
        ci_level: float. The level of `d_int_ci`.
        baseline_from: dict or None. `{"path", "config_hash"}` of the
            search whose local baseline this one reused (`path` is `None`
            for a result passed in memory); `None` if it trained its own.
        path: str or None. The results file it was written to or read from
            (not stored in it); `model` finds the runs' files beside it.
        model_fn: callable or None. The search's `model_fn`, when this
            result comes from `search` in this process (not stored).
        fingerprints: dict or None. The model's and the data's
            fingerprints taken at the search's start (see
            `keras_idim.dimsearch.fingerprint`); `None` for files written
            before they were recorded.
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
    mode: str = "max"
    threshold_rule: str = "baseline"
    floor: float | None = None
    floor_source: str | None = None
    d_int_ci: tuple[int | None, int | None] | None = None
    ci_level: float = 0.9
    baseline_from: dict | None = None
    path: str | None = dataclasses.field(default=None, repr=False, compare=False)
    model_fn: Callable | None = dataclasses.field(
        default=None, repr=False, compare=False
    )
    fingerprints: dict | None = None

    # -- derived views --

    def dim_scores(self) -> dict[int, dict]:
        """Per d: mean and spread of the metric over seeds, and pass/fail."""
        scores: dict[int, dict] = {}
        for dim in sorted({r.dim for r in self.runs}):
            runs = [r for r in self.runs if r.dim == dim]
            values = ok_metrics(runs)
            scores[dim] = {
                "mean": mean(values) if values else None,
                "min": min(values) if values else None,
                "max": max(values) if values else None,
                "runs": len(runs),
                "passed": passes(runs, self.threshold, self.mode),
                "trainable_params": max(
                    (r.trainable_params for r in runs if r.trainable_params),
                    default=None,
                ),
            }
        return scores

    @property
    def method(self) -> str:
        """`"subspace"` (the searched integer is d) or `"lora"` (a rank)."""
        return self.config.get("method", "subspace")

    @property
    def letter(self) -> str:
        """What the searched integer is called: `d`, or `r` for LoRA."""
        return methods.of_config(self.config).symbol

    @property
    def name(self) -> str:
        """`d_int90` for `fraction=0.9` (`r_int90` for a LoRA rank);
        `d_int` for an absolute threshold."""
        if self.baseline.kind == "absolute":
            return f"{self.letter}_int"
        return f"{self.letter}_int{round(100 * self.fraction)}"

    @property
    def trainable_params(self) -> int | None:
        """The intrinsic size in trained numbers: the trainable parameters
        of a run at `d_int` (d itself for a subspace; the LoRA matrices and
        whatever else trained for LoRA). `None` when nothing passed, or for
        files written before runs recorded it."""
        if self.d_int is None:
            return None
        return self.dim_scores()[self.d_int]["trainable_params"]

    def summary(self, verdict: bool = True) -> str:
        """A printable table of d against the metric, and the answer.

        Args:
            verdict: bool. End with the answer's line (`verdict()`); leave
                it out where it was just printed, as a verbose search does
                when it ends. Defaults to `True`.
        """
        lines = [
            f"{self.letter:>9}  {'runs':>4}  {'mean ' + self.monitor:>18}  "
            f"{'min':>7}  {'max':>7}  pass  {'trained params':>14}",
        ]
        for dim, s in self.dim_scores().items():
            fmt = lambda v: "     --" if v is None else f"{v:7.4f}"  # noqa: E731
            params = s["trainable_params"]
            lines.append(
                f"{dim:>9}  {s['runs']:>4}  {fmt(s['mean']):>18}  "
                f"{fmt(s['min'])}  {fmt(s['max'])}  "
                f"{'yes' if s['passed'] else 'no ':<4}  "
                f"{'--' if params is None else f'{params:,}':>14}"
            )
        lines.append(f"{self.monitor}: {rule(self.mode)}")
        lines.append(self.floor_text())
        if verdict:
            lines.append(self.verdict())
        lines.append(self.interval_text())
        return "\n".join(lines)

    @property
    def seeds(self) -> list[int]:
        """The search's seeds (from its configuration, else from its runs)."""
        seeds = self.config.get("seeds")
        if seeds:
            return list(seeds)
        return sorted({r.seed for r in self.runs + self.baseline_runs})

    def floor_text(self) -> str:
        """The baseline beside the chance floor, in one line."""
        if self.baseline.kind == "absolute":
            base = "no baseline (absolute threshold)"
        else:
            base = f"{self.baseline.kind} baseline {self.baseline.value:.4f}"
        if self.floor is None:
            why = f": {self.floor_source}" if self.floor_source else ""
            return f"{base}; no chance floor was checked{why}"
        return f"{base}; chance floor {self.floor:.4f} ({self.floor_source})"

    def interval_text(self) -> str:
        """The interval of d_int over seeds, or why there is none."""
        level = f"{100 * self.ci_level:g}%"
        if len(self.seeds) < 2:
            return (
                f"no {level} interval of {self.name} over seeds: one seed gives "
                "no interval (pass several `seeds`)"
            )
        if self.d_int_ci is None:
            return (
                f"no {level} interval of {self.name} over seeds: no "
                f"{self.letter} was tried with every seed"
            )
        low, high = (
            f"> {max(r.dim for r in self.runs)}" if v is None else str(v)
            for v in self.d_int_ci
        )
        return (
            f"{level} interval of {self.name} over {len(self.seeds)} seeds "
            f"(bootstrap of the mean curve): [{low}, {high}]"
        )

    def threshold_text(self) -> str:
        """The threshold, where it comes from, and the direction."""
        if self.baseline.kind == "absolute":
            origin = "absolute"
        elif self.threshold_rule == "above_floor":
            origin = (
                f"floor {self.floor:.4f} + {self.fraction:g} x ({self.baseline.kind} "
                f"baseline {self.baseline.value:.4f} - floor)"
            )
        elif Objective(mode=self.mode).minimize:
            origin = (
                f"{self.baseline.kind} baseline {self.baseline.value:.4f} / "
                f"{self.fraction:g}"
            )
        else:
            origin = (
                f"{self.fraction:g} x {self.baseline.kind} baseline "
                f"{self.baseline.value:.4f}"
            )
        sign = Objective(mode=self.mode).sign
        return f"threshold {self.monitor} {sign} {self.threshold:.4f} = {origin}"

    def verdict(self) -> str:
        """One line: the answer with its threshold, baseline and direction."""
        base = self.threshold_text()
        if self.d_int is None:
            tried = max((r.dim for r in self.runs), default=None)
            return (
                f"{self.name} not found: no tried {self.letter} (up to {tried}) "
                f"reached the {base}"
            )
        params = self.trainable_params
        size = "" if params is None else f"; {params:,} trained parameters"
        return f"{self.name} = {self.d_int} ({base}){size}"

    def __str__(self) -> str:
        return self.summary()

    # -- files --

    def to_dict(self) -> dict:
        """The result as a dict, in the results file's format."""
        return store.state_dict(
            self.config,
            monitor=self.monitor,
            mode=self.mode,
            fraction=self.fraction,
            baseline=self.baseline,
            baseline_runs=self.baseline_runs,
            runs=self.runs,
            speculative_runs=self.speculative_runs,
            d_int=self.d_int,
            threshold_rule=self.threshold_rule,
            floor=self.floor,
            floor_source=self.floor_source,
            d_int_ci=self.d_int_ci,
            ci_level=self.ci_level,
            baseline_from=self.baseline_from,
            fingerprints=self.fingerprints,
        )

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The result as JSON; written atomically to `path` when given."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=True)
        if path is not None:
            atomic_write(path, text)
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike) -> SearchResult:
        """Reads a result from a JSON file path or a JSON string.

        A path that exists is read as a path, whatever its name (a folder
        may be called `{lr=0.1}`); only a string that is not an existing
        path and starts with `{` is taken as JSON text.
        """
        return cls(**result_files.result_fields(source))

    # -- the model found --

    def finished_dims(self, seed: int = 0) -> list[int]:
        """The d whose run with `seed` finished with a model kept (in
        memory, or in its file beside the results file)."""
        from keras_idim.dimsearch import found  # Keras, only when asked

        return sorted({d for d, _ in found.kept_runs(self, seed)})

    def model(
        self,
        model_fn: Callable | None = None,
        d: int | None = None,
        seed: int = 0,
    ) -> Any:
        """The SubspaceModel a finished run found, rebuilt with no training.

        theta_0 comes from `model_fn()` after `keras.utils.set_random_seed(
        seed)`, as the run built it (its SHA-256 is checked against the
        run's), P from the seed, and theta_d (SAID's lambdas, the base
        model's other state) from the run's best epoch, the one whose
        monitored value is the run's `metric`: kept in memory by `search`,
        or read from its file beside the results file
        (`RESULTS-runs/d{d}-seed{seed}.npz`). Evaluated on the validation
        data, it scores the run's `metric` (on the same machine).

        Args:
            model_fn: callable or None. The search's `model_fn` (a results
                file cannot hold a function); `None` takes the one this
                result was made with, when it came from `search` in this
                process. Defaults to `None`.
            d: int or None. A finished d; `None` means `d_int`. Defaults
                to `None`.
            seed: int. The run's seed. Defaults to `0`.

        Returns:
            A `keras_idim.SubspaceModel`, not compiled.

        Raises:
            ValueError: a LoRA search, no `model_fn`, a d (or seed) with no
                finished run kept, or a `model_fn` that does not rebuild
                the run's theta_0.
        """
        if not methods.of_config(self.config).keeps_theta:
            raise ValueError(
                f"`model` rebuilds subspace runs; this search is "
                f"`method={self.method!r}`, whose runs keep no theta_d."
            )
        from keras_idim.dimsearch import found  # Keras, only when asked

        return found.rebuild_kept(self, model_fn, d, seed)

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """One row per run: the baseline's, then the path's; written to `path`.

        Besides the record's fields, every row states the rule it is judged
        by: `monitor`, `mode` and `passes_when` (e.g. `>= 0.9000`), the
        chance `floor` (empty when none was checked), and the interval of
        d_int over seeds: `ci_level`, `d_int_ci_low`, `d_int_ci_high` (empty
        with one seed, or for an end beyond every tried d).
        """
        return result_files.csv_text(self, path)

    def plot(self, path: str | os.PathLike) -> str:
        """Saves a PNG: metric against d (log x), mean and spread over seeds.

        Dots are single runs, the line is the mean over seeds with the band
        from min to max; horizontal lines mark the baseline, the threshold
        and the chance floor (when one was checked), a vertical line marks
        d_int, and a shaded band its interval over seeds (several seeds).

        Returns:
            The path written.
        """
        with log_x_axes(path) as ax:
            result_plot.draw(self, ax)
            method = methods.of_config(self.config)
            ax.set_xlabel(method.description)
            ax.set_ylabel(f"{self.monitor} ({rule(self.mode).split(':')[0]})")
            ax.set_title(method.title)
        return os.fspath(path)
