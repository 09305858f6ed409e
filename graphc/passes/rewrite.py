"""Rebuilding a graph: the one walk every pass is written on.

Nodes are immutable, so a pass never edits one: it walks the old graph in topological order,
rebuilds each node over its (possibly replaced) inputs, keeping name, attributes and source,
and may replace the rebuilt node's outputs by other entries. Nodes no output reaches any more
simply drop out of the new symbol's graph. The walk is iterative (``topological_order``),
because an unrolled sequence model is deeper than Python's recursion limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from graphc.ir.node import Node, NodeOutput, freeze_attrs
from graphc.ir.registry import get_op
from graphc.ir.symbol import Symbol

Replacer = Callable[[Node, Node], Sequence[NodeOutput] | None]
"""``replace(old_node, rebuilt_node)``: replacements for every output (hidden ones
included) of the node, or None to keep the rebuilt node."""


def num_outputs(node: Node) -> int:
    """Visible plus hidden outputs of ``node`` (1 for a Variable)."""
    if node.is_variable:
        return 1
    return get_op(node.op).num_outputs(node.attrs)


def with_inputs(node: Node, inputs: Sequence[NodeOutput]) -> Node:
    """``node`` itself when its inputs are unchanged, else a copy over ``inputs``."""
    inputs = tuple(inputs)
    if all(new is old for new, old in zip(inputs, node.inputs)):
        return node
    return dataclasses.replace(node, inputs=inputs)


def make_node(op: str, inputs: Sequence[NodeOutput], attrs: Mapping[str, Any], like: Node) -> Node:
    """A new node of ``op`` that takes the name and source of the node ``like`` it replaces,
    so listings and errors keep naming the user's node. Attributes are validated."""
    parsed = get_op(op).parse_attrs(attrs, f"{like.name} ({op}) at {like.source}")
    return Node(op, like.name, tuple(inputs), freeze_attrs(parsed), like.source)


def transform(
    symbol: Symbol,
    replace: Replacer,
    shapes: MutableMapping[NodeOutput, Any] | None = None,
) -> Symbol:
    """Rebuild ``symbol``'s graph bottom-up, letting ``replace`` substitute node outputs.

    ``replace`` sees each node (Variables too) after its inputs have been rewritten. ``shapes``, when given,
    maps old entries to shapes and is extended with the new entries (a replacement has the
    shape of what it replaces), so that rules later in the same walk can read shapes of
    rebuilt nodes. Output entries keep their order; the input symbol is not changed.
    """
    mapping: dict[NodeOutput, NodeOutput] = {}
    for node in symbol.graph.nodes:
        rebuilt = with_inputs(node, [mapping.get(entry, entry) for entry in node.inputs])
        replacements = replace(node, rebuilt)
        for index in range(num_outputs(node)):
            old = NodeOutput(node, index)
            new = replacements[index] if replacements is not None else NodeOutput(rebuilt, index)
            if new == old:
                continue
            mapping[old] = new
            if shapes is not None and shapes.get(old) is not None:
                shapes.setdefault(new, shapes[old])
    return Symbol([mapping.get(entry, entry) for entry in symbol.entries])


def rewrite(symbol: Symbol, replacements: Mapping[NodeOutput, NodeOutput]) -> Symbol:
    """Replace the old entries in ``replacements`` by their new entries and rebuild every
    node downstream of them.

    A replacement may be a new entry or another entry of the old graph that does not depend
    on the one it replaces; in the latter case its rebuilt version is used.

    >>> import graphc as gc
    >>> x, y = gc.Variable("x"), gc.Variable("y")
    >>> out = gc.exp(x) + 1.0
    >>> swapped = rewrite(out, {gc.exp(x).entries[0]: y.entries[0]})  # an unrelated node: no-op
    >>> swapped.list_arguments()
    ['x']
    >>> inner = out.node.inputs[0]
    >>> rewrite(out, {inner: y.entries[0]}).list_arguments()
    ['y']
    """
    done: dict[NodeOutput, NodeOutput] = {}

    def replace(old: Node, rebuilt: Node) -> list[NodeOutput] | None:
        outputs = []
        changed = False
        for index in range(num_outputs(old)):
            entry = NodeOutput(old, index)
            target = replacements.get(entry)
            if target is None:
                outputs.append(NodeOutput(rebuilt, index))
            else:
                outputs.append(done.get(target, target))
                changed = True
        for index, output in enumerate(outputs):
            done[NodeOutput(old, index)] = output
        return outputs if changed else None

    return transform(symbol, replace)
