"""`keras_idim.search` end to end, on tiny_fc and digits."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import search_helpers
from search_helpers import (
    TINY,
    diabetes_arrays,
    digits_arrays,
    tiny_binary,
    tiny_fc,
    tiny_regressor,
    zero_or_not_arrays,
)

from keras_idim import SubspaceModel, search
from keras_idim.dimsearch import (
    InProcessRunner,
    RunError,
    RunRecord,
    SearchResult,
)
from keras_idim.dimsearch.runner import train_run

TESTS = Path(__file__).resolve().parents[1]
#: `search` builds the model twice before any run, to check `model_fn`.
CHECK_BUILDS = 2


def test_list_sweep_stops_at_the_first_passing_d(tmp_path):
    train, val = digits_arrays()
    search_helpers.CALLS["model_fn"] = 0
    result = search(
        tiny_fc,
        train,
        val,
        dims=[3, 1, 2, 300, 600, 1000],
        results_path=tmp_path / "r.json",
        **TINY,
    )
    assert [r.dim for r in result.runs] == [1, 2, 3, 300]
    # 4 runs, and 2 builds that check model_fn up front: 600, 1000 never ran.
    assert search_helpers.CALLS["model_fn"] == 4 + CHECK_BUILDS
    assert result.d_int == 300
    assert result.threshold == 0.5 and result.baseline == (1.0, "global")
    assert result.runs[-1].stopped_early
    assert result.runs[-1].epochs < 3 or result.runs[-1].metric >= 0.5
    stored = json.loads((tmp_path / "r.json").read_text())
    assert [r["dim"] for r in stored["runs"]] == [1, 2, 3, 300]
    assert stored["d_int"] == 300


def test_local_baseline_and_result_files(tmp_path):
    train, val = digits_arrays()
    result = search(
        tiny_fc,
        train,
        val,
        dims=[2, 400],
        fraction=0.5,
        epochs=2,
        batch_size=64,
        learning_rate=0.05,
        baseline_learning_rate=0.01,
        seeds=(0, 1),
        verbose=0,
    )
    assert result.baseline.kind == "local"
    assert [r.dim for r in result.baseline_runs] == [None, None]
    mean = np.mean([r.metric for r in result.baseline_runs])
    assert result.baseline.value == pytest.approx(mean)
    assert result.threshold == pytest.approx(0.5 * mean)
    assert [(r.dim, r.seed) for r in result.runs] == [
        (2, 0),
        (2, 1),
        (400, 0),
        (400, 1),
    ]
    assert result.d_int == 400
    again = SearchResult.from_json(result.to_json(tmp_path / "x.json"))
    assert again.to_dict() == result.to_dict()
    csv_text = result.to_csv(tmp_path / "x.csv")
    assert csv_text.splitlines()[0].startswith("dim,seed,projection,metric")
    assert len(csv_text.splitlines()) == 1 + 2 + 4
    png = Path(result.plot(tmp_path / "curve.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = result.summary()
    assert "d_int50 = 400" in summary and "local baseline" in summary


def test_diverging_runs_are_recorded_and_the_search_goes_on():
    train, val = digits_arrays()
    result = search(
        tiny_fc,
        train,
        val,
        dims=[20, 40],
        baseline=1.0,
        optimizer="sgd",
        learning_rate=1e12,
        epochs=2,
        verbose=0,
    )
    assert [r.status for r in result.runs] == ["diverged", "diverged"]
    assert [r.dim for r in result.runs] == [20, 40]
    assert "non-finite loss" in result.runs[0].message
    assert result.d_int is None
    assert "not found" in result.verdict()


def test_failing_run_is_recorded_as_error():
    # A run that raises after others trained is that d's failure: recorded,
    # and the search goes on.
    train, val = digits_arrays()

    def no_gpu_at_d_2(recipe, dim, seed, threshold):
        if dim == 2:
            return RunRecord.error(
                dim, seed, "fastfood", 0.0, "RuntimeError: no GPU today"
            )
        return train_run(recipe, dim, seed, threshold)

    result = search(
        tiny_fc,
        train,
        val,
        dims=[1, 2, 300],
        runner=InProcessRunner(no_gpu_at_d_2),
        **TINY,
    )
    assert [r.status for r in result.runs] == ["ok", "error", "ok"]
    assert "no GPU today" in result.runs[1].message
    assert result.d_int == 300


def test_a_model_fn_that_raises_stops_before_any_training():
    # Before: every run recorded as error, the search ended "not found".
    train, val = digits_arrays()

    def broken():
        raise RuntimeError("no GPU today")

    with pytest.raises(RuntimeError, match="`model_fn` failed.*no GPU today"):
        search(broken, train, val, dims=[5], baseline=1.0, verbose=0)


@pytest.mark.parametrize("where", ["baseline", "first subspace run"])
def test_a_recipe_error_stops_the_search_at_its_first_run(tmp_path, where):
    # A loss that does not fit the labels fails every run: the search stops
    # at the first one, with its message, and keeps what it saved.
    train, val = digits_arrays()
    kwargs = dict(TINY, loss="binary_crossentropy", dims=[1, 2, 300])
    if where == "baseline":
        kwargs["baseline"] = None
    path = tmp_path / "r.json"
    with pytest.raises(RunError, match=f"The {where}.*failed, so every run would: "):
        search(tiny_fc, train, val, results_path=path, **kwargs)
    stored = json.loads(path.read_text())
    assert len(stored["runs"] + stored["baseline_runs"]) == 1  # nothing more ran


def test_error_runs_are_retried_on_resume_and_diverged_ones_kept(tmp_path):
    train, val = digits_arrays()
    path = tmp_path / "r.json"

    def flaky(recipe, dim, seed, threshold):
        if dim == 2:
            return RunRecord.error(dim, seed, "fastfood", 0.0, "MemoryError: ")
        if dim == 3:
            return RunRecord(dim, seed, "fastfood", None, 1, False, 0.0, "diverged")
        return train_run(recipe, dim, seed, threshold)

    kwargs = dict(TINY, dims=[1, 2, 3, 300], results_path=path)
    first = search(tiny_fc, train, val, runner=InProcessRunner(flaky), **kwargs)
    assert [r.status for r in first.runs] == ["ok", "error", "diverged", "ok"]
    again = []

    def counting(recipe, dim, seed, threshold):
        again.append(dim)
        return train_run(recipe, dim, seed, threshold)

    second = search(tiny_fc, train, val, runner=InProcessRunner(counting), **kwargs)
    assert again == [2]  # only the error run trains again
    assert [r.status for r in second.runs] == ["ok", "ok", "diverged", "ok"]


class Shared:
    """A model_fn that returns the same model on every call."""

    def __init__(self):
        self.model = tiny_fc()

    def __call__(self):
        return self.model


# Layers built once: every model made of them shares their weights.
SHARED_LAYERS = tiny_fc().layers


@pytest.mark.parametrize(
    "model_fn, match",
    [
        (Shared(), r"returned the same model on two calls"),
        (
            lambda: keras.Sequential([keras.Input((64,)), *SHARED_LAYERS]),
            r"returned the same model weights",
        ),
        (lambda: keras.Sequential([keras.layers.Dense(3)]), r"is not built"),
        (
            lambda: SubspaceModel(tiny_fc(), 5),
            r"returned a SubspaceModel.*`model.base_model`",
        ),
        (lambda: "a model", r"should return a keras.Model"),
    ],
)
def test_model_fn_misuse_is_refused_before_any_training(model_fn, match):
    train, val = digits_arrays()
    search_helpers.CALLS["model_fn"] = 0
    with pytest.raises(ValueError, match=match):
        search(model_fn, train, val, dims=[5], **TINY)


def test_model_instance_as_model_fn_says_what_model_fn_is():
    train, val = digits_arrays()
    with pytest.raises(ValueError, match="`model_fn` should be a function that builds"):
        search(tiny_fc(), train, val, **TINY)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dims": [10, 10**8]}, r"`dims` should be at most D=1,210"),
        ({"dims": "auto", "max_dim": 5000}, r"`max_dim` should be at most D=1,210"),
        (
            {"dims": "auto", "start_dim": 100, "max_dim": 50},
            r"`max_dim` should be at least `start_dim`",
        ),
    ],
)
def test_dims_beyond_the_model_are_refused(kwargs, match):
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=match):
        search(tiny_fc, train, val, **{**TINY, **kwargs})


@pytest.mark.parametrize(
    "kwargs, match",
    [  # tiny_fc has 4 weight tensors: SAID needs d >= 5.
        ({"dims": [4, 10]}, r"every d should exceed .* \(4\).*`dims=\[4, 10\]`"),
        ({"dims": "auto", "start_dim": 3}, r"`start_dim` should exceed .* \(4\)"),
    ],
)
def test_said_dims_below_the_tensor_count_are_refused_first(kwargs, match):
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=match):
        search(tiny_fc, train, val, structure_aware=True, **{**TINY, **kwargs})


def test_numpy_integers_are_accepted_everywhere():
    train, val = digits_arrays()
    result = search(
        tiny_fc,
        train,
        val,
        dims=[np.int64(300)],
        seeds=np.int64(0),
        epochs=np.int32(1),
        **{k: v for k, v in TINY.items() if k != "epochs"},
    )
    assert result.runs[0].seed == 0 and isinstance(result.runs[0].seed, int)


def test_results_files_honour_the_umask(tmp_path):
    train, val = digits_arrays()
    old = os.umask(0o022)
    try:
        result = search(
            tiny_fc, train, val, dims=[300], results_path=tmp_path / "r.json", **TINY
        )
        result.to_csv(tmp_path / "r.csv")
    finally:
        os.umask(old)
    for name in ("r.json", "r.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from search_helpers import digits_arrays, tiny_fc
from keras_idim import search
train, val = digits_arrays()
search(tiny_fc, train, val, dims="auto", start_dim=1, max_dim=1210,
       results_path={path!r}, **{tiny!r})
"""


def test_resume_after_sigkill_recomputes_no_finished_run(tmp_path):
    train, val = digits_arrays()
    path = tmp_path / "results.json"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _CHILD.format(tests=str(TESTS), path=str(path), tiny=TINY),
        ],
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    try:
        deadline = time.monotonic() + 240
        finished = []
        while time.monotonic() < deadline and child.poll() is None:
            if path.exists():
                finished = json.loads(path.read_text())["runs"]
                if len(finished) >= 3:
                    break
            time.sleep(0.05)
        assert child.poll() is None, "the child ended before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    finished = json.loads(path.read_text())["runs"]
    assert len(finished) >= 3
    search_helpers.CALLS["model_fn"] = 0
    resumed = search(
        tiny_fc,
        train,
        val,
        dims="auto",
        start_dim=1,
        max_dim=1210,
        results_path=path,
        **TINY,
    )
    assert search_helpers.CALLS["model_fn"] == (
        len(resumed.runs) - len(finished) + CHECK_BUILDS
    )
    for old, new in zip(finished, resumed.runs):
        assert (old["dim"], old["metric"], old["seconds"]) == (
            new.dim,
            new.metric,
            new.seconds,
        )
    fresh = search(tiny_fc, train, val, dims="auto", start_dim=1, max_dim=1210, **TINY)
    assert resumed.d_int == fresh.d_int is not None
    assert [r.dim for r in resumed.runs] == [r.dim for r in fresh.runs]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fraction": 1.5}, r"Received: `fraction=1.5`"),
        ({"dims": "grid"}, r"Received: `dims='grid'`"),
        ({"dims": [10, 0]}, r"Received: `dims=\[10, 0\]`"),
        ({"seeds": (1, 1)}, r"Received: `seeds=\(1, 1\)`"),
        ({"baseline": -1.0}, r"Received: `baseline=-1.0`"),
        ({"epochs": 0}, r"Received: `epochs=0`"),
        ({"projection": "svd"}, r"Received: `projection='svd'`"),
        ({"tolerance": 0}, r"Received: `tolerance=0`"),
        ({"optimizer": 3}, r"Received: `optimizer=3`"),
        ({"learning_rate": -0.1}, r"Received: `learning_rate=-0.1`"),
    ],
)
def test_bad_arguments(kwargs, match):
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=match):
        search(tiny_fc, train, val, **kwargs)


def test_bad_model_fn_and_data():
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=r"Received: `model_fn=3`"):
        search(3, train, val)
    with pytest.raises(ValueError, match=r"`train_data`"):
        search(tiny_fc, "train.csv", val)


# -- any Keras task: metrics, direction, thresholds, callbacks, data --


def test_regression_search_minimises_val_mae(tmp_path):
    train, val = diabetes_arrays()
    result = search(
        tiny_regressor,
        train,
        val,
        loss="mse",
        metrics=["mae"],
        monitor="val_mae",  # mode "auto": Keras registers MAE as "down"
        dims=[1, 4, 193],
        fraction=0.9,
        epochs=20,
        batch_size=32,
        learning_rate=0.05,
        baseline_learning_rate=0.01,
        verbose=0,
        results_path=tmp_path / "r.json",
    )
    assert result.mode == "min"
    (base,) = result.baseline_runs
    assert base.metric == min(base.history)  # the best value is the lowest
    assert result.threshold == pytest.approx(base.metric / 0.9)
    for run in result.runs:
        assert run.metric == min(run.history)
        passed = run.metric <= result.threshold
        assert result.dim_scores()[run.dim]["passed"] == passed
    assert result.d_int == min(
        r.dim for r in result.runs if r.metric <= result.threshold
    )
    assert "<=" in result.verdict() and "/ 0.9" in result.verdict()
    assert "lower is better" in result.summary()
    rows = result.to_csv().splitlines()
    assert rows[0].endswith(",monitor,mode,passes_when")
    assert rows[1].endswith(f",val_mae,min,<= {result.threshold:.6g}")
    again = SearchResult.from_json(tmp_path / "r.json")
    assert again.mode == "min" and again.d_int == result.d_int
    png = Path(result.plot(tmp_path / "curve.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_binary_search_scored_by_f1():
    train, val = zero_or_not_arrays()
    f1 = keras.metrics.F1Score(average="micro", threshold=0.5)
    result = search(
        tiny_binary,
        train,
        val,
        loss="binary_crossentropy",
        metrics=[f1],  # one object, copied for each run
        monitor="val_f1_score",
        dims=[1, 529],
        fraction=0.9,
        epochs=5,
        batch_size=64,
        learning_rate=0.05,
        baseline_learning_rate=0.01,
        verbose=0,
    )
    assert result.mode == "max"
    assert result.config["metrics"][0]["class_name"] == "F1Score"
    assert result.runs[0].metric < result.threshold  # d = 1 cannot
    assert result.d_int == 529
    assert not f1.variables  # the user's object was never compiled itself


def test_absolute_threshold_trains_no_baseline():
    train, val = digits_arrays()
    kwargs = {k: v for k, v in TINY.items() if k not in ("baseline", "fraction")}
    search_helpers.CALLS["model_fn"] = 0
    result = search(tiny_fc, train, val, dims=[2, 300], threshold=0.5, **kwargs)
    assert result.baseline == (0.5, "absolute") and result.threshold == 0.5
    assert result.baseline_runs == []
    assert search_helpers.CALLS["model_fn"] == 2 + CHECK_BUILDS  # no baseline
    assert result.d_int == 300 and result.name == "d_int"
    assert "threshold val_accuracy >= 0.5000 = absolute" in result.verdict()


class Recorder(keras.callbacks.Callback):
    def __init__(self, log, tag):
        super().__init__()
        self.log, self.tag = log, tag

    def on_train_begin(self, logs=None):
        self.log.append(self.tag)


def test_callbacks_reach_every_run_baseline_included(tmp_path):
    train, val = digits_arrays()
    kwargs = dict(TINY, baseline=None, seeds=(0, 1), epochs=1)
    log = []
    search(tiny_fc, train, val, dims=[300], callbacks=[Recorder(log, "x")], **kwargs)
    assert log == ["x"] * 4  # 2 baseline runs, 2 runs of d = 300
    calls = []

    def per_run(dim, seed):
        calls.append((dim, seed))
        return [Recorder(log, (dim, seed))]

    log.clear()
    result = search(tiny_fc, train, val, dims=[300], callbacks=per_run, **kwargs)
    assert calls == [(None, 0), (None, 1), (300, 0), (300, 1)] == log
    assert result.config["callbacks"].endswith("per_run")


def test_tensorboard_logs_each_run_in_its_own_folder(tmp_path):
    train, val = digits_arrays()
    logs = tmp_path / "tb"
    search(
        tiny_fc,
        train,
        val,
        dims=[300],
        tensorboard=logs,
        **dict(TINY, baseline=None, epochs=1),
    )
    assert sorted(p.name for p in logs.iterdir()) == ["baseline-seed0", "d000300-seed0"]
    for run in logs.iterdir():
        events = list(run.rglob("events.out.tfevents.*"))
        assert events and all(e.stat().st_size > 0 for e in events)


def test_data_given_as_functions_are_built_inside_each_run():
    import tensorflow as tf

    (x, y), (xv, yv) = digits_arrays()
    built = []

    def train_fn():
        built.append("train")
        return (
            tf.data.Dataset.from_tensor_slices((x, y)).shuffle(2000, seed=0).batch(64)
        )

    def val_fn():
        built.append("val")
        return tf.data.Dataset.from_tensor_slices((xv, yv)).batch(64)

    result = search(tiny_fc, train_fn, val_fn, dims=[2, 300], **TINY)
    assert built == ["train", "val"] * 2  # once per run, nothing up front
    assert result.d_int == 300
    assert result.config["train_data"] == {
        "built_by": f"{__name__}.{train_fn.__qualname__}"
    }


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "up"}, r"`mode` should be one of 'auto', 'max', 'min'.*`mode='up'`"),
        ({"monitor": "val_foo"}, r"`mode='auto'` cannot tell.*`monitor='val_foo'`"),
        ({"monitor": ""}, r"Received: `monitor=''`"),
        ({"metrics": 3}, r"Received: `metrics=3`"),
        ({"metrics": ["mae", 3]}, r"Received: `metrics=\['mae', 3\]`"),
        ({"threshold": float("nan")}, r"Received: `threshold=nan`"),
        ({"threshold": 0.5}, r"`threshold` or `baseline`, not both"),
        ({"callbacks": [3]}, r"Received: `callbacks=\[3\]`"),
        ({"tensorboard": 3}, r"Received: `tensorboard=3`"),
        ({"seeds": [2**32]}, r"Received: `seeds=\[4294967296\]`"),
    ],
)
def test_bad_task_arguments(kwargs, match):
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=match):
        search(tiny_fc, train, val, **{**TINY, **kwargs})


def test_mode_auto_follows_keras():
    from keras_idim.dimsearch.metric_checks import resolve_mode

    assert resolve_mode("auto", "val_loss", []) == "min"
    assert resolve_mode("auto", "loss", ["accuracy"]) == "min"
    assert resolve_mode("auto", "val_accuracy", ["accuracy"]) == "max"
    assert resolve_mode("auto", "val_acc", ["acc"]) == "max"
    assert resolve_mode("auto", "val_mae", ["mae"]) == "min"
    # Named: Keras numbers a second unnamed AUC in a process "auc_1".
    assert resolve_mode("auto", "val_auc", [keras.metrics.AUC(name="auc")]) == "max"
    assert resolve_mode("auto", "val_mse", ["mse"]) == "min"
    assert resolve_mode("max", "val_mae", ["mae"]) == "max"  # the user decides
    with pytest.raises(ValueError, match="cannot tell"):
        resolve_mode("auto", "val_mae", ["accuracy"])  # not compiled


def test_tensorboard_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    train, val = digits_arrays()
    with pytest.raises(ImportError, match=r'pip install "keras-idim\[tensorboard\]"'):
        search(tiny_fc, train, val, tensorboard="tb", **TINY)


# -- five more misuses, found while probing (each failed late or unclearly) --


def test_results_path_that_is_a_folder_or_unwritable_is_refused_first(tmp_path):
    # Before: a raw IsADirectoryError; an unwritable folder failed after the
    # first run had trained, losing it.
    train, val = digits_arrays()
    with pytest.raises(ValueError, match=r"`results_path` .* is a folder, not a file"):
        search(tiny_fc, train, val, dims=[300], results_path=tmp_path, **TINY)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not os.access(locked, os.W_OK):  # root ignores permissions
        with pytest.raises(ValueError, match="cannot be written"):
            search(
                tiny_fc, train, val, dims=[300], results_path=locked / "r.json", **TINY
            )


def test_tensorboard_that_is_a_file_and_callbacks_as_a_class_are_refused_first(
    tmp_path,
):
    # Before: both failed inside the first run, after building the model.
    train, val = digits_arrays()
    taken = tmp_path / "file"
    taken.write_text("x")
    search_helpers.CALLS["model_fn"] = 0
    with pytest.raises(ValueError, match=r"`tensorboard` .* is a file, not a folder"):
        search(tiny_fc, train, val, dims=[300], tensorboard=taken, **TINY)
    with pytest.raises(ValueError, match=r"this is a class.*EarlyStopping"):
        search(
            tiny_fc,
            train,
            val,
            dims=[300],
            callbacks=keras.callbacks.EarlyStopping,
            **TINY,
        )
    assert search_helpers.CALLS["model_fn"] == 0  # nothing was built
