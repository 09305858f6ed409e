"""Listings of a graph for dumping passes: text (``debug_str``) and Graphviz DOT.

Nodes whose attributes carry a ``group`` key (fusion's kernel groups) are drawn inside a
``subgraph cluster_<group>``. ``dot -Tpng graph.dot -o graph.png`` renders the DOT text
where Graphviz is installed; graphc does not need it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from graphc.ir.infer import infer_shapes
from graphc.ir.listing import format_shape
from graphc.ir.node import Node, NodeOutput
from graphc.ir.symbol import Symbol
from graphc.passes.rewrite import num_outputs


def to_text(symbol: Symbol, shapes: Mapping[str, tuple] | None = None) -> str:
    """The ``debug_str`` listing, one line per node, shapes shown where inferable.

    >>> import graphc as gc
    >>> print(to_text(gc.Variable("x"), {"x": (2, 3)}))
    x: Variable -> (2, 3)
    outputs: x
    """
    return symbol.debug_str(**dict(shapes or {}))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _node_label(node: Node, inferred: Mapping) -> str:
    shape = inferred.get(NodeOutput(node, 0))
    shape_text = "" if shape is None else "\\n" + format_shape(shape)
    name = node.name.replace("\\", "\\\\").replace('"', '\\"')
    op = "Variable" if node.is_variable else node.op
    return f'"{name}\\n{op}{shape_text}"'


def _cluster_name(group) -> str:
    return "cluster_" + re.sub(r"\W", "_", str(group))


def to_dot(symbol: Symbol, shapes: Mapping[str, tuple] | None = None) -> str:
    """Graphviz DOT text: a box per node labelled name, op and shape (when known), an edge
    per input (labelled with the output index for multi-output nodes), and a cluster per
    ``group`` attribute.

    >>> import graphc as gc
    >>> print(to_dot(gc.exp(gc.Variable("x"), name="e"), {"x": (2,)}))
    digraph graphc {
      node [shape=box];
      n0 [label="x\\nVariable\\n(2,)"];
      n1 [label="e\\nexp\\n(2,)"];
      n0 -> n1;
      n1 -> out0;
      out0 [label="output 0", shape=plaintext];
    }
    """
    graph = symbol.graph
    given = {}
    if shapes:
        present = set(symbol.list_inputs())
        given = {name: shape for name, shape in shapes.items() if name in present}
    inferred = infer_shapes(graph, given, partial=True).values
    ids = {node: f"n{index}" for index, node in enumerate(graph.nodes)}
    lines = ["digraph graphc {", "  node [shape=box];"]
    clusters: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if "group" in node.attrs:
            clusters.setdefault(_cluster_name(node.attrs["group"]), []).append(node)
            continue
        lines.append(f"  {ids[node]} [label={_node_label(node, inferred)}];")
    for cluster, members in clusters.items():
        group = members[0].attrs["group"]
        lines.append(f"  subgraph {cluster} {{")
        lines.append(f"    label={_quote('group ' + str(group))};")
        for node in members:
            lines.append(f"    {ids[node]} [label={_node_label(node, inferred)}];")
        lines.append("  }")
    for node in graph.nodes:
        for entry in node.inputs:
            label = f' [label="{entry.index}"]' if num_outputs(entry.node) > 1 else ""
            lines.append(f"  {ids[entry.node]} -> {ids[node]}{label};")
    for index, entry in enumerate(symbol.entries):
        label = f' [label="{entry.index}"]' if num_outputs(entry.node) > 1 else ""
        lines.append(f"  {ids[entry.node]} -> out{index}{label};")
        lines.append(f'  out{index} [label="output {index}", shape=plaintext];')
    lines.append("}")
    return "\n".join(lines)
