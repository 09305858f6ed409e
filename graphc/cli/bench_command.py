"""``graphc bench``: Knet's table, graphc next to the peers, in one command.

    graphc bench --peer torch=/tmp/peers/torch/bin/python --peer jax=... --repeat 3 \\
        --json bench.json --plot bench.png

Each model's task file (data, initial weights, batch order, settings) is written once and
every system trains from it in a process of its own (``graphc.bench.runner``). A peer whose
interpreter is not given is listed as absent with the command that sets it up.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from graphc.bench import machine, report
from graphc.bench.runner import Row, check_interpreter, cuda_missing, run_system
from graphc.bench.systems import BY_NAME, PEER_NAMES, SYSTEMS
from graphc.bench.tasks import MODELS, write_task


def add_parser(commands, common) -> None:
    parser = commands.add_parser(
        "bench", parents=[common], help="Knet's benchmark table against peer frameworks"
    )
    parser.add_argument(
        "--models", type=_names(MODELS), default=MODELS, help=f"comma-separated: {','.join(MODELS)}"
    )
    parser.add_argument(
        "--systems",
        type=_names(tuple(BY_NAME)),
        default=tuple(BY_NAME),
        help=f"comma-separated: {','.join(BY_NAME)}",
    )
    parser.add_argument(
        "--peer",
        action="append",
        type=_peer,
        default=[],
        metavar="NAME=PYTHON",
        help=f"the interpreter of a peer ({', '.join(PEER_NAMES)}), repeatable",
    )
    parser.add_argument("--repeat", type=_positive, default=3, help="timed runs; the median")
    parser.add_argument(
        "--quick", action="store_true", help="a few steps per model, warm caches: a smoke test"
    )
    parser.add_argument("--json", metavar="FILE", default=None)
    parser.add_argument("--plot", metavar="PNG", default=None, help="needs matplotlib")
    parser.set_defaults(run=run)


def _names(choices: tuple[str, ...]):
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(name for name in text.split(",") if name)
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown) or 'empty list'}; choose from {','.join(choices)}"
            )
        return names

    return parse


def _peer(text: str) -> tuple[str, str]:
    name, _, python = text.partition("=")
    if name not in PEER_NAMES or not python:
        raise argparse.ArgumentTypeError(f"{text!r}: use NAME=PYTHON, NAME one of {PEER_NAMES}")
    return name, python


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    interpreters = {"graphc": sys.executable}
    versions = {}
    for name, python in args.peer:
        system = next(s for s in SYSTEMS if s.interpreter == name)
        versions[name] = check_interpreter(name, python, system.import_name)
        interpreters[name] = python
    systems = [system for system in SYSTEMS if system.name in args.systems]
    no_gpu = cuda_missing() if any(s.mode == "cuda" for s in systems) else None
    by_model: dict[str, list[Row]] = {}
    data: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="graphc-bench-") as workdir:
        for model in (m for m in MODELS if m in args.models):
            task = write_task(model, f"{workdir}/{model}.npz", quick=args.quick)
            data[model] = task.data
            rows = []
            for system in systems:
                print(f"bench: {model}, {system.label}", file=sys.stderr, flush=True)
                missing = _missing(system, model, interpreters, no_gpu)
                if missing is not None:
                    rows.append(Row(model, system, *missing))
                    continue
                python = interpreters[system.interpreter]
                rows.append(run_system(system, task, python, args.repeat, args.quick, workdir))
            by_model[model] = rows
    if args.quick:
        print("Quick: a few steps per model (a smoke test; the figures mean nothing).\n")
    print(report.markdown(by_model, data, args.repeat))
    header = {
        "command": sys.argv,
        "quick": args.quick,
        "repeat": args.repeat,
        "machine": machine.describe(),
        "peers": {
            name: {"python": interpreters[name], "version": v} for name, v in versions.items()
        },
        "data": data,
    }
    if args.json:
        report.write_json(args.json, report.as_json(by_model, header))
        print(f"json:       {args.json}")
    if args.plot:
        report.plot(args.plot, by_model)
        print(f"plot:       {args.plot}")
    failed = [
        f"{row.model} on {row.system.label}"
        for rows in by_model.values()
        for row in rows
        if row.status == "failed"
    ]
    if failed:
        print(f"graphc: error: failed runs: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _missing(system, model: str, interpreters: dict, no_gpu: str | None):
    """(status, reason) when ``system`` does not run ``model`` here, else None."""
    if system.interpreter not in interpreters:
        return "absent", f"no --peer {system.interpreter}=PYTHON; set it up: `{system.setup}`"
    if model not in system.models:
        return "not run", system.not_written
    if system.mode == "cuda" and no_gpu:
        return "absent", no_gpu
    return None
