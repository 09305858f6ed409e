"""Listings of a graph for dumping passes: text (``debug_str``) and Graphviz DOT.

A fused node is drawn as a ``subgraph cluster`` holding the nodes it replaced, with the
edges between them, so every fused group is visible as a box around its original nodes. ``dot -Tpng graph.dot -o graph.png`` renders the DOT text
where Graphviz is installed; graphc does not need it.
"""

from __future__ import annotations

import os
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


def pass_dumper(directory: str, shapes: Mapping[str, tuple] | None = None):
    """A ``dump`` for ``gc.optimize`` that writes, for every pass, the graph before and
    after it as text and as DOT: ``NN-<pass>-before.txt``, ``...-after.dot`` and so on in
    ``directory`` (made if missing). ``GRAPHC_DUMP=passes`` turns it on for every bind,
    into ``GRAPHC_DUMP_DIR`` (default ``graphc-dump``).

    >>> import os, tempfile, graphc as gc
    >>> folder = tempfile.mkdtemp()
    >>> _ = gc.optimize(gc.tanh(gc.Variable("x")) * 2.0, shapes={"x": (2,)},
    ...                 dump=pass_dumper(folder, {"x": (2,)}))
    >>> sorted(os.listdir(folder))[:2]
    ['01-simplify-after.dot', '01-simplify-after.txt']
    """
    counter = [0]

    def dump(name: str, before: Symbol, after: Symbol) -> None:
        counter[0] += 1
        os.makedirs(directory, exist_ok=True)
        for when, symbol in (("before", before), ("after", after)):
            stem = os.path.join(directory, f"{counter[0]:02d}-{name}-{when}")
            present = set(symbol.list_inputs())
            known = {k: v for k, v in (shapes or {}).items() if k in present}
            with open(stem + ".txt", "w", encoding="utf-8") as stream:
                stream.write(to_text(symbol, known) + "\n")
            with open(stem + ".dot", "w", encoding="utf-8") as stream:
                stream.write(to_dot(symbol, known) + "\n")

    return dump


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _node_label(node: Node, inferred: Mapping) -> str:
    shape = inferred.get(NodeOutput(node, 0))
    shape_text = "" if shape is None else "\\n" + format_shape(shape)
    op = "Variable" if node.is_variable else node.op
    return f'"{_escape(node.name)}\\n{op}{shape_text}"'


def to_dot(symbol: Symbol, shapes: Mapping[str, tuple] | None = None) -> str:
    """Graphviz DOT text: a box per node labelled name, op and shape (when known), an edge
    per input (labelled with the output index for multi-output nodes), and a cluster per
    fused node around the nodes it replaced.

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
    edges = []
    for node in graph.nodes:
        if node.op == "_fused":
            lines.extend(_fused_cluster(node, ids[node], inferred))
            edges.extend(_fused_input_edges(node, ids))
            continue
        lines.append(f"  {ids[node]} [label={_node_label(node, inferred)}];")
        for entry in node.inputs:
            edges.append(f"  {_source_id(entry, ids)} -> {ids[node]}{_edge_label(entry)};")
    lines.extend(edges)
    for index, entry in enumerate(symbol.entries):
        lines.append(f"  {_source_id(entry, ids)} -> out{index}{_edge_label(entry)};")
        lines.append(f'  out{index} [label="output {index}", shape=plaintext];')
    lines.append("}")
    return "\n".join(lines)


def _edge_label(entry: NodeOutput) -> str:
    if entry.node.op == "_fused" or num_outputs(entry.node) == 1:
        return ""
    return f' [label="{entry.index}"]'


def _source_id(entry: NodeOutput, ids: Mapping) -> str:
    """The box an edge starts from: for a fused node, the member whose value leaves."""
    node = entry.node
    if node.op == "_fused":
        member, _ = node.attrs["outputs"][entry.index]
        return f"{ids[node]}_{member}"
    return ids[node]


def _fused_cluster(node: Node, node_id: str, inferred: Mapping) -> list[str]:
    members = node.attrs["members"]
    lines = [f"  subgraph cluster_{node_id} {{", f"    label={_quote(node.name)};"]
    for position, member in enumerate(members):
        label = f"{_escape(member.name)}\\n{_escape(member.op)}"
        leaving = [k for k, (m, _) in enumerate(node.attrs["outputs"]) if m == position]
        if leaving:
            shape = inferred.get(NodeOutput(node, leaving[0]))
            if shape is not None:
                label += "\\n" + format_shape(shape)
        lines.append(f'    {node_id}_{position} [label="{label}"];')
    for position, member in enumerate(members):
        for kind, value in member.operands:
            if kind == "member":
                lines.append(f"    {node_id}_{value} -> {node_id}_{position};")
    lines.append("  }")
    return lines


def _fused_input_edges(node: Node, ids: Mapping) -> list[str]:
    edges = []
    for position, member in enumerate(node.attrs["members"]):
        for kind, value in member.operands:
            if kind == "input":
                entry = node.inputs[value]
                target = f"{ids[node]}_{position}"
                edges.append(f"  {_source_id(entry, ids)} -> {target}{_edge_label(entry)};")
    return edges


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
