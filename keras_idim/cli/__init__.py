"""The `keras-idim` command line: search, train, export, compare, doctor,
bench.

`main` parses (answering `--help` and usage errors before TensorFlow
loads), checks what spans two options, runs the sub-command, and turns
its errors into one line and an exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from keras_idim import _compat
from keras_idim.cli.commands import (
    _export_path,
    run_compare,
    run_doctor,
    run_export,
    run_search,
    run_train,
    search_method,
    search_results_path,
    search_start_dim,
)
from keras_idim.cli.options import (
    DEFAULTS,
    EMBEDDED_DATASETS,
    MODELS,
    TASK_DEFAULTS,
    build_parser,
)
from keras_idim.cli.quiet import quiet_start
from keras_idim.utils.io import check_writable

__all__ = [
    "DEFAULTS",
    "EMBEDDED_DATASETS",
    "MODELS",
    "TASK_DEFAULTS",
    "build_parser",
    "main",
    "run_compare",
    "run_doctor",
    "run_export",
    "run_search",
    "run_train",
]


def _join_negative_values(parser: argparse.ArgumentParser, argv: list) -> list:
    """`--dims -5,10` as `--dims=-5,10`: argparse takes a value that starts
    with '-' (and is not a plain negative number) for an option, so that it
    would say "expected one argument" instead of what is wrong with it."""
    options = {
        option
        for command in ("search", "train", "export")
        for a in _compat.parser_actions(_subparser(parser, command))
        if a.nargs is None and a.option_strings
        for option in a.option_strings
    }
    joined: list = []
    for item in argv:
        if (
            joined
            and joined[-1] in options
            and item.startswith("-")
            and item not in options
            and item not in ("-h", "--help")
        ):
            joined[-1] = f"{joined[-1]}={item}"
        else:
            joined.append(item)
    return joined


def _subparser(parser: argparse.ArgumentParser, command: str):
    """The parser of a sub-command (its errors name the sub-command)."""
    return _compat.subcommand_parser(parser, command)


def _check_combinations(parser: argparse.ArgumentParser, args) -> None:
    """Usage errors that span two options, before any work."""
    parser = _subparser(parser, args.command)
    if args.command == "search" and args.said and not search_method(args).has_said:
        parser.error(
            "argument --said: not with --method lora (SAID scales the weight "
            "tensors of a random subspace; LoRA trains its own matrices)"
        )
    if args.command == "search" and args.quiet and args.verbose:
        parser.error("argument -v/--verbose: not with --quiet")
    if args.command == "search" and args.baseline_from is not None:
        for given, flag in (
            (args.baseline, "--baseline"),
            (args.threshold, "--threshold"),
        ):
            if given is not None:
                parser.error(
                    f"argument --baseline-from: not with {flag} (it reuses a "
                    f"local baseline): {flag} {given}"
                )
    if args.command == "search" and None not in (args.threshold, args.baseline):
        parser.error(
            "argument --threshold: not with --baseline (an absolute threshold "
            f"needs no baseline): --threshold {args.threshold} --baseline "
            f"{args.baseline}"
        )
    if args.command in ("train", "export") and args.no_base:
        if args.format != "compact":
            parser.error(
                "argument --no-base: applies to --format compact only "
                f"(received --format {args.format})"
            )
    if args.command == "search" and args.max_dim is not None:
        if args.max_dim < search_start_dim(args):
            parser.error(
                f"argument --max-dim: should be at least --start-dim "
                f"({search_start_dim(args)}): {args.max_dim}"
            )
    try:
        if args.command == "train" and args.export:
            _export_path(args.export, args, "--export")
        if args.command == "train" and args.save:
            check_writable(args.save, "--save", folder=False)
            if os.path.exists(args.save) and not args.overwrite:
                raise FileExistsError(
                    f"`--save` {args.save!r} already exists. Pass --overwrite "
                    "to replace it, or choose another path."
                )
    except ValueError as e:
        parser.error(str(e))
    except OSError as e:  # an existing target: exit 1, as when it is written
        parser.exit(1, f"{parser.prog}: {e}\n")


def _interrupted(args) -> str:
    """One line for Ctrl-C: what was kept, and how to go on."""
    path = search_results_path(args) if args.command == "search" else None
    if path and os.path.exists(path):
        import json

        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
            count = sum(
                len(state.get(k) or [])
                for k in ("baseline_runs", "runs", "speculative_runs")
            )
        except (OSError, ValueError):
            count = "some"
        return (
            f"interrupted: {count} runs saved in {path}; run the same command "
            "to resume\n"
        )
    return f"keras-idim {args.command}: interrupted\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from keras_idim import bench

        return bench.main(argv[1:])
    args = parser.parse_args(_join_negative_values(parser, argv))
    _check_combinations(parser, args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet_start()  # TensorFlow's start-up lines (TF_CPP_MIN_LOG_LEVEL=0 shows)
    command = {
        "search": run_search,
        "train": run_train,
        "export": run_export,
        "compare": run_compare,
        "doctor": run_doctor,
    }[args.command]
    try:
        return command(args)
    except KeyboardInterrupt:
        parser.exit(130, _interrupted(args))
    except (ValueError, ImportError) as e:  # bad input argparse could not see
        parser.exit(2, f"keras-idim {args.command}: error: {e}\n")
    except (RuntimeError, OSError) as e:  # e.g. a download, an existing target
        parser.exit(1, f"keras-idim {args.command}: {e}\n")
