"""The ``graphc`` command line.

``graphc compile model.py --shape data=100,1,28,28`` loads a model file (a module that
defines ``get_symbol()`` or a Symbol named ``net`` or ``symbol``) or a saved ``.json``
graph, infers every shape, builds the gradient graph and prints what it found.
"""

from __future__ import annotations

import argparse
import math
import runpy
import sys

import graphc as gc
from graphc.ir.gradcheck import non_differentiable_arguments
from graphc.passes.dump import pass_dumper


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
    return 0


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
