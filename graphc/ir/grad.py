"""Reverse-mode differentiation as a graph transform: the gradient is another graph.

The walk visits nodes in reverse topological order. At each node it sums the gradients
arriving over fan-out (one ``add_n``), asks the op's gradient rule for a vector-Jacobian
product built from graph nodes, and, for broadcasting ops, reduces each input's gradient
back to that input's shape (``sum_to_like``) so that no rule has to.
"""

from __future__ import annotations

from collections.abc import Sequence

from graphc.ir.errors import GradientError
from graphc.ir.graph import Graph
from graphc.ir.node import Node, NodeOutput
from graphc.ir.registry import GradArgs, get_op
from graphc.ir.symbol import Symbol, apply_op


def grad(
    outputs: Symbol | Sequence[Symbol],
    wrt: Sequence[Symbol | str] | Symbol | str,
    head_grads: Sequence[Symbol | None] | None = None,
) -> list[Symbol]:
    """Symbols for the gradients of ``outputs`` with respect to ``wrt``.

    A loss head (SoftmaxOutput, LinearRegressionOutput, ...) supplies its own head gradient,
    as in MXNet's backward. Any other output receives ``head_grads[i]`` when given, else
    ones (the gradient of the sum of that output).

    >>> import graphc as gc
    >>> x = gc.Variable("x")
    >>> (dx,) = gc.grad(gc.sum(x * x), [x])
    >>> gc.evaluate(dx, {"x": [1.0, 2.0]})[0].tolist()
    [2.0, 4.0]
    """
    heads = _flatten_outputs(outputs)
    graph = Graph(tuple(heads))
    targets = _resolve_wrt(graph, wrt)
    depends = _nodes_depending_on(graph, targets)
    pending: dict[NodeOutput, list[Symbol]] = {}
    _seed_heads(heads, head_grads, pending)

    for node in reversed(graph.nodes):
        if node.is_variable or node not in depends:
            continue
        _backprop_node(node, pending, depends)

    results = []
    for target in targets:
        entry = NodeOutput(target, 0)
        terms = pending.get(entry)
        if terms:
            results.append(_sum_terms(terms))
        else:
            results.append(apply_op("zeros_like", [Symbol([entry])], {}))
    return results


def _flatten_outputs(outputs: Symbol | Sequence[Symbol]) -> list[NodeOutput]:
    if isinstance(outputs, Symbol):
        return list(outputs.entries)
    entries: list[NodeOutput] = []
    for symbol in outputs:
        entries.extend(symbol.entries)
    return entries


def _resolve_wrt(graph: Graph, wrt) -> list[Node]:
    if isinstance(wrt, (Symbol, str)):
        wrt = [wrt]
    targets = []
    for item in wrt:
        if isinstance(item, str):
            targets.append(graph.variable(item))
            continue
        node = item.node
        if not node.is_variable:
            raise GradientError(
                f"grad: wrt must be Variables or their names, not {node.name} ({node.op})"
            )
        targets.append(node)
    return targets


def _nodes_depending_on(graph: Graph, targets: list[Node]) -> set[Node]:
    depends: set[Node] = set(targets)
    for node in graph.nodes:
        if any(entry.node in depends for entry in node.inputs):
            depends.add(node)
    return depends


def _seed_heads(heads: list[NodeOutput], head_grads, pending: dict) -> None:
    if head_grads is not None and len(head_grads) != len(heads):
        raise GradientError(f"grad: {len(head_grads)} head gradients for {len(heads)} outputs")
    for index, entry in enumerate(heads):
        if not entry.node.is_variable and get_op(entry.node.op).is_loss_head:
            continue
        given = None if head_grads is None else head_grads[index]
        if given is None:
            given = apply_op("ones_like", [Symbol([entry])], {})
        pending.setdefault(entry, []).append(given)


def _sum_terms(terms: list[Symbol]) -> Symbol:
    if len(terms) == 1:
        return terms[0]
    return apply_op("add_n", terms, {"num_args": len(terms)})


def _backprop_node(node: Node, pending: dict, depends: set[Node]) -> None:
    opdef = get_op(node.op)
    n_visible = opdef.num_visible_outputs(node.attrs)
    n_all = opdef.num_outputs(node.attrs)
    arriving = [pending.pop(NodeOutput(node, index), None) for index in range(n_visible)]
    if not opdef.is_loss_head and all(terms is None for terms in arriving):
        return
    wants = [entry.node in depends for entry in node.inputs]
    if opdef.grad is None:
        raise GradientError(
            f"{node.name} ({node.op}) at {node.source}: {node.op} has no gradient rule"
            " (it is not differentiable, or its second derivative is not supported)"
        )
    outputs = [Symbol([NodeOutput(node, index)]) for index in range(n_all)]
    out_grads = []
    for index, terms in enumerate(arriving):
        if terms is None:
            out_grads.append(apply_op("zeros_like", [outputs[index]], {}))
        else:
            out_grads.append(_sum_terms(terms))
    inputs = [Symbol([entry]) for entry in node.inputs]
    args = GradArgs(node.attrs, inputs, outputs, out_grads, wants, node.name)
    in_grads = opdef.grad(args)
    if len(in_grads) != len(inputs):
        raise AssertionError(f"gradient rule of {node.op} returned {len(in_grads)} grads")
    for entry, symbol, gradient, wanted in zip(node.inputs, inputs, in_grads, wants):
        if not wanted or gradient is None:
            continue
        if opdef.broadcasting:
            gradient = apply_op("sum_to_like", [gradient, symbol], {})
        pending.setdefault(entry, []).append(gradient)
