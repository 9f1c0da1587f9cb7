"""The code blocks of README.md and docs/, found and run by tests/test_docs.py.

The convention, for whoever writes the docs:

- A fenced block tagged `python` or `bash` is run by the tests. The blocks
  of one page run in order, in one fresh folder per page: the Python blocks
  share one namespace, so a block may use what an earlier one defined, and
  the shell blocks run with bash (`set -euo pipefail`) in the same folder, so
  a command may read what an earlier block wrote.
- A block tagged `text` (output) or `bibtex` (a citation) is never run.
- `<!-- skip: REASON -->` on the line right before a block skips it, and
  the test report gives the REASON: for what cannot run in a test (a
  download, a cluster, a GPU, the set-up itself).

Under test, training is shrunk (`KERAS_IDIM_DOCS_FAST`, on unless set to
`0`), so that the docs read as a user would run them while the tests stay
short: every `fit` runs one epoch, and every search (`keras_idim.search` in
Python, `keras-idim search` on the command line) runs one epoch, one seed,
`fraction=0.01` of a local baseline (instead of an absolute threshold too),
and tries one d (its `start_dim`) instead of `dims="auto"`. Such a
threshold is below any chance floor, so the shrunk search skips the floor
check (it still computes and prints the floor). So a search trains its
baseline and one subspace run, passes, and writes its files, and the command
exits 0. `KERAS_IDIM_DOCS_FAST=0` runs the blocks as written
(many minutes).

The command line is run through a `keras-idim` on PATH that applies the same
shrinking in its own process (`cli_main`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The pages whose blocks run: README.md and the guides.
PAGES = [
    "README.md",
    *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")),
]
EXECUTED = ("python", "bash")
NOT_EXECUTED = ("text", "bibtex")

FAST = os.environ.get("KERAS_IDIM_DOCS_FAST", "1") != "0"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
SKIP = re.compile(r"^\s*<!--\s*skip:(?P<reason>.*?)-->\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None  # the reason, when the line before says `<!-- skip: ... -->`

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def find(page: str) -> list[Block]:
    """Every fenced block of `page` (a path relative to the repository)."""
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not close.match(lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{i + 1}: a code block that is never closed")
        body = [
            b[len(indent) :] if b.startswith(indent) else b for b in lines[i + 1 : end]
        ]
        skip = SKIP.match(lines[i - 1]) if i > 0 else None
        blocks.append(
            Block(
                page=page,
                line=i + 1,
                lang=match["info"].strip().split(" ")[0],
                code=textwrap.dedent("\n".join(body)) + "\n",
                skip=skip["reason"].strip() if skip else None,
            )
        )
        i = end + 1
    return blocks


# -- shrinking ---------------------------------------------------------------


def one_epoch(fit: Callable) -> Callable:
    """`keras.Model.fit`, at most one epoch."""

    @functools.wraps(fit)
    def shrunk(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) >= 4:  # fit(x, y, batch_size, epochs, ...)
            args = (*args[:3], 1, *args[4:])
        else:
            kwargs["epochs"] = 1
        return fit(self, *args, **kwargs)

    return shrunk


def shrink(kwargs: dict) -> dict:
    """A search's arguments with the shrunk recipe (see the module
    docstring)."""
    kwargs["epochs"] = 1
    kwargs["seeds"] = tuple(kwargs.get("seeds", (0,)))[:1]
    kwargs["threshold"] = None
    kwargs["fraction"] = 0.01
    if isinstance(kwargs.get("dims", "auto"), str):
        lora = kwargs.get("method", "subspace") == "lora"
        kwargs["dims"] = [kwargs.get("start_dim") or (1 if lora else 10)]
    return kwargs


def fast_config(from_arguments: Callable) -> classmethod:
    """`SearchConfig.from_arguments` with the shrunk recipe: every search,
    `keras_idim.search` in Python and `keras-idim search`, builds its
    settings there."""

    @functools.wraps(from_arguments)
    def shrunk(cls: Any, *args: Any, **kwargs: Any) -> Any:
        return from_arguments(cls, *args, **shrink(kwargs))

    return classmethod(shrunk)


def install_fast(patch: Callable[[Any, str, Any], None] = setattr) -> None:
    """Shrinks every `fit` and every search in this process."""
    import keras

    from keras_idim.dimsearch import driver
    from keras_idim.dimsearch.search_config import SearchConfig

    patch(keras.Model, "fit", one_epoch(keras.Model.fit))
    # fraction=0.01 never clears the chance floor: no floor check when shrunk.
    patch(driver, "clears_floor", lambda threshold, floor, mode="max": True)
    patch(
        SearchConfig,
        "from_arguments",
        fast_config(SearchConfig.from_arguments.__func__),
    )


def cli_main(argv: list[str] | None = None) -> int:
    """`keras-idim`, shrunk when `KERAS_IDIM_DOCS_FAST` is on."""
    argv = sys.argv[1:] if argv is None else argv
    asks_help = "-h" in argv or "--help" in argv
    if FAST and argv[:1] in (["search"], ["train"]) and not asks_help:
        install_fast()  # imports TensorFlow: not for --help
    from keras_idim.cli import main

    return main(argv)


def write_cli(folder: Path) -> Path:
    """A `keras-idim` executable in `folder` that runs `cli_main`."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "keras-idim"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from docs_blocks import cli_main\n"
        "sys.exit(cli_main())\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script
