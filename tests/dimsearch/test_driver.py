"""The search loop, driven by fake runners (no training, no monkeypatching)."""

import random

import pytest
from search_helpers import TINY_RAY, digits_arrays, must_not_run, tiny_fc

from keras_idim import search
from keras_idim.dimsearch import InProcessRunner, RunRecord, SearchResult


class ShuffledRunner(InProcessRunner):
    """Three runs at once, finishing in a random order, with fake training."""

    def __init__(self, run):
        super().__init__(run, slots=3)
        self.rng = random.Random(0)
        self.cancelled = 0

    def cancel(self, task):
        self.cancelled += 1
        super().cancel(task)

    def pop(self):
        return self._queue.pop(self.rng.randrange(len(self._queue)))


def fake_run(recipe, dim, seed, threshold):
    # Accuracy rises with log d, minus a bit for odd seeds; d = 45 dips.
    metric = 0.3 if dim == 45 else min(1.0, 0.12 * (dim or 1e9) ** 0.4)
    metric -= 0.01 * (seed % 2)
    return RunRecord(dim, seed, "fastfood", metric, 1, False, 0.0, "ok")


def test_driver_with_runs_out_of_order_matches_sequential(tmp_path):
    train, val = digits_arrays()
    kwargs = dict(TINY_RAY, seeds=(0, 1), verbose=0)
    expected = search(tiny_fc, train, val, runner=InProcessRunner(fake_run), **kwargs)
    runner = ShuffledRunner(fake_run)
    path = tmp_path / "results.json"
    got = search(tiny_fc, train, val, results_path=path, runner=runner, **kwargs)
    assert got.d_int == expected.d_int is not None
    assert [r.to_dict() for r in got.runs] == [r.to_dict() for r in expected.runs]
    assert got.speculative_runs and runner.cancelled > 0
    keys = [(r.dim, r.seed) for r in got.runs + got.speculative_runs]
    assert len(keys) == len(set(keys))
    stored = SearchResult.from_json(path)
    assert stored.d_int == got.d_int
    assert len(stored.speculative_runs) == len(got.speculative_runs)
    # A resume, here with one worker, reruns nothing and keeps the extras.
    again = search(
        tiny_fc,
        train,
        val,
        results_path=path,
        runner=InProcessRunner(must_not_run),
        **kwargs,
    )
    assert again.d_int == got.d_int
    assert len(again.speculative_runs) == len(got.speculative_runs)


def test_runner_is_started_once_and_closed_also_on_error():
    events = []

    class Recording(InProcessRunner):
        def start(self, recipe, say):
            events.append("start")
            super().start(recipe, say)

        def close(self):
            events.append("close")
            return super().close()

    def broken_after_two(recipe, dim, seed, threshold):
        if len(events) > 3:
            raise KeyboardInterrupt
        events.append(dim)
        return fake_run(recipe, dim, seed, threshold)

    train, val = digits_arrays()
    with pytest.raises(KeyboardInterrupt):
        search(
            tiny_fc,
            train,
            val,
            runner=Recording(broken_after_two),
            **dict(TINY_RAY, verbose=0),
        )
    assert events[0] == "start" and events.count("start") == 1
    assert events[-1] == "close"


def test_bad_runner_is_refused():
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=r"Received: `runner=3`"):
        search(tiny_fc, train, val, runner=3, **TINY_RAY)
    with pytest.raises(ValueError, match="not both"):
        search(tiny_fc, train, val, runner=InProcessRunner(), workers=2, **TINY_RAY)
