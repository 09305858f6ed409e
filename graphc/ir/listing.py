"""``Symbol.debug_str``: a readable listing of a graph, one line per node."""

from __future__ import annotations

from collections.abc import Mapping

from graphc.ir.infer import infer_shapes
from graphc.ir.node import Node, NodeOutput
from graphc.ir.registry import get_op


def format_shape(shape) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join(str(dim) for dim in shape) + ("," if len(shape) == 1 else "") + ")"


def _format_value(value) -> str:
    if isinstance(value, tuple):
        return format_shape(value)
    return repr(value) if isinstance(value, str) else str(value)


def format_attrs(attrs: Mapping) -> str:
    return ", ".join(f"{key}={_format_value(value)}" for key, value in attrs.items())


def _input_ref(entry: NodeOutput) -> str:
    node = entry.node
    if node.is_variable or (get_op(node.op).num_outputs(node.attrs) == 1):
        return node.name
    return f"{node.name}[{entry.index}]"


def node_line(node: Node, shapes) -> str:
    """``fc1 = FullyConnected(data, fc1_weight; num_hidden=10) -> (2, 10)  # model.py:3``."""
    if node.is_variable:
        shape = shapes.get(NodeOutput(node, 0)) if shapes else None
        attrs = {key: value for key, value in node.attrs.items() if key != "shape"}
        extra = f" {format_attrs(attrs)}" if attrs else ""
        return f"{node.name}: Variable{extra} -> {format_shape(shape)}"
    opdef = get_op(node.op)
    inputs = ", ".join(_input_ref(entry) for entry in node.inputs)
    attrs = format_attrs(node.attrs)
    body = f"{inputs}; {attrs}" if attrs and inputs else inputs or attrs
    count = opdef.num_visible_outputs(node.attrs)
    out_shapes = [shapes.get(NodeOutput(node, i)) if shapes else None for i in range(count)]
    if count == 1:
        result = format_shape(out_shapes[0])
    else:
        result = "[" + ", ".join(format_shape(shape) for shape in out_shapes) + "]"
    return f"{node.name} = {node.op}({body}) -> {result}  # {node.source}"


def debug_str(symbol, shapes: Mapping[str, tuple]) -> str:
    """The listing of ``symbol``'s graph; shapes shown where inferable from ``shapes``."""
    inferred = infer_shapes(symbol.graph, shapes, partial=True).values
    lines = [node_line(node, inferred) for node in symbol.graph.nodes]
    heads = ", ".join(_input_ref(entry) for entry in symbol.entries)
    lines.append(f"outputs: {heads}")
    return "\n".join(lines)
