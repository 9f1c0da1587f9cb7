"""The package's shape, as issue 20 set it: modules of at most 400 lines,
functions of at most 100 code lines (docstrings, comments and blank lines
excluded), the search method as a type (at most 2 comparisons with "lora"),
and Keras' private API only in `keras_idim/_compat.py`."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_idim"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES = 400
MAX_FUNCTION_CODE_LINES = 100

LORA_COMPARISON = re.compile(r"""[!=]=\s*["']lora["']|["']lora["']\s*[!=]=""")
PRIVATE_KERAS = re.compile(
    r"keras\.src\b|\._loss_tracker\b|\._trainable_variables\b"
    r"|\._flatten_layers\b|\._direction\b|\._subparsers\b"
)


def code_lines(function: ast.AST, lines: list[str]) -> int:
    """Lines of `function` that hold code: not its docstring, a comment or
    a blank line."""
    skip = set()
    body = function.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        skip = set(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(
        1
        for number in range(function.lineno, function.end_lineno + 1)
        if number not in skip
        and lines[number - 1].strip()
        and not lines[number - 1].strip().startswith("#")
    )


def test_code_lines_counts_code_only():
    source = (
        'def f(x):\n    """Doc.\n\n    More."""\n'
        "    # note\n\n    y = x\n    return y\n"
    )
    function = ast.parse(source).body[0]
    assert code_lines(function, source.splitlines()) == 3


def test_the_package_has_modules():
    assert len(MODULES) > 50


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_size(module):
    source = module.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    lines = source.splitlines()
    long = [
        (node.name, code_lines(node, lines))
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and code_lines(node, lines) > MAX_FUNCTION_CODE_LINES
    ]
    assert not long


def test_the_method_is_a_type():
    comparisons = [
        f"{module.relative_to(PACKAGE)}:{number}"
        for module in MODULES
        for number, line in enumerate(module.read_text().splitlines(), 1)
        if LORA_COMPARISON.search(line)
    ]
    assert len(comparisons) <= 2, comparisons


def test_private_keras_api_only_in_compat():
    uses = [
        f"{module.relative_to(PACKAGE)}:{number}"
        for module in MODULES
        if module.name != "_compat.py"
        for number, line in enumerate(module.read_text().splitlines(), 1)
        if PRIVATE_KERAS.search(line)
    ]
    assert not uses
    compat = (PACKAGE / "_compat.py").read_text()
    assert PRIVATE_KERAS.search(compat)  # the pattern finds what it looks for
