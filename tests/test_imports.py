"""What each entry point loads: checked by module, in a fresh interpreter."""

import json
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "tensorflow_datasets", "ray", "matplotlib")

_PROBE = """
import json, sys
{code}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))))
"""


def loaded(code: str) -> set:
    """The heavy top-level packages that `code` leaves imported."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(code=code, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def cli(argv: list) -> str:
    return (
        "from keras_idim import cli\n"
        "try:\n"
        f"    cli.main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
    )


def test_import_keras_idim_loads_nothing_heavy():
    assert loaded("import keras_idim; keras_idim.__version__") == set()


def test_strategy_imports_without_tensorflow():
    code = (
        "from keras_idim.dimsearch import strategy, records\n"
        "assert strategy.auto_next_dim({}, start=10, max_dim=100) == 10"
    )
    assert loaded(code) == set()


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["search", "--help"],
        ["train", "--help"],
        ["bench", "--help"],
        ["compare", "--help"],
        ["search", "--method", "qlora"],
        ["search", "--dims", "ten"],
        ["search", "--model", "resnet"],
        ["search", "--dataset", "mnist"],
        ["search", "--mode", "up"],
        ["frobnicate"],
    ],
)
def test_cli_help_and_usage_errors_answer_before_tensorflow(argv):
    assert loaded(cli(argv)) == set()


def test_search_loads_nothing_beyond_keras_itself():
    got = loaded("import keras_idim; keras_idim.search; keras_idim.SubspaceModel")
    assert "tensorflow" in got  # the search itself needs it
    assert not got & {"tensorflow_datasets", "ray"}
    # Keras 3 imports matplotlib itself (keras.src.visualization): nothing
    # heavy beyond what `import keras` loads.
    assert got <= loaded("import keras, tensorflow")


def test_cli_lists_match_the_library():
    from keras_idim import cli, models

    for name in cli.MODELS:
        assert callable(models.get(name))
    from keras_idim import data

    for name in cli.EMBEDDED_DATASETS:
        assert data.load(name, arrays=True)[2].name == name


def test_cli_space_kinds_match_the_library():
    from keras_idim import spaces
    from keras_idim.cli.options import SPACE_KINDS

    kinds = spaces.kinds()
    assert {kind: space.ranked for kind, space in kinds.items()} == SPACE_KINDS
    from argparse import ArgumentTypeError

    from keras_idim.cli.options import _space_spec

    assert _space_spec(" Weights ") == "weights" and _space_spec("lora:04") == "lora:4"
    for bad in ("weights:2", "lora", "lora:0", "bias"):
        with pytest.raises(ArgumentTypeError, match="should be 'weights' or"):
            _space_spec(bad)
