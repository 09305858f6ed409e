"""An IR checker to run after each pass (in tests): arity, acyclicity, outputs, shapes, dtypes.

``ir_checker(shapes)`` has the signature of ``optimize``'s ``dump`` hook, so
``gc.optimize(sym, dump=ir_checker(shapes))`` checks the graph after every pass.
"""

from __future__ import annotations

from collections.abc import Mapping

from graphc.ir.errors import GraphFormatError
from graphc.ir.graph import Graph
from graphc.ir.infer import infer_dtypes, infer_shapes
from graphc.ir.registry import get_op
from graphc.ir.symbol import Symbol
from graphc.passes.rewrite import num_outputs


def check_ir(
    pass_name: str, before: Symbol, after: Symbol, shapes: Mapping[str, tuple] | None = None
) -> None:
    """Raise GraphFormatError, naming the pass, if ``after`` is not a well-formed graph with
    the outputs of ``before``: the same number of outputs, every node with its op's number of
    inputs, no cycle, every referenced output index present, and (when input shapes are
    given) the same output shapes and dtypes.

    >>> import graphc as gc
    >>> x = gc.Variable("x")
    >>> check_ir("none", gc.exp(x), gc.exp(x), {"x": (2,)})
    """
    where = f"after pass {pass_name}"
    if len(after.entries) != len(before.entries):
        raise GraphFormatError(
            f"{where}: {len(after.entries)} outputs, the graph had {len(before.entries)}"
        )
    graph = Graph(after.entries)  # raises GraphFormatError on a cycle
    for node in graph.nodes:
        for entry in node.inputs:
            if entry.index >= num_outputs(entry.node):
                raise GraphFormatError(
                    f"{where}: {node.name} ({node.op}) reads output {entry.index} of"
                    f" {entry.node.name}, which has {num_outputs(entry.node)}"
                )
        if node.is_variable:
            continue
        expected = len(get_op(node.op).input_names(node.attrs))
        if len(node.inputs) != expected:
            raise GraphFormatError(
                f"{where}: {node.name} ({node.op}) has {len(node.inputs)} inputs, not {expected}"
            )
    if shapes is not None:
        _check_same_outputs(where, before, after, shapes)


def _check_same_outputs(where: str, before: Symbol, after: Symbol, shapes) -> None:
    for what, infer in (("shapes", _output_shapes), ("dtypes", _output_dtypes)):
        old, new = infer(before, shapes), infer(after, shapes)
        if old != new:
            raise GraphFormatError(f"{where}: output {what} changed from {old} to {new}")


def _given(symbol: Symbol, shapes: Mapping[str, tuple]) -> dict:
    present = set(symbol.list_inputs())
    return {name: shape for name, shape in shapes.items() if name in present}


def _output_shapes(symbol: Symbol, shapes) -> list:
    inferred = infer_shapes(symbol.graph, _given(symbol, shapes), partial=True)
    return [inferred[entry] for entry in symbol.entries]


def _output_dtypes(symbol: Symbol, shapes) -> list:
    inferred = infer_dtypes(symbol.graph, {})
    return [inferred[entry] for entry in symbol.entries]


def ir_checker(shapes: Mapping[str, tuple] | None = None):
    """A ``dump(pass_name, before, after)`` hook that runs ``check_ir`` after each pass."""

    def check(pass_name: str, before: Symbol, after: Symbol) -> None:
        check_ir(pass_name, before, after, shapes)

    return check
