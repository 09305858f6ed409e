"""Graphs as JSON, in MXNet's layout (nodes, arg_nodes, heads).

Loading validates everything: the structure, every op name against the registry, every
attribute against its op's schema, every edge against the nodes before it. Nothing in a
file is ever executed.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from graphc.ir.errors import GraphFormatError
from graphc.ir.node import VARIABLE_OP, Node, NodeOutput, freeze_attrs
from graphc.ir.registry import REGISTRY
from graphc.ir.symbol import Symbol

FORMAT_VERSION = 1


def _to_json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_json_value(item) for item in value]
    return value


def to_json(symbol: Symbol) -> str:
    """The graph of ``symbol`` as JSON text."""
    nodes = symbol.graph.nodes
    index = {node: position for position, node in enumerate(nodes)}
    records = []
    for node in nodes:
        records.append(
            {
                "op": node.op,
                "name": node.name,
                "attrs": {key: _to_json_value(value) for key, value in node.attrs.items()},
                "inputs": [[index[entry.node], entry.index] for entry in node.inputs],
                "source": node.source,
            }
        )
    document = {
        "graphc_format": FORMAT_VERSION,
        "nodes": records,
        "arg_nodes": [index[node] for node in nodes if node.is_variable],
        "heads": [[index[entry.node], entry.index] for entry in symbol.entries],
    }
    return json.dumps(document, indent=1)


def load_json(text: str) -> Symbol:
    """The symbol saved by :func:`to_json`; raises GraphFormatError on anything malformed.

    >>> import graphc as gc
    >>> net = gc.FullyConnected(gc.Variable("x"), num_hidden=2, name="fc")
    >>> gc.load_json(net.tojson()).list_arguments()
    ['x', 'fc_weight', 'fc_bias']
    """
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise GraphFormatError(f"not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("nodes"), list):
        raise GraphFormatError("a graph document is an object with a 'nodes' list")
    if not isinstance(document.get("heads"), list) or not document["heads"]:
        raise GraphFormatError("a graph document needs a non-empty 'heads' list")
    nodes: list[Node] = []
    for position, record in enumerate(document["nodes"]):
        nodes.append(_load_node(position, record, nodes))
    heads = [
        _load_edge(edge, nodes, len(nodes), "heads", visible_only=True)
        for edge in document["heads"]
    ]
    return Symbol(heads)


def _load_node(position: int, record: Any, earlier: list[Node]) -> Node:
    where = f"node {position}"
    if not isinstance(record, dict):
        raise GraphFormatError(f"{where}: expected an object, got {type(record).__name__}")
    op, name = record.get("op"), record.get("name")
    if not isinstance(op, str) or not isinstance(name, str) or not name:
        raise GraphFormatError(f"{where}: 'op' and 'name' must be non-empty strings")
    where = f"node {position} ({name!r})"
    attrs = record.get("attrs", {})
    inputs = record.get("inputs", [])
    source = record.get("source", "<json>")
    if not isinstance(attrs, dict) or not isinstance(inputs, list) or not isinstance(source, str):
        raise GraphFormatError(f"{where}: 'attrs' must be an object and 'inputs' a list")
    edges = tuple(_load_edge(edge, earlier, position, where) for edge in inputs)
    if op == VARIABLE_OP:
        if edges:
            raise GraphFormatError(f"{where}: a Variable has no inputs")
        return Node(VARIABLE_OP, name, (), freeze_attrs(_variable_attrs(attrs, where)), source)
    op, attrs = _mxnet_composite(op, attrs, where)
    opdef = REGISTRY.get(op)
    if opdef is None:
        raise GraphFormatError(f"{where}: unknown op {op!r}")
    try:
        parsed = opdef.parse_attrs(attrs, f"{name} ({op})")
    except ValueError as exc:
        raise GraphFormatError(f"{where}: {exc}") from None
    expected = opdef.input_names(parsed)
    if len(edges) != len(expected):
        raise GraphFormatError(
            f"{where}: {op} takes inputs {list(expected)}, the file gives {len(edges)}"
        )
    return Node(op, name, edges, freeze_attrs(parsed), source)


_ACTIVATIONS = ("relu", "sigmoid", "tanh", "softrelu")


def _mxnet_composite(op: str, attrs: dict, where: str) -> tuple[str, dict]:
    """The primitive that graphc builds for MXNet's Activation and Flatten nodes, so a
    graph that names them (as MXNet's JSON does) loads."""
    if op == "Activation":
        act_type = attrs.get("act_type")
        if act_type not in _ACTIVATIONS:
            raise GraphFormatError(
                f"{where}: Activation act_type={act_type!r}; allowed: {', '.join(_ACTIVATIONS)}"
            )
        return act_type, {}
    if op == "Flatten":
        return "Reshape", {"shape": [0, -1]}
    return op, attrs


def _variable_attrs(attrs: dict, where: str) -> dict:
    result = {}
    for key, value in attrs.items():
        if key == "shape":
            if not isinstance(value, list) or not all(isinstance(d, int) and d >= 0 for d in value):
                raise GraphFormatError(f"{where}: shape must be a list of non-negative ints")
            result[key] = tuple(value)
        elif isinstance(value, (str, int, float, bool)) or value is None:
            result[key] = value
        else:
            raise GraphFormatError(f"{where}: Variable attribute {key!r} must be a plain value")
    return result


def _load_edge(
    edge: Any, earlier: list[Node], limit: int, where: str, visible_only: bool = False
) -> NodeOutput:
    if not (
        isinstance(edge, list) and len(edge) in (2, 3) and all(isinstance(x, int) for x in edge)
    ):
        raise GraphFormatError(f"{where}: an edge is [node_index, output_index], not {edge!r}")
    node_index, output_index = edge[0], edge[1]
    if not 0 <= node_index < min(limit, len(earlier)):
        raise GraphFormatError(f"{where}: edge {edge!r} refers to a node that does not precede it")
    node = earlier[node_index]
    if node.is_variable:
        count = 1
    else:
        opdef = REGISTRY[node.op]
        count = (
            opdef.num_visible_outputs(node.attrs) if visible_only else opdef.num_outputs(node.attrs)
        )
    if not 0 <= output_index < count:
        raise GraphFormatError(f"{where}: {node.name} has no output {output_index}")
    return NodeOutput(node, output_index)


def save(symbol: Symbol, fname: str) -> None:
    """Write the JSON to ``fname`` atomically (a temporary file, then a rename)."""
    write_atomic(fname, to_json(symbol))


def load(fname: str) -> Symbol:
    with open(fname, encoding="utf-8") as handle:
        return load_json(handle.read())


def file_mode() -> int:
    """The mode a plain ``open`` would give a new file (0o666 less the umask); mkstemp's
    files are 0o600, which a saved model should not be."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(fname: str, text: str) -> None:
    """Write ``text`` to a temporary file beside ``fname``, flush it to disk, then rename it
    into place: a crash leaves the old file or the new one, never half of one."""
    directory = os.path.dirname(os.path.abspath(fname))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
            os.fchmod(stream.fileno(), file_mode())
        os.replace(temporary, fname)
    except BaseException:
        os.unlink(temporary)
        raise
