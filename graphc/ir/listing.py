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
    if node.op == "_fused":
        return _fused_lines(node, inputs, shapes)
    attrs = format_attrs(node.attrs)
    body = f"{inputs}; {attrs}" if attrs and inputs else inputs or attrs
    count = opdef.num_visible_outputs(node.attrs)
    out_shapes = [shapes.get(NodeOutput(node, i)) if shapes else None for i in range(count)]
    if count == 1:
        result = format_shape(out_shapes[0])
    else:
        result = "[" + ", ".join(format_shape(shape) for shape in out_shapes) + "]"
    return f"{node.name} = {node.op}({body}) -> {result}  # {node.source}"


def _fused_lines(node: Node, inputs: str, shapes) -> str:
    """A fused node and, indented below it, the nodes it replaced with their source lines.

    ``fused(fc1, relu1) = _fused(data, fc1_weight, fc1_bias) -> (2, 10)  # model.py:3``
    then ``  | relu1 = relu(fc1)  -> output 0  # model.py:4``."""
    members = node.attrs["members"]
    outputs = node.attrs["outputs"]
    out_shapes = [shapes.get(NodeOutput(node, i)) if shapes else None for i in range(len(outputs))]
    result = ", ".join(format_shape(shape) for shape in out_shapes)
    result = result if len(outputs) == 1 else f"[{result}]"
    lines = [f"{node.name} = _fused({inputs}) -> {result}  # {node.source}"]
    for position, member in enumerate(members):
        operands = []
        for kind, value in member.operands:
            if kind == "input":
                operands.append(_input_ref(node.inputs[value]))
            elif kind == "member":
                operands.append(members[value].name)
            else:
                operands.append(repr(value))
        attrs = format_attrs(dict(member.attrs))
        body = ", ".join(operands) + (f"; {attrs}" if attrs else "")
        leaving = [str(k) for k, (m, _) in enumerate(outputs) if m == position]
        exported = f"  -> output {', '.join(leaving)}" if leaving else ""
        lines.append(f"  | {member.name} = {member.op}({body}){exported}  # {member.source}")
    return "\n".join(lines)


def debug_str(symbol, shapes: Mapping[str, tuple]) -> str:
    """The listing of ``symbol``'s graph; shapes shown where inferable from ``shapes``."""
    inferred = infer_shapes(symbol.graph, shapes, partial=True).values
    lines = [node_line(node, inferred) for node in symbol.graph.nodes]
    heads = ", ".join(_input_ref(entry) for entry in symbol.entries)
    lines.append(f"outputs: {heads}")
    return "\n".join(lines)
