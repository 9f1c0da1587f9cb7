"""The search loop: asks the strategy, feeds the runner, saves the file.

`Driver` holds the state of one search as attributes (the finished runs,
the baseline and threshold, the runner) so that every step of the loop is a
method that can be read, and tested with a fake `Runner`, on its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from keras_idim.dimsearch import found, store
from keras_idim.dimsearch.floor import Floor
from keras_idim.dimsearch.interval import d_int_interval
from keras_idim.dimsearch.progress import open_range, progress_line, run_line
from keras_idim.dimsearch.records import (
    ERROR,
    OK,
    Baseline,
    RunRecord,
    clears_floor,
    mean,
    passes,
    threshold_of,
)
from keras_idim.dimsearch.result import SearchResult
from keras_idim.dimsearch.runner import Recipe, Runner, Task
from keras_idim.dimsearch.strategy import (
    Strategy,
    follow,
    most_dims_left,
    plan_dims,
    smallest_passing,
)
from keras_idim.objective import Objective
from keras_idim.utils.exports import keras_idim_export


@keras_idim_export("keras_idim.dimsearch.RunError")
class RunError(RuntimeError):
    """A run failed in a way that every run would: the recipe is wrong."""


@keras_idim_export("keras_idim.dimsearch.FloorError")
class FloorError(ValueError):
    """The threshold does not clear the chance floor: a constant predictor
    would already reach it, so no d is searched for it."""


class Driver:
    """One d-search under way.

    Args:
        recipe: Recipe. How each run trains.
        strategy: callable. Which d comes next (see `strategy`).
        runner: Runner. Carries out the runs; started on the first run.
        config: dict. The search's configuration, as stored.
        seeds: list of int. The seeds of each d (and of the baseline).
        fraction: float. The fraction of the baseline to reach.
        baseline: float or None. A global baseline; `None` trains a local
            one.
        threshold: float or None. An absolute threshold instead of one
            derived from a baseline.
        results_path: str or None. The resumable results file.
        say: callable. Prints a line of progress.
        threshold_rule: str. `"baseline"` or `"above_floor"` (see
            `records.threshold_of`).
        floor: Floor or None. The chance floor; `None` (or a `Floor` whose
            value is `None`) checks none.
        ci_level: float. The level of the interval of d_int over seeds.
        reuse: SearchResult or None. Another search whose local baseline
            (value and runs) this one takes instead of training its own,
            already checked to be the same problem (see
            `comparison.reusable_baseline`).
        baseline_from: dict or None. What the results file records of it.
        fingerprints: dict or None. The model's and the data's fingerprints
            (see `fingerprint.fingerprints`): a results file with others is
            refused (`store.check_fingerprints`), and they are saved with
            the runs.
        overwrite: bool. Start over: the results file is not read, and on
            this search's first write it is copied to `results_path +
            ".bak"` and replaced.
    """

    def __init__(
        self,
        recipe: Recipe,
        strategy: Strategy,
        runner: Runner,
        *,
        config: dict,
        seeds: Sequence[int],
        fraction: float,
        baseline: float | None = None,
        threshold: float | None = None,
        results_path: str | os.PathLike | None = None,
        say: Callable[[str], None] = print,
        threshold_rule: str = "baseline",
        floor: Floor | None = None,
        ci_level: float = 0.9,
        reuse: SearchResult | None = None,
        baseline_from: dict | None = None,
        fingerprints: dict | None = None,
        overwrite: bool = False,
    ):
        self.recipe = recipe
        self.fingerprints = fingerprints
        #: The file to set aside on the first write (`overwrite=True`).
        self.set_aside = (
            os.fspath(results_path)
            if overwrite and results_path and os.path.exists(results_path)
            else None
        )
        self.baseline_from = baseline_from
        self.threshold_rule = threshold_rule
        self.floor = floor
        self.ci_level = ci_level
        self.strategy = strategy
        self.runner = runner
        self.config = config
        self.seeds = list(seeds)
        self.fraction = fraction
        self.mode = recipe.mode
        self.monitor = recipe.monitor
        self.results_path = results_path
        self.say = say
        self.started = False
        #: Runs finished by this call, and when its first run started.
        self.fresh = 0
        self.clock: float | None = None
        #: (dim, seed) -> RunRecord, for every finished run (dim None: baseline).
        self.done: dict[Task, RunRecord] = {}
        self.base: Baseline | None = None
        if threshold is not None:
            self.base = Baseline(float(threshold), "absolute")
        elif baseline is not None:
            self.base = Baseline(float(baseline), "global")
        previous = (
            store.load_previous(results_path, config, fingerprints)
            if results_path and not overwrite
            else None
        )
        if previous and fingerprints is not None:
            unchecked = store.check_fingerprints(results_path, previous, fingerprints)
            if unchecked:
                say(unchecked)
        if previous:
            retried = 0
            for key in ("baseline_runs", "runs", "speculative_runs"):
                for record in previous[key]:
                    if record.status == ERROR:  # no result: run it again
                        retried += 1
                        continue
                    self.done[(record.dim, record.seed)] = record
            if self.done or retried:
                say(
                    f"resuming from {results_path}: {len(self.done)} finished "
                    "runs" + (f", {retried} that raised run again" if retried else "")
                )
        #: Runs read from the results file, counted apart from fresh ones.
        self.resumed = sum(reuse is None or d is not None for d, _ in self.done)
        if reuse is not None:  # its baseline, in place of one trained here
            self.base = Baseline(reuse.baseline.value, "local")
            for record in reuse.baseline_runs:
                if record.seed in self.seeds:
                    self.done[(None, record.seed)] = record

    # -- derived state --

    @property
    def threshold(self) -> float | None:
        if self.base is None:
            return None
        return threshold_of(
            self.base, self.fraction, self.mode, self.threshold_rule, self.floor_value
        )

    @property
    def floor_value(self) -> float | None:
        return None if self.floor is None else self.floor.value

    def floor_fields(self) -> dict:
        """The floor and the threshold rule, as the results file stores them."""
        return {
            "threshold_rule": self.threshold_rule,
            "floor": self.floor_value,
            "floor_source": None if self.floor is None else self.floor.source,
            "ci_level": self.ci_level,
        }

    def finished_outcomes(self) -> dict[int, bool]:
        """d -> passed, for every d whose runs (one per seed) all finished."""
        outcomes = {}
        for dim in {d for d, _ in self.done if d is not None}:
            records = [self.done.get((dim, s)) for s in self.seeds]
            if all(records):
                outcomes[dim] = passes(records, self.threshold, self.mode)
        return outcomes

    def ordered_runs(self) -> tuple[list[RunRecord], list[RunRecord]]:
        """Runs on the sequential path (in its order), and the others."""
        if self.threshold is None:
            path_dims: list[int] = []
        else:
            path, frontier = follow(self.strategy, self.finished_outcomes())
            path_dims = [*path, *([frontier] if frontier is not None else [])]
        keys = [(d, s) for d in path_dims for s in self.seeds if (d, s) in self.done]
        on_path = set(keys)
        extra = [k for k in self.done if k[0] is not None and k not in on_path]
        return [self.done[k] for k in keys], [self.done[k] for k in extra]

    def baseline_runs(self) -> list[RunRecord]:
        return [self.done[(None, s)] for s in self.seeds if (None, s) in self.done]

    # -- the loop --

    def save(self, result: SearchResult | None = None) -> None:
        """Writes `result` (by default the search so far, see `snapshot`)
        to the results file, if there is one."""
        if not self.results_path:
            return
        self.keep_old_file()
        (result or self.snapshot()).to_json(self.results_path)

    def keep_model(self, record: RunRecord) -> None:
        """Writes a finished subspace run's model (its theta_d, see
        `found`) to its file beside the results file, if there is one; the
        record keeps it in memory for `SearchResult.model`."""
        if self.results_path and record.found is not None and record.dim is not None:
            found.write(
                self.results_path, record, self.config, store.config_hash(self.config)
            )

    def keep_old_file(self) -> None:
        """With `overwrite=True`, before the first write: copies the old
        results file to `.bak` (the write then replaces it atomically, so a
        crash leaves the old file or the new one, never half of either)."""
        if self.set_aside is None:
            return
        import shutil

        backup = self.set_aside + ".bak"
        shutil.copyfile(self.set_aside, backup)
        self.set_aside = None
        self.say(f"overwrite: the old {self.results_path} is kept as {backup}")

    def report(self, record: RunRecord) -> None:
        self.say(run_line(record, self.monitor, self.recipe.method.symbol))

    def runs_left(self, path: dict[int, bool], frontier: int | None) -> int | None:
        """The most runs this search may still train, or `None` if the
        strategy gives no bound (see `strategy.most_dims_left`): the
        baseline's runs not done, and one run per seed for each d the
        strategy may still try, less the seeds of the next d already done."""
        dims = most_dims_left(self.strategy, path)
        if dims is None:
            return None
        left = dims * len(self.seeds)
        if frontier is not None:
            left -= sum((frontier, s) in self.done for s in self.seeds)
        if self.base is None:
            left += sum((None, s) not in self.done for s in self.seeds)
        return left

    def progress(self) -> str:
        """One line after each run: the runs done, the d still open, and
        the time left at most.

        The time left is the mean wall-clock seconds per run finished by
        this call so far (from the start of its first run; with several
        workers that is their throughput) times `runs_left`, a bound on the
        runs still to train. It is left out when no run finished here yet
        or when the strategy gives no bound.
        """
        outcomes = self.finished_outcomes() if self.threshold is not None else {}
        path, frontier = follow(self.strategy, outcomes)
        return progress_line(
            fresh=self.fresh,
            resumed=self.resumed,
            open_values=None
            if self.threshold is None
            else open_range(path, self.recipe.method.symbol),
            left=self.runs_left(path, frontier),
            clock=self.clock,
        )

    def drive(self, wanted: Callable[[int], list[Task]]) -> None:
        """Runs tasks until `wanted(slots)` asks for none; saves after each."""
        runner = self.runner
        while True:
            tasks = wanted(runner.slots)
            if not self.started:
                if not tasks:
                    return
                runner.start(self.recipe, self.say)
                self.started = True
                self.clock = time.perf_counter()
            for task in runner.running():
                if task not in tasks:
                    runner.cancel(task)  # speculative, and no longer useful
            for task in tasks:
                if runner.free() <= 0:
                    break
                if task not in runner.running():
                    runner.submit(task, self.threshold)
            if not runner.running():
                return
            task, record = runner.next_finished()
            if record is not None:  # None: cancelled before it finished
                self.done[task] = record
                self.keep_model(record)
                self.fresh += 1
                self.report(record)
                self.say(self.progress())
                self.save()
                self.check_recipe(record)

    def check_recipe(self, record: RunRecord) -> None:
        """Stops the search when a run's error is the recipe's, not its d's.

        A baseline run that raises, or a subspace run that raises before
        any subspace run has trained, says that every run would fail (a
        loss, metric, label or model problem): the search stops there,
        with that error, instead of recording it for every d.
        """
        if record.status != ERROR:
            return
        trained = any(
            r.status != ERROR for (d, _), r in self.done.items() if d is not None
        )
        if record.dim is not None and trained:
            return  # other d trained: this error is this d's, recorded
        which = (
            f"The baseline run (seed {record.seed})"
            if record.dim is None
            else f"The first {self.recipe.method.name} run "
            f"({self.recipe.method.symbol}={record.dim}, seed {record.seed})"
        )
        where = f" (saved in {self.results_path})" if self.results_path else ""
        raise RunError(
            f"{which} failed, so every run would: {record.message}. Nothing "
            f"more was trained{where}; fix the recipe (model_fn, data, loss, "
            "metrics, monitor) and run the search again."
        )

    def train_baseline(self) -> None:
        """Trains the local baseline (unless it is given) and sets `base`."""
        if self.base is None:
            self.drive(
                lambda _: [(None, s) for s in self.seeds if (None, s) not in self.done]
            )
            runs = self.baseline_runs()
            bad = [r for r in runs if r.status != OK or r.metric is None]
            if bad:
                raise RuntimeError(
                    f"The local baseline (full training, seed {bad[0].seed}) did "
                    f"not finish well: {bad[0].status}"
                    f"{': ' + bad[0].message if bad[0].message else ''}. Fix the "
                    "recipe (e.g. `baseline_learning_rate`) or pass a global "
                    "`baseline`."
                )
            self.base = Baseline(mean([r.metric for r in runs]), "local")
        sign = Objective(mode=self.mode).sign
        floor = self.floor_value
        reused = ""
        if self.baseline_from is not None:
            reused = (
                f" (reused from {self.baseline_from['path'] or 'the given search'})"
            )
        self.say(
            f"{self.base.kind} baseline {self.base.value:.4f}{reused}; "
            + ("no chance floor; " if floor is None else f"chance floor {floor:.4f}; ")
            + f"threshold {self.monitor} {sign} {self.threshold:.4f}"
        )
        self.check_floor()

    def check_floor(self) -> None:
        """Refuses a threshold that does not clear the chance floor, before
        any subspace run (the baseline's runs stay in the results file)."""
        if clears_floor(self.threshold, self.floor_value, self.mode):
            return
        self.save()
        better = Objective(mode=self.mode).beyond
        kept = (
            f" The baseline's runs are kept in {self.results_path}."
            if self.results_path and self.baseline_runs()
            else ""
        )
        raise FloorError(
            f"The threshold {self.monitor} {self.threshold:.4f} ({self.origin()}) "
            f"does not clear the chance floor {self.floor_value:.4f} "
            f"({self.floor.source}): a constant prediction already reaches it, "
            f"so no d is searched and no d_int is reported. A threshold must be "
            f"strictly {better} the floor: check that the baseline learned "
            "something (the labels, the recipe), or raise the target (e.g. "
            f"`threshold_rule='above_floor'`, a larger `fraction`).{kept}"
        )

    def origin(self) -> str:
        """Where the threshold comes from, in words."""
        if self.base.kind == "absolute":
            return "absolute"
        return (
            f"from the {self.base.kind} baseline {self.base.value:.4f}, "
            f"`fraction={self.fraction:g}`, `threshold_rule={self.threshold_rule!r}`"
        )

    def wanted(self, slots: int) -> list[Task]:
        planned = plan_dims(self.strategy, self.finished_outcomes(), slots)
        return [(d, s) for d in planned for s in self.seeds if (d, s) not in self.done]

    def run(self) -> SearchResult:
        """Runs the search to its end (or resumes it) and returns the result.

        The results file is written after each run; at the end once, with
        d_int; and when the search stops early (an error, an interrupt)
        with what it has so far.
        """
        try:
            self.train_baseline()
            self.drive(self.wanted)
        except BaseException:
            if self.started:
                self.wind_down()
                self.save()
            raise
        if self.started:
            self.wind_down()
        result = self.snapshot(final=True)
        self.save(result)
        self.say(result.verdict())
        return result

    def wind_down(self) -> None:
        """Closes the runner, keeping the runs that finished meanwhile."""
        for task, record in self.runner.close():
            self.done[task] = record  # finished while the search wound down
            self.keep_model(record)

    def snapshot(self, final: bool = False) -> SearchResult:
        """The search so far as a `SearchResult`: with `final`, its d_int
        and the interval of d_int; without, both `None` (under way)."""
        runs, speculative = self.ordered_runs()
        d_int, d_int_ci = None, None
        if final:
            path, _ = follow(self.strategy, self.finished_outcomes())
            d_int = smallest_passing(path)
            d_int_ci = d_int_interval(
                runs, self.seeds, self.threshold, self.mode, self.ci_level
            )
        return SearchResult(
            d_int=d_int,
            fraction=self.fraction,
            threshold=self.threshold,
            baseline=self.base,
            runs=runs,
            baseline_runs=self.baseline_runs(),
            config=self.config,
            monitor=self.monitor,
            speculative_runs=speculative,
            mode=self.mode,
            d_int_ci=d_int_ci,
            baseline_from=self.baseline_from,
            path=None if not self.results_path else os.fspath(self.results_path),
            model_fn=self.recipe.model_fn,
            fingerprints=self.fingerprints,
            **self.floor_fields(),
        )
