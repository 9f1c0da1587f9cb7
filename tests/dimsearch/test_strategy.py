"""The strategies (which d next), pure functions tested without TensorFlow."""

import math
import random

import pytest

from keras_idim.dimsearch.strategy import (
    auto_next_dim,
    follow,
    plan_dims,
    smallest_passing,
)


def drive_auto(boundary, **kwargs):
    """Runs the automatic strategy against a known pass/fail boundary."""
    outcomes, order = {}, []
    while (d := auto_next_dim(outcomes, **kwargs)) is not None:
        assert d not in outcomes, "a d must never be tried twice"
        outcomes[d] = d >= boundary
        order.append(d)
    return smallest_passing(outcomes), order


def test_auto_sequence_worked_by_hand():
    # 10..640 fail, 1280 passes; then sqrt(640*1280) = 905.1 -> 905 passes,
    # sqrt(640*905) = 761.05 -> 761 passes, sqrt(640*761) = 697.9 -> 698
    # fails, and 761/698 = 1.09 <= 1.1 ends it.
    d, order = drive_auto(750, start=10, tolerance=0.1, max_dim=100_000)
    assert order == [10, 20, 40, 80, 160, 320, 640, 1280, 905, 761, 698]
    assert d == 761


def test_auto_halves_when_the_start_passes():
    # 10, 5 pass, 2 fails; sqrt(2*5) = 3.16 -> 3 passes; 2 and 3 are adjacent.
    assert drive_auto(3, start=10, tolerance=0.1, max_dim=100) == (3, [10, 5, 2, 3])


def test_auto_halves_no_lower_than_min_dim():
    # SAID with 25 weight tensors: min_dim 26. 100, 50 pass; 25 would be
    # next, so 26 is tried instead; it passes and nothing below is left.
    assert drive_auto(3, start=100, max_dim=1000, min_dim=26) == (26, [100, 50, 26])
    # 26 fails: the bracket (26, 50] is bisected as usual: sqrt(26*50) = 36.1
    # fails, sqrt(36*50) = 42.4 passes, sqrt(36*42) = 38.9 fails, 42/39 <= 1.1.
    assert drive_auto(40, start=100, max_dim=1000, min_dim=26) == (
        42,
        [100, 50, 26, 36, 42, 39],
    )


def test_auto_gives_up_at_max_dim():
    assert drive_auto(10**9, start=10, max_dim=100) == (None, [10, 20, 40, 80, 100])


@pytest.mark.parametrize("boundary", [1, 2, 7, 64, 99, 750, 1234, 9000, 190_000])
def test_auto_finds_the_boundary_within_tolerance(boundary):
    d, order = drive_auto(boundary, start=10, tolerance=0.1, max_dim=10**6)
    assert d >= boundary
    fails = [x for x in order if x < boundary]
    if fails:
        lo = max(fails)
        assert d / lo <= 1.1 or d - lo == 1
    # Far fewer runs than a 25-point grid: log2(d/10) to bracket, 3 to bisect.
    assert len(order) <= abs(math.log2(boundary / 10)) + 6


# -- the parallel plan --


def sequential(step, outcome):
    outcomes = {}
    while (d := step(outcomes)) is not None:
        outcomes[d] = outcome(d)
    return smallest_passing(outcomes), list(outcomes)


def simulate(step, outcome, slots, rng):
    """A parallel search: `slots` runs at once, finishing in a random order."""
    finished, running, started = {}, set(), []
    while True:
        planned = plan_dims(step, finished, slots)
        running &= set(planned)  # the others are cancelled
        for d in planned:
            if len(running) < slots and d not in running:
                running.add(d)
                started.append(d)
        if not running:
            break
        d = rng.choice(sorted(running))
        running.discard(d)
        finished[d] = outcome(d)
    path, _ = follow(step, finished)
    return smallest_passing(path), list(path), started


@pytest.mark.parametrize("slots", [1, 2, 3, 5, 8])
def test_parallel_plan_gives_the_sequential_answer(slots):
    rng = random.Random(slots)
    for trial in range(60):
        # Noisy, not monotone: each d passes above a boundary, and a few
        # flip, so that a different order of runs could change the answer.
        boundary = int(10 ** rng.uniform(0, 4.5))
        flips = {d for d in range(1, 40_000) if rng.random() < 0.03}

        def outcome(d, boundary=boundary, flips=flips):
            return (d >= boundary) != (d in flips)

        start = rng.choice([1, 10, 64])
        tolerance = rng.choice([0.05, 0.1, 0.3])

        def step(o, start=start, tolerance=tolerance):
            return auto_next_dim(o, start=start, tolerance=tolerance, max_dim=30_000)

        answer, order = sequential(step, outcome)
        got, path, started = simulate(step, outcome, slots, rng)
        assert (got, path) == (answer, order), (trial, boundary, slots)
        assert set(order) <= set(started)
        if slots == 1:
            assert started == order  # nothing speculative


def test_plan_dims_worked_by_hand():
    def step(o):
        return auto_next_dim(o, start=10, max_dim=1000)

    # Empty path: 20 (if 10 fails) and 5 (if it passes) are even; then 40,
    # the next doubling, at 0.5 x 0.75.
    assert plan_dims(step, {}, 4) == [10, 20, 5, 40]
    # Bracketed by 10 and 20: 14, then 17 (14 fails) before 12 (14 passes).
    assert plan_dims(step, {10: False, 20: True}, 3) == [14, 17, 12]
    # Finished speculative runs are followed, not replanned.
    assert plan_dims(step, {10: False, 20: False, 40: True}, 1) == [28]
    assert plan_dims(step, {10: True, 5: True, 2: True, 1: True}, 3) == []
    assert plan_dims(step, {}, 0) == []
