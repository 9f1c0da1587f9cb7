"""Every code block of README.md and docs/ runs, shrunk (see docs_blocks.py).

A block marked `<!-- skip: REASON -->` is reported as skipped with its
reason. The other tests here keep the docs honest without running anything:
the block convention, README.md's length and links, a flag table that names
every flag, an API reference that names every public name.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
from pathlib import Path

import pytest
from docs_blocks import (
    EXECUTED,
    FAST,
    NOT_EXECUTED,
    PAGES,
    ROOT,
    SKIP,
    Block,
    find,
    install_fast,
    write_cli,
)

BLOCKS = {page: find(page) for page in PAGES}
RUNNABLE = [b for page in PAGES for b in BLOCKS[page] if b.lang in EXECUTED]


@dataclasses.dataclass
class Page:
    """What the blocks of one page share: a folder and a namespace."""

    folder: Path
    namespace: dict
    done: int = 0  # how many of the page's runnable blocks have run
    failed: str | None = None  # the block that failed


@pytest.fixture(scope="session")
def cli_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bin")
    write_cli(folder)
    return folder


@pytest.fixture(scope="session")
def pages(tmp_path_factory) -> dict:
    states: dict[str, Page] = {}

    def get(page: str) -> Page:
        if page not in states:
            folder = tmp_path_factory.mktemp(re.sub(r"\W", "_", page))
            states[page] = Page(folder, {"__name__": "__docs__"})
        return states[page]

    return get


def _run_python(block: Block, page: Page) -> None:
    exec(compile(block.code, str(block), "exec"), page.namespace)


def _run_bash(block: Block, page: Page, cli_folder: Path) -> None:
    env = dict(
        os.environ,
        PATH=f"{cli_folder}{os.pathsep}{os.environ.get('PATH', '')}",
        # This tree's keras_idim, whichever one is installed.
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        TF_CPP_MIN_LOG_LEVEL="3",
        MPLBACKEND="Agg",
    )
    proc = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block.code],
        cwd=page.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(proc.stdout)
    assert proc.returncode == 0, (
        f"{block} exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n"
        f"{proc.stderr[-3000:]}"
    )


@pytest.mark.parametrize("block", RUNNABLE, ids=str)
def test_block_runs(block, pages, cli_folder, monkeypatch):
    if block.skip:
        pytest.skip(f"{block}: {block.skip}")
    page = pages(block.page)
    if page.failed:
        pytest.skip(f"an earlier block of the page failed: {page.failed}")
    if FAST:
        install_fast(monkeypatch.setattr)
    monkeypatch.chdir(page.folder)
    runnable = [b for b in RUNNABLE if b.page == block.page and not b.skip]
    # Earlier blocks that were deselected run first: this one may need them.
    for earlier in runnable[page.done : runnable.index(block) + 1]:
        try:
            if earlier.lang == "python":
                _run_python(earlier, page)
            else:
                _run_bash(earlier, page, cli_folder)
        except BaseException:
            page.failed = str(earlier)
            raise
    page.done = runnable.index(block) + 1


def test_the_convention_is_kept():
    """Every block is tagged with a known language, and every skip marker
    names its reason and stands right before a block."""
    for page in PAGES:
        for block in BLOCKS[page]:
            assert block.lang in EXECUTED + NOT_EXECUTED, (
                f"{block}: a block tagged {block.lang!r}; tag it "
                f"{' or '.join(EXECUTED + NOT_EXECUTED)}"
            )
            if block.skip is not None:
                assert block.skip, f"{block}: a skip marker without its reason"
                assert block.lang in EXECUTED, f"{block}: skips a block never run"
        lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
        fences = {b.line for b in BLOCKS[page]}
        for number, line in enumerate(lines, start=1):
            if "<!-- skip" in line:
                assert SKIP.match(line), f"{page}:{number}: write <!-- skip: REASON -->"
                assert number + 1 in fences, f"{page}:{number}: no block right after it"


def test_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if not re.match(r"[a-z]+://", link):
            assert (ROOT / link.split("#")[0]).exists(), link


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of `parser` and of its sub-commands."""
    found = set()
    for action in parser._actions:
        found.update(o for o in action.option_strings if o not in ("-h", "--help"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _flags(sub)
    return found


def test_the_command_line_guide_names_every_flag(capsys):
    from keras_idim import bench
    from keras_idim.cli import build_parser

    with pytest.raises(SystemExit):
        bench.main(["--help"])
    flags = _flags(build_parser()) | set(
        re.findall(r"--[a-z][a-z-]+", capsys.readouterr().out)
    )
    guide = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = sorted(f for f in flags if f"`{f}" not in guide)
    assert not missing, f"docs/cli.md does not name: {missing}"


def test_the_api_reference_names_every_public_name():
    import keras_idim

    reference = "".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "api").glob("*.md")
    )
    targets = re.findall(r"^::: ([\w.]+)", reference, flags=re.M)
    for name, (module, attribute) in keras_idim._EXPORTS.items():
        wanted = module if attribute is None else f"{module}.{attribute}"
        assert any(t == wanted or t.startswith(wanted + ".") for t in targets) or (
            attribute is not None and module in targets
        ), f"keras_idim.{name} ({wanted}) is not in docs/api/"


def test_the_cli_that_blocks_run_is_this_trees(cli_folder):
    """The `keras-idim` of the shell blocks runs this tree's code."""
    proc = subprocess.run(
        [str(cli_folder / "keras-idim"), "--version"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=120,
    )
    from keras_idim import __version__

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"keras-idim {__version__}"
