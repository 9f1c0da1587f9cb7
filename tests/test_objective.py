"""The objective: the one place that knows which way a metric improves."""

import math

import numpy as np
import pytest

from keras_idim.objective import Objective


def test_max_and_min_compare_each_their_way():
    acc, loss = Objective("val_accuracy", "max"), Objective("val_loss", "min")
    assert (
        acc.reaches(0.9, 0.9) and acc.reaches(0.91, 0.9) and not acc.reaches(0.8, 0.9)
    )
    assert (
        loss.reaches(0.2, 0.2) and loss.reaches(0.1, 0.2) and not loss.reaches(0.3, 0.2)
    )
    assert acc.better(0.9, 0.8) and not acc.better(0.9, 0.9)
    assert loss.better(0.1, 0.2) and not loss.better(0.2, 0.2)
    assert (acc.sign, loss.sign, acc.beyond, loss.beyond) == (
        ">=",
        "<=",
        "above",
        "below",
    )
    assert not acc.minimize and loss.minimize


def test_best_skips_non_finite_values():
    values = [0.3, math.nan, 0.5, math.inf, 0.1]
    assert Objective(mode="max").best(values) == 0.5
    assert Objective(mode="min").best(values) == 0.1
    assert Objective(mode="min").best([math.nan]) is None


def test_the_papers_threshold_rule_in_both_directions():
    assert Objective(mode="max").scaled(0.8, 0.9) == pytest.approx(0.72)
    assert Objective(mode="min").scaled(0.18, 0.9) == pytest.approx(0.2)


def test_reaches_works_on_arrays_elementwise():
    means = np.array([0.5, 0.9, 0.95])
    np.testing.assert_array_equal(Objective(mode="max").reaches(means, 0.9), [0, 1, 1])
    np.testing.assert_array_equal(Objective(mode="min").reaches(means, 0.9), [1, 1, 0])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"mode": "up"}, "mode"), ({"monitor": "", "mode": "max"}, "monitor")],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Objective(**kwargs)
