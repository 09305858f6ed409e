"""The ``graphc`` command line.

``graphc compile model.py --shape data=100,1,28,28`` loads a model file (a module that
defines ``get_symbol()`` or a Symbol named ``net`` or ``symbol``) or a saved ``.json``
graph, infers every shape, builds the gradient graph and prints what it found. With
``--train`` it also compiles everything ``Model.fit`` runs (the step's kernels and the
compiled training loop, by training one batch of zeros) and reports each kernel: compiled,
compiled by a worker process, loaded from the disk cache or already in memory, and the
seconds it took (``GRAPHC_LOG=compile`` prints the same lines from any program).
"""

from __future__ import annotations

import argparse
import math
import runpy
import sys
import time

import numpy as np

import graphc as gc
from graphc.ir.gradcheck import non_differentiable_arguments
from graphc.passes.dump import pass_dumper
from graphc.training.heads import label_names_of, loss_heads


def _parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, _, dims = text.partition("=")
    if not name or not dims:
        raise argparse.ArgumentTypeError(f"expected NAME=D1,D2,..., got {text!r}")
    try:
        return name, tuple(int(dim) for dim in dims.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"dimensions must be integers: {text!r}") from None


def load_model(path: str) -> gc.Symbol:
    """A symbol from a saved JSON graph or from a Python model file."""
    if path.endswith(".json"):
        return gc.load(path)
    namespace = runpy.run_path(path)
    if callable(namespace.get("get_symbol")):
        symbol = namespace["get_symbol"]()
    else:
        symbol = namespace.get("net", namespace.get("symbol"))
    if not isinstance(symbol, gc.Symbol):
        raise SystemExit(f"{path}: define get_symbol() or a Symbol named 'net' or 'symbol'")
    return symbol


def _compile(args: argparse.Namespace) -> int:
    symbol = load_model(args.model)
    shapes = dict(args.shape)
    arg_shapes, out_shapes, _ = symbol.infer_shape(**shapes)
    if "graph" in args.dump:
        print(symbol.debug_str(**shapes))
    if "json" in args.dump:
        print(symbol.tojson())
    data_names = set(shapes) | non_differentiable_arguments(symbol)
    params = [
        (name, shape)
        for name, shape in zip(symbol.list_arguments(), arg_shapes)
        if name not in data_names
    ]
    gradients = gc.grad(symbol, [name for name, _ in params])
    gradient_graph = gc.Group(gradients).graph
    if "grad" in args.dump:
        print(gc.Group(gradients).debug_str(**shapes))
    if "optimized" in args.dump or args.dump_passes:
        training = gc.Group([symbol, *gradients])
        dump = pass_dumper(args.dump_passes, shapes) if args.dump_passes else None
        optimized = gc.optimize(
            training, level=args.opt_level, shapes=shapes, dump=dump, forward_outputs=1
        )
        if "optimized" in args.dump:
            print(optimized.debug_str(**shapes))
    print(f"model:      {args.model}")
    print(f"outputs:    {', '.join(f'{n} {s}' for n, s in zip(symbol.list_outputs(), out_shapes))}")
    print(f"parameters: {len(params)} arrays, {sum(math.prod(s) for _, s in params):,} values")
    print(f"forward:    {len(symbol.graph.nodes)} nodes")
    print(f"gradient:   {len(gradient_graph.nodes)} nodes (forward and backward together)")
    if args.train:
        _compile_training(symbol, shapes, args.opt_level)
    return 0


def _compile_training(symbol: gc.Symbol, shapes: dict, opt_level: int) -> None:
    """Compile what ``Model.fit`` runs for these shapes, by fitting one batch of zeros (the
    labels class 0), and print how every kernel was found."""
    from graphc.codegen_cpu import compile_log

    labels = label_names_of(loss_heads(symbol))
    data_names = [name for name in shapes if name not in labels]
    if not data_names:
        raise ValueError("--train needs the shape of at least one data input (--shape)")
    arg_shapes = dict(zip(symbol.list_arguments(), symbol.infer_shape(**shapes)[0]))
    batch = shapes[data_names[0]][0]
    data = {name: np.zeros(shapes[name], dtype=np.float32) for name in data_names}
    label = {name: np.zeros(arg_shapes[name], dtype=np.float32) for name in labels}
    model = gc.Model(symbol, data_names=data_names, label_names=labels, opt_level=opt_level)
    compile_log.clear()
    start = time.perf_counter()
    model.fit(gc.io.NDArrayIter(data, label, batch_size=batch), num_epoch=1, verbose=False)
    seconds = time.perf_counter() - start
    records = compile_log.records()
    counts = {outcome: 0 for outcome in compile_log.OUTCOMES}
    for record in records:
        counts[record.outcome] += 1
    found = ", ".join(f"{count} {outcome}" for outcome, count in counts.items())
    print(f"training:   {model.fit_path}, one batch of {batch} in {seconds:.2f} s")
    print(f"kernels:    {len(records)} found: {found}")
    print(
        f"compile:    {sum(r.seconds for r in records if r.outcome != compile_log.MEMORY):.2f} s"
        " (compiles by workers overlap this process's)"
    )
    for record in sorted(records, key=lambda r: -r.seconds):
        if record.outcome != compile_log.MEMORY:
            print(f"  {compile_log.describe(record)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphc", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    compile_parser = commands.add_parser(
        "compile", help="load a model, infer shapes, differentiate"
    )
    compile_parser.add_argument("model", help="a .py model file or a saved .json graph")
    compile_parser.add_argument(
        "--shape",
        action="append",
        type=_parse_shape,
        default=[],
        help="an input shape, NAME=D1,D2,... (repeatable)",
    )
    compile_parser.add_argument(
        "--dump",
        action="append",
        default=[],
        choices=["graph", "grad", "json", "optimized"],
        help="print the graph listing, the gradient listing, the JSON, or the training graph"
        " after the passes of --opt-level (fused groups with the nodes they replaced)",
    )
    compile_parser.add_argument("--opt-level", type=int, default=2, choices=[0, 1, 2])
    compile_parser.add_argument(
        "--train",
        action="store_true",
        help="also compile what Model.fit runs (one batch of zeros is trained) and report"
        " every kernel: compiled, by a worker, loaded from the disk cache or in memory, with"
        " its seconds",
    )
    compile_parser.add_argument(
        "--dump-passes",
        metavar="DIR",
        default=None,
        help="write the training graph before and after every pass (text and DOT) into DIR",
    )
    args = parser.parse_args(argv)
    try:
        return _compile(args)
    except (gc.GraphcError, ValueError) as exc:
        print(f"graphc: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
