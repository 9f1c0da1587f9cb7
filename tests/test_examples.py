import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_subspace_example_runs():
    results = load("digits_subspace").main(dim=50, epochs=1, projections=("fastfood",))
    assert set(results) == {"full (D = 55,210)", "fastfood (d = 50)"}
    assert all(0.0 <= a <= 1.0 for a in results.values())
