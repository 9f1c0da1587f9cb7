"""The chance floor and the interval of d_int over seeds (issue 19, 3 and 4)."""

import csv
import io
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from search_helpers import (
    TINY,
    diabetes_arrays,
    digits_arrays,
    must_not_run,
    tiny_fc,
    tiny_regressor,
    zero_or_not_arrays,
)

from keras_idim import search
from keras_idim.dimsearch import (
    FloorError,
    InProcessRunner,
    RunRecord,
    SearchResult,
    store,
)
from keras_idim.dimsearch.floor import chance_floor
from keras_idim.dimsearch.interval import d_int_interval

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# -- the floor's values, against numpy --


def test_majority_class_floor_is_the_share_of_that_class_in_val():
    (x_train, y_train), (x_val, y_val) = digits_arrays()
    majority = np.bincount(y_train).argmax()
    expected = np.mean(y_val == majority)
    for metric in ("accuracy", "sparse_categorical_accuracy"):
        floor = chance_floor(
            train_data=(x_train, y_train),
            val_data=(x_val, y_val),
            monitor=f"val_{metric}",
            loss="sparse_categorical_crossentropy",
            metrics=[metric],
            output_shape=(None, 10),
        )
        assert floor.value == pytest.approx(expected, abs=1e-6)
        assert f"class {majority}" in floor.source


def test_majority_floor_with_skewed_one_hot_and_binary_labels():
    rng = np.random.default_rng(3)
    y_train = rng.choice(4, size=200, p=[0.1, 0.2, 0.6, 0.1])
    y_val = rng.choice(4, size=77, p=[0.3, 0.3, 0.2, 0.2])
    x_train, x_val = np.zeros((200, 2)), np.zeros((77, 2))
    onehot = np.eye(4, dtype="float32")
    floor = chance_floor(
        train_data=(x_train, onehot[y_train]),
        val_data=(x_val, onehot[y_val]),
        monitor="val_categorical_accuracy",
        loss="categorical_crossentropy",
        metrics=["categorical_accuracy"],
        output_shape=(None, 4),
    )
    assert floor.value == pytest.approx(np.mean(y_val == 2), abs=1e-6)
    (xb, yb), (xv, yv) = zero_or_not_arrays()  # 0 is the majority: "not a 0"
    share_of_zeros = float(np.mean(yv == 0))
    floor = chance_floor(
        train_data=(xb, yb),
        val_data=(xv, yv),
        monitor="val_binary_accuracy",
        loss="binary_crossentropy",
        metrics=["binary_accuracy"],
        output_shape=(None, 1),
    )
    assert floor.value == pytest.approx(share_of_zeros, abs=1e-6)


def test_mean_floor_of_mae_mse_and_the_loss():
    (x_train, y_train), (x_val, y_val) = diabetes_arrays()
    mean = y_train.astype(np.float64).mean()
    expected = {
        "val_mae": np.mean(np.abs(y_val - mean)),
        "val_mse": np.mean((y_val - mean) ** 2),
        "val_loss": np.mean((y_val - mean) ** 2),
        "mae": np.mean(np.abs(y_train - mean)),  # on the training data
    }
    for monitor, value in expected.items():
        floor = chance_floor(
            train_data=(x_train, y_train),
            val_data=(x_val, y_val),
            monitor=monitor,
            loss="mse",
            metrics=["mae", "mse"],
            output_shape=(None, 1),
        )
        assert floor.value == pytest.approx(value, rel=1e-5), monitor
        assert "mean" in floor.source


def test_no_floor_where_none_can_be_computed_and_a_given_one_is_used():
    train, val = zero_or_not_arrays()
    kwargs = dict(
        train_data=train,
        val_data=val,
        loss="binary_crossentropy",
        output_shape=(None, 1),
    )
    floor = chance_floor(monitor="val_auc", metrics=["auc"], **kwargs)
    assert floor.value is None and "monitor='val_auc'" in floor.source
    floor = chance_floor(monitor="val_auc", metrics=["auc"], given=0.5, **kwargs)
    assert floor == (0.5, "given")
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(train).batch(32)
    floor = chance_floor(
        **dict(kwargs, train_data=dataset), monitor="val_accuracy", metrics=["accuracy"]
    )
    assert floor.value is None and "not (x, y) arrays" in floor.source


# -- the floor in a search --


def _numbers(message):
    return [float(v) for v in re.findall(r"\d+\.\d{4}", message)]


def test_shuffled_labels_are_refused_with_threshold_and_floor(tmp_path):
    (x_train, y_train), (x_val, y_val) = digits_arrays()
    shuffled = np.random.default_rng(0).permutation(y_train)
    floor = np.mean(y_val == np.bincount(shuffled).argmax())
    path = tmp_path / "r.json"
    with pytest.raises(FloorError) as error:
        search(
            tiny_fc,
            (x_train, shuffled),
            (x_val, y_val),
            dims=[5, 300],
            results_path=path,
            runner=InProcessRunner(slots=1),
            **dict(TINY, baseline=None, baseline_learning_rate=0.01),
        )
    message = str(error.value)
    stored = json.loads(path.read_text())
    baseline = stored["baseline"]["value"]
    assert baseline < 0.2  # near chance: the labels say nothing
    threshold = 0.5 * baseline
    assert stored["threshold"] == pytest.approx(threshold)
    assert stored["floor"] == pytest.approx(floor, abs=1e-6)
    assert f"{threshold:.4f}" in message and f"{floor:.4f}" in message
    assert "does not clear the chance floor" in message
    # Nothing computed is lost, and no subspace run was made.
    assert len(stored["baseline_runs"]) == 1 and stored["runs"] == []
    assert stored["d_int"] is None


def fake_run(recipe, dim, seed, threshold):
    # seeds 0, 1, 2 at d = 10, 100, 1000 (see test_interval_...).
    table = {10: (0.1, 0.9, 0.1), 100: (0.2, 0.7, 0.7), 1000: (0.9, 0.9, 0.9)}
    return RunRecord(dim, seed, "fastfood", table[dim][seed], 1, False, 0.0, "ok")


FAKE = dict(baseline=1.0, fraction=0.5, epochs=1, verbose=0)


def test_a_threshold_below_the_floor_is_refused_before_any_run():
    train, val = digits_arrays()
    floor = np.mean(val[1] == np.bincount(train[1]).argmax())
    with pytest.raises(FloorError) as error:
        search(
            tiny_fc,
            train,
            val,
            dims=[10],
            threshold=floor,  # equal: does not clear it
            runner=InProcessRunner(must_not_run),
            **dict(FAKE, baseline=None),
        )
    assert _numbers(str(error.value)) == [round(floor, 4)] * 2
    # For a metric to minimise the floor is above: a threshold at or above it.
    train, val = diabetes_arrays()
    mae = np.mean(np.abs(val[1] - train[1].astype(np.float64).mean()))
    with pytest.raises(FloorError, match=f"{mae + 0.01:.4f}.*{mae:.4f}"):
        search(
            tiny_regressor,
            train,
            val,
            loss="mse",
            metrics=["mae"],
            monitor="val_mae",
            dims=[10],
            threshold=mae + 0.01,
            runner=InProcessRunner(must_not_run),
            epochs=1,
            verbose=0,
        )


def test_above_floor_rule_and_the_floor_in_summary_and_files(tmp_path):
    train, val = digits_arrays()
    floor = np.mean(val[1] == np.bincount(train[1]).argmax())
    result = search(
        tiny_fc,
        train,
        val,
        dims=[10, 100, 1000],
        seeds=(0, 1, 2),
        threshold_rule="above_floor",
        runner=InProcessRunner(fake_run),
        results_path=tmp_path / "r.json",
        **FAKE,
    )
    assert result.floor == pytest.approx(floor, abs=1e-6)
    assert result.threshold == pytest.approx(floor + 0.5 * (1.0 - floor), abs=1e-6)
    assert f"chance floor {floor:.4f}" in result.summary()
    assert "global baseline 1.0000; chance floor" in result.summary()
    stored = json.loads((tmp_path / "r.json").read_text())
    assert stored["threshold_rule"] == "above_floor"
    assert stored["floor"] == result.floor
    row = next(csv.DictReader(io.StringIO(result.to_csv())))
    assert float(row["floor"]) == pytest.approx(floor, abs=1e-6)


def test_a_given_floor_and_no_floor(tmp_path):
    train, val = zero_or_not_arrays()
    from search_helpers import tiny_binary

    kwargs = dict(
        FAKE,
        loss="binary_crossentropy",
        metrics=["auc"],
        monitor="val_auc",
        dims=[10, 100],
        runner=InProcessRunner(fake_run),
    )
    result = search(tiny_binary, train, val, **kwargs)
    assert result.floor is None
    assert "no chance floor was checked" in result.summary()
    result = search(tiny_binary, train, val, floor=0.25, **kwargs)
    assert result.floor == 0.25 and "chance floor 0.2500 (given)" in result.summary()
    with pytest.raises(ValueError, match=r"needs a chance floor.*`floor=`"):
        search(tiny_binary, train, val, threshold_rule="above_floor", **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"threshold_rule": "floor"}, r"`threshold_rule=.floor.`"),
        ({"floor": "low"}, r"`floor` should be a finite number.*`floor='low'`"),
        ({"floor": float("nan")}, r"`floor=nan`"),
        ({"ci_level": 1.0}, r"`ci_level` should be a number in \(0, 1\).*=1\.0`"),
        ({"ci_level": True}, r"`ci_level=True`"),
        (
            {"threshold": 0.5, "threshold_rule": "above_floor", "baseline": None},
            r"not both.*`threshold_rule='above_floor'`",
        ),
    ],
)
def test_bad_floor_and_interval_arguments(kwargs, match):
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=match):
        search(
            tiny_fc,
            train,
            val,
            runner=InProcessRunner(must_not_run),
            **{**FAKE, **kwargs},
        )


# -- the interval over seeds --


def _records():
    return [fake_run(None, d, s, None) for d in (10, 100, 1000) for s in (0, 1, 2)]


def _exact_quantiles(level, threshold=0.5):
    """The 27 resamples of 3 seeds, each as likely: their d_int's quantiles."""
    table = {10: (0.1, 0.9, 0.1), 100: (0.2, 0.7, 0.7), 1000: (0.9, 0.9, 0.9)}
    found = []
    for pick in itertools.product(range(3), repeat=3):
        reached = [
            d
            for d in sorted(table)
            if np.mean([table[d][i] for i in pick]) >= threshold
        ]
        found.append(reached[0] if reached else np.inf)
    found = np.sort(found)
    ends = []
    for q in ((1 - level) / 2, (1 + level) / 2):
        # The smallest d whose share of resamples at or below it reaches q.
        share = np.array([np.mean(found <= d) for d in found])
        ends.append(found[np.argmax(share >= q)])
    return found, ends


def test_interval_matches_the_enumeration_of_all_27_resamples():
    found, ends = _exact_quantiles(0.9)
    # By hand: d_int = 10 when seed 1 is drawn twice or more (7 of 27),
    # 1000 when seed 0 is (7 of 27), else 100 (13 of 27).
    assert [np.sum(found == d) for d in (10, 100, 1000)] == [7, 13, 7]
    assert ends == [10, 1000]
    assert d_int_interval(_records(), [0, 1, 2], 0.5, "max", 0.9) == (10, 1000)
    found, ends = _exact_quantiles(0.4)  # 30% and 70%: both in the middle
    assert ends == [100, 100]
    assert d_int_interval(_records(), [0, 1, 2], 0.5, "max", 0.4) == (100, 100)
    # The same for a metric to minimise (the values mirrored).
    mirrored = [
        RunRecord(r.dim, r.seed, "x", 1 - r.metric, 1, False, 0.0, "ok")
        for r in _records()
    ]
    assert d_int_interval(mirrored, [0, 1, 2], 0.5, "min", 0.9) == (10, 1000)
    # Reproducible: a fixed generator.
    assert d_int_interval(_records(), [0, 1, 2], 0.5) == d_int_interval(
        _records(), [0, 1, 2], 0.5
    )


def test_interval_counts_only_d_tried_with_all_seeds_and_failed_runs_fail():
    records = [r for r in _records() if (r.dim, r.seed) != (1000, 2)]
    # 1000 lacks a seed: resamples that miss 10 and 100 reach no tried d.
    assert d_int_interval(records, [0, 1, 2], 0.5, "max", 0.9) == (10, None)
    diverged = [
        RunRecord(r.dim, r.seed, "x", None, 1, False, 0.0, "diverged")
        if (r.dim, r.seed) == (10, 1)
        else r
        for r in _records()
    ]
    # Seed 1's failed run at d = 10 fails d = 10 wherever it is drawn, and
    # without seed 1 the mean at 10 is 0.1: d_int is never 10.
    low, high = d_int_interval(diverged, [0, 1, 2], 0.5, "max", 0.9)
    assert low == 100 and high == 1000
    assert d_int_interval(_records(), [0], 0.5) is None


def test_interval_in_the_search_summary_csv_and_results_file(tmp_path):
    train, val = digits_arrays()
    path = tmp_path / "r.json"
    result = search(
        tiny_fc,
        train,
        val,
        dims=[10, 100, 1000],
        seeds=(0, 1, 2),
        results_path=path,
        runner=InProcessRunner(fake_run),
        **FAKE,
    )
    # The sweep stops at 100 (mean 0.533): 1000 is never tried, so the
    # resamples that reach neither 10 nor 100 (7 of 27) put the top beyond.
    assert result.d_int == 100 and [r.dim for r in result.runs][-1] == 100
    assert result.d_int_ci == (10, None)
    assert "90% interval of d_int50 over 3 seeds" in result.summary()
    assert "[10, > 100]" in result.summary()
    stored = json.loads(path.read_text())
    assert stored["d_int_ci"] == [10, None] and stored["ci_level"] == 0.9
    again = SearchResult.from_json(path)
    assert again.d_int_ci == (10, None) and again.to_dict() == result.to_dict()
    row = next(csv.DictReader(io.StringIO(result.to_csv())))
    assert (row["d_int_ci_low"], row["d_int_ci_high"], row["ci_level"]) == (
        "10",
        "",
        "0.9",
    )
    png = Path(result.plot(tmp_path / "curve.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Another level is not part of the configuration: the file resumes.
    wider = search(
        tiny_fc,
        train,
        val,
        dims=[10, 100, 1000],
        seeds=(0, 1, 2),
        results_path=path,
        runner=InProcessRunner(must_not_run),
        ci_level=0.4,
        **FAKE,
    )
    assert wider.d_int_ci == (100, 100) and "40% interval" in wider.summary()


def test_one_seed_gives_no_interval_and_says_so():
    train, val = digits_arrays()
    result = search(
        tiny_fc,
        train,
        val,
        dims=[10, 100, 1000],
        seeds=(1,),
        runner=InProcessRunner(fake_run),
        **FAKE,
    )
    assert result.d_int == 10 and result.d_int_ci is None
    assert "one seed gives no interval" in result.summary()
    assert result.to_dict()["d_int_ci"] is None


def test_old_files_without_floor_or_interval_load_and_say_so(tmp_path):
    old = json.loads((FIXTURES / "results_v1_complete.json").read_text())
    assert "floor" not in old and "d_int_ci" not in old
    result = SearchResult.from_json(FIXTURES / "results_v1_complete.json")
    assert result.floor is None and result.d_int_ci is None
    assert result.threshold_rule == "baseline" and result.d_int == 400
    assert "no chance floor was checked" in result.summary()
    store.load(FIXTURES / "results_v1_interrupted.json")
    # A bad added field is refused, naming it.
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(dict(old, d_int_ci=[1, "x"])))
    with pytest.raises(store.SearchFileError, match=r"bad `d_int_ci`"):
        store.load(path)
