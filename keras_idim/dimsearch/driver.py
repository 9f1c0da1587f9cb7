"""The search loop: asks the strategy, feeds the runner, saves the file.

`Driver` holds the `SearchResult` in the making (see `making`) and fills it
in as runs finish, so that every step of the loop is a method that can be
read, and tested with a fake `Runner`, on its own.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable

from keras_idim.dimsearch import found, store
from keras_idim.dimsearch.interval import d_int_interval
from keras_idim.dimsearch.making import resumed_runs
from keras_idim.dimsearch.progress import (
    open_range,
    progress_line,
    run_line,
    runs_left,
)
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
    plan_dims,
    smallest_passing,
)
from keras_idim.objective import Objective
from keras_idim.utils.exports import keras_idim_export
from keras_idim.utils.io import atomic_write


@keras_idim_export("keras_idim.dimsearch.RunError")
class RunError(RuntimeError):
    """A run failed in a way that every run would: the recipe is wrong."""


@keras_idim_export("keras_idim.dimsearch.FloorError")
class FloorError(ValueError):
    """The threshold does not clear the chance floor: a constant predictor
    would already reach it, so no d is searched for it."""


class Driver:
    """One d-search under way, filling in its `SearchResult`.

    Args:
        recipe: Recipe. How each run trains.
        strategy: callable. Which d comes next (see `strategy`).
        runner: Runner. Carries out the runs; started on the first run.
        result: SearchResult. The search in the making (see
            `making.begin`): its settings (`config`, whose `seeds` are the
            seeds of each d and of the baseline, `fraction`, `monitor`,
            `mode`, `threshold_rule`, the chance `floor` and its
            `floor_source`, `ci_level`, `fingerprints`, and `path`, the
            resumable results file or `None`), and its `baseline` when it
            is known before any run: global, absolute, or a local one
            reused from another search, with `baseline_from` and the
            `baseline_runs` it takes instead of training its own. The
            driver fills in the rest as runs finish (the runs, the
            baseline and the threshold; `d_int` and its interval at the
            end), and `run` returns it.
        say: callable. Prints a line of progress.
        overwrite: bool. Start over: the results file is not read, and on
            this search's first write it is copied to `path + ".bak"` and
            replaced.
    """

    def __init__(
        self,
        recipe: Recipe,
        strategy: Strategy,
        runner: Runner,
        result: SearchResult,
        *,
        say: Callable[[str], None] = print,
        overwrite: bool = False,
    ):
        self.recipe = recipe
        self.strategy = strategy
        self.runner = runner
        self.result = result
        self.say = say
        path = result.path
        #: The file to set aside on the first write (`overwrite=True`).
        self.set_aside = path if overwrite and path and os.path.exists(path) else None
        #: The text last written to the results file: a save writes a change.
        self.written: str | None = None
        self.started = False
        #: Runs finished by this call, and when its first run started.
        self.fresh = 0
        self.clock: float | None = None
        #: (dim, seed) -> RunRecord, `result`'s finished runs by their task
        #: (dim None: baseline).
        self.done: dict[Task, RunRecord] = (
            {} if overwrite else resumed_runs(result, say)
        )
        reused = result.baseline_from is not None
        #: Runs read from the results file, counted apart from fresh ones.
        self.resumed = sum(not reused or d is not None for d, _ in self.done)
        for record in result.baseline_runs:  # a reused baseline's runs
            self.done[(None, record.seed)] = record
        self.update()

    # -- derived state --

    @property
    def seeds(self) -> list[int]:
        return self.result.seeds

    @property
    def threshold(self) -> float | None:
        return self.result.threshold

    def update(self) -> None:
        """Brings `result` up to date with the finished runs: its threshold
        (from its baseline) and its runs, in order (see `ordered_runs`)."""
        result, base = self.result, self.result.baseline
        rule = (result.fraction, result.mode, result.threshold_rule, result.floor)
        result.threshold = None if base is None else threshold_of(base, *rule)
        result.runs, result.speculative_runs = self.ordered_runs()
        result.baseline_runs = self.baseline_runs()

    def finished_outcomes(self) -> dict[int, bool]:
        """d -> passed, for every d whose runs (one per seed) all finished."""
        outcomes = {}
        for dim in {d for d, _ in self.done if d is not None}:
            records = [self.done.get((dim, s)) for s in self.seeds]
            if all(records):
                outcomes[dim] = passes(records, self.threshold, self.result.mode)
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

    def save(self) -> None:
        """Writes `result` to the results file, if there is one and it
        changed since this search last wrote it."""
        if not self.result.path:
            return
        text = self.result.to_json()
        if text == self.written:
            return
        self.keep_old_file()
        atomic_write(self.result.path, text)
        self.written = text

    def keep_model(self, record: RunRecord) -> None:
        """Writes a finished subspace run's model (its theta_d, see
        `found`) to its file beside the results file, if there is one; the
        record keeps it in memory for `SearchResult.model`."""
        path, config = self.result.path, self.result.config
        if path and record.found is not None and record.dim is not None:
            found.write(path, record, config, store.config_hash(config))

    def keep_old_file(self) -> None:
        """With `overwrite=True`, before the first write: copies the old
        results file to `.bak` (the write then replaces it atomically, so a
        crash leaves the old file or the new one, never half of either)."""
        if self.set_aside is None:
            return
        backup = self.set_aside + ".bak"
        shutil.copyfile(self.set_aside, backup)
        self.set_aside = None
        self.say(f"overwrite: the old {self.result.path} is kept as {backup}")

    def report(self, record: RunRecord) -> None:
        self.say(run_line(record, self.result.monitor, self.recipe.method.symbol))

    def progress(self) -> str:
        """One line after each run: the runs done, the d still open, and
        the time left at most.

        The time left is the mean wall-clock seconds per run finished by
        this call so far (from the start of its first run; with several
        workers that is their throughput) times `progress.runs_left`, a bound on the
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
            left=runs_left(
                self.strategy,
                path,
                frontier,
                self.seeds,
                self.done,
                self.result.baseline is not None,
            ),
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
                self.update()
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
        path = self.result.path
        where = f" (saved in {path})" if path else ""
        raise RunError(
            f"{which} failed, so every run would: {record.message}. Nothing "
            f"more was trained{where}; fix the recipe (model_fn, data, loss, "
            "metrics, monitor) and run the search again."
        )

    def train_baseline(self) -> None:
        """Trains the local baseline (unless it is given) and sets
        `result.baseline`."""
        result = self.result
        if result.baseline is None:
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
            result.baseline = Baseline(mean([r.metric for r in runs]), "local")
            self.update()
        base, floor = result.baseline, result.floor
        sign = Objective(mode=result.mode).sign
        reused = ""
        if result.baseline_from is not None:
            reused = (
                f" (reused from {result.baseline_from['path'] or 'the given search'})"
            )
        self.say(
            f"{base.kind} baseline {base.value:.4f}{reused}; "
            + ("no chance floor; " if floor is None else f"chance floor {floor:.4f}; ")
            + f"threshold {result.monitor} {sign} {self.threshold:.4f}"
        )
        self.check_floor()

    def check_floor(self) -> None:
        """Refuses a threshold that does not clear the chance floor, before
        any subspace run (the baseline's runs stay in the results file)."""
        result = self.result
        if clears_floor(self.threshold, result.floor, result.mode):
            return
        self.save()
        better = Objective(mode=result.mode).beyond
        kept = (
            f" The baseline's runs are kept in {result.path}."
            if result.path and self.baseline_runs()
            else ""
        )
        raise FloorError(
            f"The threshold {result.monitor} {self.threshold:.4f} ({self.origin()}) "
            f"does not clear the chance floor {result.floor:.4f} "
            f"({result.floor_source}): a constant prediction already reaches it, "
            f"so no d is searched and no d_int is reported. A threshold must be "
            f"strictly {better} the floor: check that the baseline learned "
            "something (the labels, the recipe), or raise the target (e.g. "
            f"`threshold_rule='above_floor'`, a larger `fraction`).{kept}"
        )

    def origin(self) -> str:
        """Where the threshold comes from, in words."""
        base = self.result.baseline
        if base.kind == "absolute":
            return "absolute"
        return (
            f"from the {base.kind} baseline {base.value:.4f}, "
            f"`fraction={self.result.fraction:g}`, "
            f"`threshold_rule={self.result.threshold_rule!r}`"
        )

    def wanted(self, slots: int) -> list[Task]:
        planned = plan_dims(self.strategy, self.finished_outcomes(), slots)
        return [(d, s) for d in planned for s in self.seeds if (d, s) not in self.done]

    def run(self) -> SearchResult:
        """Runs the search to its end (or resumes it) and returns `result`.

        The results file is written after each run; at the end once, with
        d_int; and when the search stops early (an error, an interrupt)
        with what it has so far. Each write is of a change: a save that
        would write the file's content again writes nothing.
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
        self.finish()
        self.save()
        self.say(self.result.verdict())
        return self.result

    def wind_down(self) -> None:
        """Closes the runner, keeping the runs that finished meanwhile."""
        for task, record in self.runner.close():
            self.done[task] = record  # finished while the search wound down
            self.keep_model(record)
        self.update()

    def finish(self) -> None:
        """Sets `result`'s d_int and the interval of d_int over seeds."""
        result = self.result
        path, _ = follow(self.strategy, self.finished_outcomes())
        result.d_int = smallest_passing(path)
        result.d_int_ci = d_int_interval(
            result.runs, self.seeds, self.threshold, result.mode, result.ci_level
        )
