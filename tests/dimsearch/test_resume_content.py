"""Resume by content: a results file resumes only the same model and data
(issue 19, item 1); everything else is refused before any training."""

import functools
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from search_helpers import TINY, digits_arrays, must_not_run, tiny_fc

from keras_idim import search
from keras_idim.dimsearch import InProcessRunner, SearchFileError
from keras_idim.dimsearch.runner import train_run

FIXTURES = Path(__file__).resolve().parent / "fixtures"
NEVER = dict(runner=InProcessRunner(must_not_run))


def counting_runner(trained):
    def run(recipe, dim, seed, threshold):
        trained.append((dim, seed))
        return train_run(recipe, dim, seed, threshold)

    return InProcessRunner(run)


def first_search(path, model_fn=tiny_fc, train=None, val=None):
    default_train, default_val = digits_arrays()
    return search(
        model_fn,
        default_train if train is None else train,
        default_val if val is None else val,
        dims=[5],
        results_path=path,
        **TINY,
    )


def fc_with_init(init_seed: int) -> keras.Model:
    """tiny_fc's architecture, its weights drawn from its own seed."""
    model = tiny_fc()
    rng = np.random.default_rng(init_seed)
    model.set_weights(
        [rng.normal(0, 0.1, w.shape).astype("float32") for w in model.get_weights()]
    )
    return model


def fc(width: int) -> keras.Model:
    """64-width-10: D = 1,210 for width 16, 1,510 for 20."""
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def fc20() -> keras.Model:
    return fc(20)


def digits_dataset(split: str, batch_size: int = 64) -> tf.data.Dataset:
    """The digits as a batched dataset: "train", "val", or "train-head" (the
    first half of the training split)."""
    (x_train, y_train), (x_val, y_val) = digits_arrays()
    x, y = {
        "train": (x_train, y_train),
        "val": (x_val, y_val),
        "train-head": (x_train[: len(x_train) // 2], y_train[: len(y_train) // 2]),
    }[split]
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def test_the_same_problem_resumes_without_training(tmp_path, capsys):
    path = tmp_path / "r.json"
    first = first_search(path)
    stored = json.loads(path.read_text())["fingerprints"]
    assert stored["model"]["D"] == 1210 and stored["seed"] == 0
    train, val = digits_arrays()
    again = search(
        tiny_fc,
        train,
        val,
        dims=[5],
        results_path=path,
        **{**TINY, "verbose": 1},
        **NEVER,
    )
    assert again.d_int == first.d_int and again.runs == first.runs
    assert "could not be checked" not in capsys.readouterr().out


def test_changed_data_split_is_refused_naming_the_training_data(tmp_path):
    path = tmp_path / "r.json"
    first_search(path)
    before = path.read_text()
    (x, y), val = digits_arrays()
    with pytest.raises(
        SearchFileError,
        match=r"differing in: train_data\)\. The training data differ \(.*sha256",
    ):
        search(
            tiny_fc,
            (x[:1000], y[:1000]),
            val,
            dims=[5],
            results_path=path,
            **TINY,
            **NEVER,
        )
    assert path.read_text() == before


def test_changed_model_is_refused_naming_d(tmp_path):
    # As in issue 19: model_fn described by the same name (a partial).
    path = tmp_path / "r.json"
    first_search(path, model_fn=functools.partial(fc, 16))
    train, val = digits_arrays()
    wide = functools.partial(fc, 20)
    with pytest.raises(
        SearchFileError,
        match=r"r\.json was written by a search of another problem: the model "
        r"differs: D = 1,510 here, 1,210 in the file.*overwrite=True",
    ):
        search(wide, train, val, dims=[5], results_path=path, **TINY, **NEVER)
    # Named otherwise too: the configuration's error says what D is.
    with pytest.raises(
        SearchFileError,
        match=r"differing in: model_fn\)\. The model differs: D = 1,510 here, "
        r"1,210 in the file",
    ):
        search(fc20, train, val, dims=[5], results_path=path, **TINY, **NEVER)


def test_changed_theta_0_is_refused(tmp_path):
    path = tmp_path / "r.json"
    first_search(path, model_fn=functools.partial(fc_with_init, 1))
    train, val = digits_arrays()
    with pytest.raises(SearchFileError) as refused:
        search(
            functools.partial(fc_with_init, 2),
            train,
            val,
            dims=[5],
            results_path=path,
            **TINY,
            **NEVER,
        )
    message = str(refused.value)
    assert "initial weights theta_0 differ" in message
    assert "seed 0" in message
    assert "D =" not in message and "architecture" not in message


def test_dataset_callable_with_other_content_is_refused(tmp_path):
    path = tmp_path / "r.json"
    val = functools.partial(digits_dataset, "val")
    first_search(path, train=lambda: digits_dataset("train"), val=val)
    with pytest.raises(
        SearchFileError,
        match=r"the training data differ \(SHA-256 of the first batches "
        r"\"[0-9a-f]{12}\.\.\.\" here, \"[0-9a-f]{12}\.\.\.\" in the file\)",
    ):
        search(
            tiny_fc,
            lambda: digits_dataset("train").skip(3),
            val,
            dims=[5],
            results_path=path,
            **TINY,
            **NEVER,
        )
    # The same content from another callable resumes.
    search(
        tiny_fc,
        lambda: digits_dataset("train"),
        val,
        dims=[5],
        results_path=path,
        **TINY,
        **NEVER,
    )


def test_a_dataset_is_fingerprinted_by_its_first_batches(tmp_path):
    path = tmp_path / "r.json"
    _, val = digits_arrays()
    first_search(path, train=digits_dataset("train"), val=val)
    with pytest.raises(SearchFileError, match=r"the training data differ \(SHA-256"):
        search(
            tiny_fc,
            # Same element_spec and cardinality, other content.
            digits_dataset("train").map(lambda x, y: (x / 2, y)),
            val,
            dims=[5],
            results_path=path,
            **TINY,
            **NEVER,
        )


def test_partial_with_other_arguments_is_refused(tmp_path):
    path = tmp_path / "r.json"
    val = functools.partial(digits_dataset, "val")
    first_search(path, train=functools.partial(digits_dataset, "train"), val=val)
    with pytest.raises(
        SearchFileError,
        match=r"the training data differ \(the partial's positional arguments "
        r"\[\"train-head\"\] here, \[\"train\"\] in the file\)",
    ):
        search(
            tiny_fc,
            functools.partial(digits_dataset, "train-head"),
            val,
            dims=[5],
            results_path=path,
            **TINY,
            **NEVER,
        )
    with pytest.raises(SearchFileError, match=r"keyword arguments.*batch_size"):
        search(
            tiny_fc,
            functools.partial(digits_dataset, "train", batch_size=32),
            val,
            dims=[5],
            results_path=path,
            **TINY,
            **NEVER,
        )


def test_overwrite_starts_over_and_keeps_the_old_file(tmp_path, capsys):
    path = tmp_path / "r.json"
    first_search(path)
    old = path.read_text()
    train, val = digits_arrays()
    trained = []
    result = search(
        functools.partial(fc, 20),
        train,
        val,
        dims=[5],
        results_path=path,
        overwrite=True,
        runner=counting_runner(trained),
        **{**TINY, "verbose": 1},
    )
    assert trained == [(5, 0)]  # started over: the run trained again
    assert (tmp_path / "r.json.bak").read_text() == old
    assert json.loads(path.read_text())["fingerprints"]["model"]["D"] == 1510
    assert result.fingerprints["model"]["D"] == 1510
    assert "kept as" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"`overwrite`.*Received: `overwrite='yes'`"):
        search(
            functools.partial(fc, 20),
            train,
            val,
            results_path=path,
            overwrite="yes",
            **TINY,
        )


def test_an_old_file_resumes_with_one_line_saying_it_was_not_checked(tmp_path, capsys):
    path = tmp_path / "results.json"
    shutil.copy(FIXTURES / "results_v1_complete.json", path)
    assert "fingerprints" not in json.loads(path.read_text())
    train, val = digits_arrays()
    result = search(
        tiny_fc,
        train,
        val,
        results_path=path,
        dims=[2, 400],
        fraction=0.5,
        epochs=2,
        batch_size=64,
        learning_rate=0.05,
        baseline_learning_rate=0.01,
        seeds=(0, 1),
        verbose=1,
        **NEVER,
    )
    assert result.d_int == 400
    lines = [line for line in capsys.readouterr().out.splitlines() if "checked" in line]
    assert len(lines) == 1
    assert "could not be checked against this model and data" in lines[0]
    # Resumed, it now holds this search's fingerprints.
    assert json.loads(path.read_text())["fingerprints"]["model"]["D"] == 1210


def test_a_dataset_reshuffled_each_iteration_still_resumes(tmp_path):
    path = tmp_path / "r.json"
    _, val = digits_arrays()
    train = digits_dataset("train").unbatch().shuffle(2000).batch(64)
    first_search(path, train=train, val=val)
    stored = json.loads(path.read_text())["fingerprints"]["train_data"]
    assert stored["first_batches_sha256"] is None  # two reads differ
    search(tiny_fc, train, val, dims=[5], results_path=path, **TINY, **NEVER)


def local_glue(task, split, *, batch_size, sequence_length, data_dir, shuffle):
    """A stand-in for said_glue's `glue_dataset`: the digits, whatever the
    task, sequence length and folder (the search sees only the partial)."""
    return digits_dataset("train" if split.startswith("train") else "val")


def glue_like(train_split="train", sequence_length=128, data_dir=None):
    """The data as examples/said_glue.py builds them: partials of partials."""
    data = functools.partial(
        local_glue,
        "mrpc",
        batch_size=32,
        sequence_length=sequence_length,
        data_dir=data_dir,
    )
    return (
        functools.partial(data, train_split, shuffle=True),
        functools.partial(data, "validation", shuffle=False),
    )


@pytest.mark.parametrize(
    "change, match",
    [
        ({"train_split": "train[:10%]"}, r"positional arguments .*train\[:10%\]"),
        ({"sequence_length": 64}, r"keyword arguments .*\"sequence_length\": 64"),
        ({"data_dir": "/elsewhere"}, r"training data differ .*/elsewhere.*"),
    ],
)
def test_said_glue_data_with_other_arguments_are_refused(tmp_path, change, match):
    path = tmp_path / "results.json"
    train, val = glue_like()
    first_search(path, train=train, val=val)
    search(tiny_fc, *glue_like(), dims=[5], results_path=path, **TINY, **NEVER)
    with pytest.raises(SearchFileError, match=match):
        search(
            tiny_fc,
            *glue_like(**change),
            dims=[5],
            results_path=path,
            **TINY,
            **NEVER,
        )


def test_the_model_fingerprint_ignores_the_names_keras_numbers():
    from keras_idim.dimsearch.fingerprint import model_fingerprint

    def build():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4, 8))
        hidden = keras.layers.Dropout(0.1)(keras.layers.Dense(8)(inputs))
        # Its config has a key "dropout", the first Dropout layer's name.
        attended = keras.layers.MultiHeadAttention(2, 4, dropout=0.1)(hidden, hidden)
        return keras.Model(inputs, keras.layers.Dense(10)(attended))

    keras.backend.clear_session()  # the first Dropout is named "dropout"
    first = build()
    second = build()  # "dropout_1", "dense_2", ...
    assert first.layers[2].name == "dropout" != second.layers[2].name
    assert model_fingerprint(first) == model_fingerprint(second)
