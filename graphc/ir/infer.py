"""Shape and dtype inference over a graph.

Each op's rule sees the shapes of its inputs (None where not yet known) and returns its
output shapes; it may also fill in unknown input shapes, which is how parameters
(``fc1_weight``) and labels get their shapes from the data, as in MXNet. Rules are applied
in topological order until nothing changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from graphc.ir.errors import DTypeError, MissingInputError, RuleViolation, ShapeError, ShapeUnknown
from graphc.ir.graph import Graph
from graphc.ir.node import Node, NodeOutput
from graphc.ir.registry import get_op, same_dtype_rule

DEFAULT_DTYPE = np.dtype("float32")


@dataclass(frozen=True)
class Inferred:
    """Shapes (or dtypes) of every node output, and of every variable by name."""

    values: dict[NodeOutput, object]
    variables: dict[str, object]

    def __getitem__(self, entry: NodeOutput) -> object:
        return self.values.get(entry)


def describe(node: Node) -> str:
    return f"{node.name} ({node.op}) at {node.source}"


def upstream_chain(node: Node, shapes: Mapping[NodeOutput, object], limit: int = 8) -> str:
    """``data (100,1,28,28) -> conv1 (100,20,24,24) -> ...`` along first inputs."""
    chain = []
    current = node
    while current.inputs and len(chain) < limit:
        current = current.inputs[0].node
        shape = shapes.get(NodeOutput(current, 0))
        chain.append(f"{current.name} {_fmt(shape)}")
    return " -> ".join(reversed(chain))


def _fmt(shape: object) -> str:
    if shape is None:
        return "(?)"
    return "(" + ",".join(str(dim) for dim in shape) + ")"


def _input_listing(node: Node, names: tuple, in_shapes: list) -> str:
    parts = []
    for index, (entry, shape) in enumerate(zip(node.inputs, in_shapes)):
        label = names[index] if index < len(names) else f"input{index}"
        parts.append(f"{label}={entry.node.name} {_fmt(shape)}")
    return ", ".join(parts)


def infer_shapes(graph: Graph, given: Mapping[str, tuple], partial: bool = False) -> Inferred:
    """Infer every output shape from the shapes of some variables.

    Raises ShapeError where shapes cannot meet, and MissingInputError listing the variables
    whose shapes are neither given nor inferable (unless ``partial``)."""
    variables = {node.name: node for node in graph.variables}
    unknown_names = sorted(set(given) - set(variables))
    if unknown_names:
        raise MissingInputError(
            f"infer_shape: unknown argument name(s) {unknown_names}; the graph has {sorted(variables)}"
        )
    shapes: dict[NodeOutput, object] = {}
    for node in graph.variables:
        declared = node.attrs.get("shape")
        supplied = given.get(node.name)
        if supplied is not None:
            supplied = tuple(int(dim) for dim in supplied)
            if declared is not None and tuple(declared) != supplied:
                raise ShapeError(
                    f"{node.name} (Variable) at {node.source}: declared with shape"
                    f" {tuple(declared)} but given {supplied}"
                )
        shape = supplied if supplied is not None else declared
        shapes[NodeOutput(node, 0)] = None if shape is None else tuple(shape)

    changed = True
    while changed:
        changed = False
        for node in graph.nodes:
            if node.is_variable:
                continue
            changed |= _apply_shape_rule(node, shapes)

    if not partial:
        missing = [name for name, node in variables.items() if shapes[NodeOutput(node, 0)] is None]
        if missing:
            raise MissingInputError(
                f"cannot infer the shape of {missing}; give them, e.g. infer_shape({missing[0]}=(...))"
            )
        unresolved = [
            node
            for node in graph.nodes
            if not node.is_variable and shapes.get(NodeOutput(node, 0)) is None
        ]
        if unresolved:
            raise MissingInputError(
                "cannot infer the shapes of " + ", ".join(describe(node) for node in unresolved)
            )
    return Inferred(shapes, {name: shapes[NodeOutput(node, 0)] for name, node in variables.items()})


def _apply_shape_rule(node: Node, shapes: dict) -> bool:
    """Run one node's rule; True if any shape became known."""
    opdef = get_op(node.op)
    n_out = opdef.num_outputs(node.attrs)
    in_shapes = [shapes.get(entry) for entry in node.inputs]
    outputs_known = all(shapes.get(NodeOutput(node, i)) is not None for i in range(n_out))
    if outputs_known and all(shape is not None for shape in in_shapes):
        return False
    names = opdef.input_names(node.attrs)
    try:
        new_in, out_shapes = opdef.infer_shape(node.attrs, list(in_shapes))
    except ShapeUnknown:
        return False
    except RuleViolation as exc:
        raise ShapeError(
            f"{describe(node)}: {exc}; inputs: {_input_listing(node, names, in_shapes)};"
            f" shapes upstream: {upstream_chain(node, shapes)}"
        ) from None
    if len(out_shapes) != n_out:
        raise AssertionError(f"shape rule of {node.op} gave {len(out_shapes)} outputs, not {n_out}")
    changed = False
    for entry, old, new in zip(node.inputs, in_shapes, new_in):
        if old is None and new is not None:
            shapes[entry] = tuple(int(dim) for dim in new)
            changed = True
    for index, shape in enumerate(out_shapes):
        entry = NodeOutput(node, index)
        if shapes.get(entry) is None and shape is not None:
            shapes[entry] = tuple(int(dim) for dim in shape)
            changed = True
    return changed


def infer_dtypes(graph: Graph, given: Mapping[str, object]) -> Inferred:
    """Infer every output dtype; variables nobody types default to float32, as in MXNet."""
    variables = {node.name: node for node in graph.variables}
    unknown_names = sorted(set(given) - set(variables))
    if unknown_names:
        raise MissingInputError(
            f"infer_type: unknown argument name(s) {unknown_names}; the graph has {sorted(variables)}"
        )
    dtypes: dict[NodeOutput, object] = {}
    for node in graph.variables:
        declared = node.attrs.get("dtype")
        supplied = given.get(node.name)
        if (
            supplied is not None
            and declared is not None
            and np.dtype(supplied) != np.dtype(declared)
        ):
            raise DTypeError(
                f"{node.name} (Variable) at {node.source}: declared {declared} but given"
                f" {np.dtype(supplied).name}"
            )
        dtype = supplied if supplied is not None else declared
        dtypes[NodeOutput(node, 0)] = None if dtype is None else np.dtype(dtype)

    for defaults_applied in (False, True):
        if defaults_applied:
            for node in graph.variables:
                if dtypes[NodeOutput(node, 0)] is None:
                    dtypes[NodeOutput(node, 0)] = DEFAULT_DTYPE
        changed = True
        while changed:
            changed = False
            for node in graph.nodes:
                if not node.is_variable:
                    changed |= _apply_type_rule(node, dtypes, defaults_applied)
    return Inferred(dtypes, {name: dtypes[NodeOutput(node, 0)] for name, node in variables.items()})


def _apply_type_rule(node: Node, dtypes: dict, final: bool) -> bool:
    opdef = get_op(node.op)
    n_out = opdef.num_outputs(node.attrs)
    in_dtypes = [dtypes.get(entry) for entry in node.inputs]
    rule = opdef.infer_type or same_dtype_rule
    try:
        new_in, out = rule(node.attrs, list(in_dtypes))
    except RuleViolation as exc:
        listing = ", ".join(
            f"{entry.node.name} {getattr(dtype, 'name', '?')}"
            for entry, dtype in zip(node.inputs, in_dtypes)
        )
        raise DTypeError(f"{describe(node)}: {exc}; inputs: {listing}") from None
    known_out = dtypes.get(NodeOutput(node, 0))
    if out is None and known_out is not None and opdef.infer_type is None:
        # Untyped inputs (a chain of scalar constants) take the dtype a consumer gave this
        # node's output, so float64 graphs compute their constants in float64 too.
        new_in, out = [known_out if dtype is None else dtype for dtype in in_dtypes], known_out
    if out is None:
        if not final:
            return False
        out = DEFAULT_DTYPE
    out_list = list(out) if isinstance(out, (list, tuple)) else [out] * n_out
    changed = False
    for entry, old, new in zip(node.inputs, in_dtypes, new_in):
        if old is None and new is not None:
            dtypes[entry] = np.dtype(new)
            changed = True
    for index, dtype in enumerate(out_list):
        entry = NodeOutput(node, index)
        if dtypes.get(entry) is None and dtype is not None:
            dtypes[entry] = np.dtype(dtype)
            changed = True
    return changed
