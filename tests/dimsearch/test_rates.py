"""Learning rates that train: `learning_rate="auto"` (its probes checked
against runs at fixed rates), the rate every run records, SAID's scales at
their own rate, and one recipe of defaults for Python and the CLI."""

import inspect
import math

import keras
import numpy as np
import pytest
from search_helpers import TINY, digits_arrays, tiny_fc

from keras_idim import SubspaceModel, cli, search
from keras_idim.dimsearch import rates
from keras_idim.dimsearch.config import optimizer_factory
from keras_idim.dimsearch.defaults import RECIPE
from keras_idim.dimsearch.records import RunRecord
from keras_idim.dimsearch.runner import Recipe, train_run


def peaked(at, calls):
    """A probe score that peaks at the rate `at` (log scale), recording calls."""

    def score(rate):
        calls.append(rate)
        return -abs(math.log10(rate) - math.log10(at))

    return score


@pytest.mark.parametrize(
    "start, expected_calls",
    [
        (0.01, [0.01, 0.0316, 0.1, 0.316]),  # walks up to 0.1, one past it
        (1.0, [1.0, 3.16, 0.316, 0.1, 0.0316]),  # up is worse: walks down
        (0.1, [0.1, 0.316, 0.0316]),  # the start is best: three probes
    ],
)
def test_choose_walks_the_grid_to_the_best_and_backs_off_a_step(start, expected_calls):
    calls = []
    rate, probes = rates.choose(peaked(0.1, calls), start, "max")
    assert calls == expected_calls  # each rate probed once
    assert [p[0] for p in probes] == expected_calls
    assert rate == 0.0316  # one half-decade below the best probe, 0.1


def test_choose_in_min_mode_none_is_worst_and_probes_are_bounded():
    calls = []
    score = peaked(1e-4, calls)
    rate, probes = rates.choose(lambda r: -score(r), 0.1, "min", max_probes=4)
    assert len(probes) == 4 and calls == [0.1, 0.316, 0.0316, 0.01]
    assert rate == 0.00316  # the best of the 4 (0.01) backed off
    # Diverged probes (None) lose to any value; all None: below the smallest.
    rate, probes = rates.choose(lambda r: None if r > 0.05 else 1.0, 0.1, "max")
    assert probes[:2] == [[0.1, None], [0.316, None]] and probes[2] == [0.0316, 1.0]
    assert rate == 0.01
    rate, _ = rates.choose(lambda r: None, 0.1, "max")
    assert rate == 0.01  # probed 0.1, 0.316, 0.0316: all failed


def test_start_rate_moves_weights_as_far_as_full_training():
    # Adam's 0.001 * sqrt(55,210 / 160) = 0.0186, on the half-decade grid.
    assert rates.start_rate(1e-3, 55_210, 160) == 0.0316
    assert rates.start_rate(1e-3, 1000, 1000) == 0.001
    assert rates.start_rate(1e-3, 10**12, 1) == 1.0  # at most 1
    assert rates.on_grid(0.03) == 0.0316 and rates.on_grid(0.005) == 0.00316


def _recipe(**kwargs):
    make, _ = optimizer_factory("adam", kwargs.pop("learning_rate", "auto"))
    train, val = digits_arrays()
    return Recipe(
        model_fn=tiny_fc,
        train_data=train,
        val_data=val,
        batch_size=64,
        epochs=3,
        loss="sparse_categorical_crossentropy",
        monitor="val_accuracy",
        projection="fastfood",
        structure_aware=False,
        optimizer=make,
        baseline_optimizer=make,
        learning_rate="auto",
        baseline_learning_rate="auto",
        **kwargs,
    )


@pytest.mark.parametrize("dim", [40, None])
def test_each_probe_equals_a_fresh_run_at_its_rate(dim):
    """A probe reuses one model, put back before each rate: its value must
    be what a fresh one-epoch run at that rate scores, from the same seed."""
    record = train_run(_recipe(), dim, seed=3, threshold=None)
    assert record.status == "ok" and len(record.rate_probes) >= 3
    for rate, value in record.rate_probes:
        fixed = _recipe(learning_rate=rate)
        fixed.learning_rate = fixed.baseline_learning_rate = rate
        fixed.epochs = rates.PROBE_EPOCHS
        alone = train_run(fixed, dim, seed=3, threshold=None)
        assert alone.learning_rate == pytest.approx(rate)
        assert value == pytest.approx(alone.metric, abs=1e-6), rate
    values = {r: v for r, v in record.rate_probes}
    best_rate = max(values, key=lambda r: values[r])
    assert record.learning_rate == pytest.approx(best_rate / math.sqrt(10), rel=0.01)


def test_the_record_holds_the_rate_a_callback_set():
    class Halve(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.optimizer.learning_rate = 0.0123

    train, val = digits_arrays()
    result = search(
        tiny_fc,
        train,
        val,
        **dict(TINY, dims=[40], learning_rate=0.05),
        callbacks=[Halve()],
    )
    (run,) = result.runs
    assert run.learning_rate == pytest.approx(0.0123) and run.rate_probes is None
    data = run.to_dict()
    assert data["learning_rate"] == pytest.approx(0.0123) and "rate_probes" not in data
    assert RunRecord.from_dict(data) == run
    old = {k: v for k, v in data.items() if k != "learning_rate"}  # a 0.1.0 record
    assert RunRecord.from_dict(old).learning_rate is None


def test_auto_is_recorded_in_the_results_file(tmp_path):
    train, val = digits_arrays()
    path = tmp_path / "results.json"
    result = search(
        tiny_fc,
        train,
        val,
        **dict(TINY, dims=[40], learning_rate="auto"),
        results_path=path,
    )
    import json

    data = json.loads(path.read_text())
    assert data["config"]["optimizer"]["learning_rate"] == "auto"
    (run,) = data["runs"]
    assert run["learning_rate"] == result.runs[0].learning_rate > 0
    assert [p[0] for p in run["rate_probes"]] == [
        p[0] for p in result.runs[0].rate_probes
    ]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(learning_rate="fast"), r"`learning_rate='fast'`"),
        (dict(learning_rate=0), r"`learning_rate=0`"),
        (dict(baseline_learning_rate=-1.0), r"`baseline_learning_rate=-1.0`"),
        (dict(said_learning_rate=0.1), r"needs `structure_aware=True`.*=0.1"),
        (
            dict(
                optimizer=keras.optimizers.Adam(
                    keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
                )
            ),
            r"a learning-rate schedule",
        ),
    ],
)
def test_bad_rates_are_refused_naming_the_argument(kwargs, match):
    train, val = digits_arrays()
    args = dict(TINY, dims=[40])
    args.update(kwargs)
    if "optimizer" in kwargs:
        args["learning_rate"] = "auto"
    with pytest.raises(ValueError, match=match):
        search(tiny_fc, train, val, **args)


def _said_scales(said_learning_rate=None, lr=0.3, epochs=10):
    train, val = digits_arrays()
    keras.utils.set_random_seed(0)
    model = SubspaceModel(
        tiny_fc(), 100, structure_aware=True, said_learning_rate=said_learning_rate
    )
    model.compile(
        optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy"
    )
    model.fit(*train, batch_size=32, epochs=epochs, verbose=0)
    return model, keras.ops.convert_to_numpy(model.lambdas)


def test_said_scales_train_at_their_own_rate_and_keep_their_sign():
    model, scales = _said_scales()
    expected = 0.3 * math.sqrt(100 / 1210)
    assert float(model.said_optimizer.learning_rate) == pytest.approx(expected)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.3)
    # At theta_d's rate (the old behaviour) a scale flips sign here; at
    # their own (sqrt(100 / 1,210) = 0.29 times it) all 4 keep theirs.
    _, shared = _said_scales(said_learning_rate=0.3)
    assert shared.min() < 0 < scales.min(), (scales, shared)
    assert np.abs(scales - 1).max() < np.abs(shared - 1).max()
    assert not np.allclose(scales, 1.0)  # they did train


def test_said_learning_rate_is_checked_and_saved(tmp_path):
    base = tiny_fc()
    with pytest.raises(ValueError, match=r"`said_learning_rate=0.1` with `struct"):
        SubspaceModel(base, 100, said_learning_rate=0.1)
    with pytest.raises(ValueError, match=r"`said_learning_rate=-2`"):
        SubspaceModel(base, 100, structure_aware=True, said_learning_rate=-2)
    model = SubspaceModel(base, 100, structure_aware=True, said_learning_rate=0.01)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert float(model.said_optimizer.learning_rate) == pytest.approx(0.01)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.said_learning_rate == 0.01


def test_python_and_the_cli_share_one_recipe():
    params = inspect.signature(search).parameters
    for name in ("projection", "fraction", "epochs", "batch_size"):
        assert params[name].default == RECIPE[name] == cli.DEFAULTS[name]
    assert params["learning_rate"].default == RECIPE["learning_rate"] == "auto"
    assert cli.DEFAULTS["lr"] == "auto" == cli.DEFAULTS["baseline_lr"]
    assert params["baseline_learning_rate"].default == "auto"
    args = cli.build_parser().parse_args(["search"])
    assert (args.lr, args.baseline_lr, args.batch_size) == ("auto", "auto", 32)
    assert cli.build_parser().parse_args(["search", "--lr", "0.03"]).lr == 0.03


def test_cli_rate_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["search", "--lr", "fast"])
    assert exit_.value.code == 2
    assert "--lr" in capsys.readouterr().err
