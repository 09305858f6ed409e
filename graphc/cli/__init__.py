"""The ``graphc`` command line: ``compile``, ``train``, ``evaluate``, ``cache`` and ``bench``.

Errors in what the user gave (a model file that raises or defines no model, a shape
error, a missing file) exit with status 1 and graphc's message naming the node and the
user's file:line, without a Python traceback unless ``--traceback``; bad usage exits
with status 2 and the usage line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import graphc as gc
from graphc.cli import bench_command, cache_command, compile_command, train_command
from graphc.cli.model_files import ModelFileError, load_model_file


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)  # options every command takes
    common.add_argument(
        "--traceback", action="store_true", help="show the Python traceback of an error"
    )
    parser = argparse.ArgumentParser(
        prog="graphc",
        description="graphc: compile, train, evaluate and inspect models; benchmark them",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    compile_command.add_parser(commands, common)
    train_command.add_parsers(commands, common)
    cache_command.add_parser(commands, common)
    bench_command.add_parser(commands, common)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `train --np` runs it again
    try:
        return args.run(args)
    # What the user gave can be wrong: graphc's checks (shapes, files, attributes), a
    # file that cannot be read or written, an optional library that is missing.
    except (gc.GraphcError, ValueError, OSError, ImportError, subprocess.CalledProcessError) as exc:
        if args.traceback:
            raise (getattr(exc, "original", None) or exc) from None
        print(f"graphc: error: {exc}", file=sys.stderr)
        return 1


__all__ = ["ModelFileError", "load_model_file", "main"]
