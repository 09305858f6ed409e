"""Fusion: groups of nodes become one ``_fused`` node, computed by one kernel.

A group is built around elementwise nodes (ops with a scalar expression) that produce the
same shape, the group's *iteration shape*:

- **elementwise fusion**: chains and diamonds of elementwise and broadcasting ops, forward
  and backward alike (``relu``'s mask times the incoming gradient is one loop);
- **epilogue fusion**: the group may take one *anchor*, a heavier op whose output it reads
  (``FullyConnected``, ``Convolution``, ``dot``, pooling and its gradient, a convolution's
  data gradient). The anchor runs first inside the same kernel and the elementwise loop
  follows over its result: bias-and-activation after a layer in the forward pass, and in
  the backward pass the activation's gradient applied right where the incoming gradient is
  produced, so the next layer's GEMMs read a ready operand;
- **reduction fusion**: ``sum`` and ``sum_to_like`` nodes that reduce a member's value join
  the group and accumulate inside the loop (the bias gradient's sum, a softmax
  cross-entropy gradient with its bias sum, the sum of squared errors).

Invariants the grouping keeps:

- *no cycles*: every group is convex (no path leaves it and comes back), so contracting the
  groups leaves a DAG; a candidate merge that would break this is split (the node joins
  fewer groups, or starts its own);
- *no duplicated work*: nodes are never copied into two groups; only scalar constants
  (``_scalar``) are inlined into each group that reads them, and they cost nothing;
- *phases stay apart*: when the caller says which outputs are the forward pass, a group
  holds forward nodes only or backward nodes only, so ``forward()`` never runs gradient
  work.

A group of one elementwise node with nothing to fuse is left as it was.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

from graphc.ir.graph import Graph
from graphc.ir.node import Node, NodeOutput, freeze_attrs
from graphc.ir.ops.fused import ANCHOR_OPS, CONST, INPUT, MEMBER, REDUCTIONS, Member
from graphc.ir.registry import get_op
from graphc.ir.symbol import Symbol
from graphc.passes.rewrite import num_outputs, with_inputs
from graphc.passes.simplify import entry_shapes


@dataclass(frozen=True)
class FusionCapabilities:
    """What a target's kernels can fuse; each backend declares its own through the seam
    (``graphc.backend``), and fusion asks this instead of assuming one target.

    ``epilogue_anchors``: ops whose output 0 an elementwise group may read inside the same
    kernel (a subset of ``ANCHOR_OPS``, the ops the fused op can anchor).
    ``reductions``: whether ``REDUCTIONS`` may accumulate inside a group's loop."""

    epilogue_anchors: frozenset[str] = ANCHOR_OPS
    reductions: bool = True


EVERY_FUSION = FusionCapabilities()
"""Everything the fused op can express: the default when no target is named."""


@dataclass
class Group:
    """One future ``_fused`` node: an optional anchor, elementwise members, reductions."""

    shape: tuple
    phase: int
    elementwise: list[Node] = field(default_factory=list)
    anchor: Node | None = None
    reductions: list[Node] = field(default_factory=list)

    def nodes(self) -> set[Node]:
        extra = [self.anchor] if self.anchor is not None else []
        return set(self.elementwise) | set(self.reductions) | set(extra)

    def worth_fusing(self) -> bool:
        return len(self.elementwise) + len(self.reductions) + (self.anchor is not None) > 1


def fuse(
    symbol: Symbol,
    shapes: Mapping[str, tuple] | None = None,
    forward_outputs: int | None = None,
    capabilities: FusionCapabilities = EVERY_FUSION,
) -> Symbol:
    """Replace groups of fusible nodes by ``_fused`` nodes (see the module docstring), as far
    as the target's ``capabilities`` allow.

    Keeps: every output's value, shape and dtype; the fused node's ``members`` name the
    replaced nodes and their source lines. Needs ``shapes`` (groups are formed over
    equal iteration shapes), else the shapes Variables declare, else it warns and fuses
    nothing; nodes whose shape cannot be inferred are left alone.
    ``forward_outputs``: the first that many outputs are the forward pass (see above).

    >>> import graphc as gc
    >>> x = gc.Variable("x")
    >>> fused = fuse(gc.tanh(x) * 2.0 + x, {"x": (4, 3)})
    >>> fused.node.op, [member.op for member in fused.node.attrs["members"]]
    ('_fused', ['tanh', 'multiply', 'add'])
    """
    graph = symbol.graph
    if not shapes:
        shapes = {
            node.name: tuple(node.attrs["shape"])
            for node in graph.variables
            if node.attrs.get("shape")
        }
    if not shapes:
        warnings.warn(
            "fuse: no input shapes were given and no Variable declares one, so nothing is "
            "fused; pass shapes={'data': (...)} (gc.optimize(sym, level=2, shapes=...))",
            stacklevel=3,
        )
        return symbol
    known = entry_shapes(symbol, shapes)
    context = _Context(graph, known, _phases(symbol, forward_outputs), capabilities)
    groups = [group for group in _plan_groups(context) if group.worth_fusing()]
    if not groups:
        return symbol
    return _rebuild(symbol, context, groups)


class _Context:
    """Facts about the graph the grouping reads: positions, consumers, shapes, phases."""

    def __init__(
        self,
        graph: Graph,
        shapes: Mapping,
        phases: Mapping[Node, int],
        capabilities: FusionCapabilities,
    ) -> None:
        self.graph = graph
        self.capabilities = capabilities
        self.shapes = shapes
        self.phases = phases
        self.position = {node: index for index, node in enumerate(graph.nodes)}
        self.consumers: dict[Node, list[Node]] = {node: [] for node in graph.nodes}
        for node in graph.nodes:
            for entry in node.inputs:
                if node not in self.consumers[entry.node]:
                    self.consumers[entry.node].append(node)

    def shape(self, node: Node, index: int = 0):
        return self.shapes.get(NodeOutput(node, index))

    def convex(self, members: set[Node]) -> bool:
        """No path leaves ``members`` and comes back into it."""
        last = max(self.position[node] for node in members)
        stack = [c for node in members for c in self.consumers[node] if c not in members]
        seen: set[Node] = set()
        while stack:
            node = stack.pop()
            if node in seen or self.position[node] > last:
                continue
            seen.add(node)
            for consumer in self.consumers[node]:
                if consumer in members:
                    return False
                stack.append(consumer)
        return True


def _phases(symbol: Symbol, forward_outputs: int | None) -> dict[Node, int]:
    """0 for nodes the forward outputs need, 1 for the others (all 0 when not told)."""
    if forward_outputs is None:
        return {node: 0 for node in symbol.graph.nodes}
    forward = set(Graph(tuple(symbol.entries[:forward_outputs])).nodes)
    return {node: 0 if node in forward else 1 for node in symbol.graph.nodes}


def _is_elementwise(node: Node, context: _Context) -> bool:
    if node.is_variable or node.op == "_scalar" or num_outputs(node) != 1:
        return False
    if get_op(node.op).expr is None:
        return False
    if context.shape(node) is None:
        return False
    return all(context.shapes.get(entry) is not None for entry in node.inputs)


def _plan_groups(context: _Context) -> list[Group]:
    groups: list[Group] = []
    group_of: dict[Node, Group] = {}
    for node in context.graph.nodes:
        if _is_elementwise(node, context):
            _place(node, context, groups, group_of)
    for group in groups:
        _attach_anchor(group, context, group_of)
    for node in context.graph.nodes:
        if context.capabilities.reductions and node.op in REDUCTIONS and node not in group_of:
            _attach_reduction(node, context, group_of)
    return groups


def _place(node: Node, context: _Context, groups: list[Group], group_of: dict) -> None:
    """Put an elementwise node into the union of its producers' groups, or into as many of
    them as stay convex, or into a new group."""
    shape, phase = context.shape(node), context.phases[node]
    candidates: list[Group] = []
    for entry in node.inputs:
        group = group_of.get(entry.node)
        if (
            group is not None
            and group.anchor is None
            and group.shape == shape
            and group.phase == phase
            and group not in candidates
        ):
            candidates.append(group)
    for choice in [candidates, *([group] for group in candidates)]:
        if not choice:
            continue
        union = {node}.union(*(group.nodes() for group in choice))
        if context.convex(union):
            target = choice[0]
            for other in choice[1:]:
                target.elementwise.extend(other.elementwise)
                for member in other.elementwise:
                    group_of[member] = target
                groups.remove(other)
            target.elementwise.append(node)
            target.elementwise.sort(key=context.position.__getitem__)
            group_of[node] = target
            return
    group = Group(shape, phase, [node])
    groups.append(group)
    group_of[node] = group


def _attach_anchor(group: Group, context: _Context, group_of: dict) -> None:
    for member in group.elementwise:
        for entry in member.inputs:
            anchor = entry.node
            if (
                entry.index == 0
                and anchor.op in context.capabilities.epilogue_anchors
                and anchor not in group_of
                and context.shape(anchor) == group.shape
                and context.phases[anchor] == group.phase
                and context.convex(group.nodes() | {anchor})
            ):
                group.anchor = anchor
                group_of[anchor] = group
                return


def _attach_reduction(node: Node, context: _Context, group_of: dict) -> None:
    source = node.inputs[0]
    group = group_of.get(source.node)
    if group is None or source.index != 0 or context.shapes.get(source) != group.shape:
        return
    if context.shape(node) is None or context.phases[node] != group.phase:
        return
    if any(context.shapes.get(entry) is None for entry in node.inputs):
        return
    if context.convex(group.nodes() | {node}):
        group.reductions.append(node)
        group_of[node] = group


def _rebuild(symbol: Symbol, context: _Context, groups: list[Group]) -> Symbol:
    """The graph with each group contracted into one ``_fused`` node, in an order where
    every node follows its inputs (groups are convex, so one exists)."""
    unit_of: dict[Node, object] = {node: node for node in context.graph.nodes}
    for group in groups:
        for node in group.nodes():
            unit_of[node] = id(group)
    by_id = {id(group): group for group in groups}
    mapping: dict[NodeOutput, NodeOutput] = {}
    outputs = set(symbol.entries)
    for unit in _unit_order(context, unit_of):
        if isinstance(unit, Node):
            node = unit
            rebuilt = with_inputs(node, [mapping.get(entry, entry) for entry in node.inputs])
            if rebuilt is not node:
                for index in range(num_outputs(node)):
                    mapping[NodeOutput(node, index)] = NodeOutput(rebuilt, index)
            continue
        mapping.update(_fused_node(by_id[unit], context, mapping, outputs))
    return Symbol([mapping.get(entry, entry) for entry in symbol.entries])


def _unit_order(context: _Context, unit_of: dict[Node, object]) -> list:
    """Units (plain nodes and group ids) in dependency order, ties broken by the earliest
    original position, so an unfused graph keeps its order."""
    import heapq

    first: dict[object, int] = {}
    for node in context.graph.nodes:
        first.setdefault(unit_of[node], context.position[node])
    needs: dict[object, set] = {unit: set() for unit in first}
    for node in context.graph.nodes:
        for entry in node.inputs:
            producer = unit_of[entry.node]
            if producer != unit_of[node]:
                needs[unit_of[node]].add(producer)
    waiting = {unit: len(deps) for unit, deps in needs.items()}
    users: dict[object, list] = {unit: [] for unit in first}
    for unit, deps in needs.items():
        for dep in deps:
            users[dep].append(unit)
    ready = [(first[unit], index, unit) for index, unit in enumerate(first) if not waiting[unit]]
    heapq.heapify(ready)
    order = []
    keys = {unit: index for index, unit in enumerate(first)}
    while ready:
        _, _, unit = heapq.heappop(ready)
        order.append(unit)
        for user in users[unit]:
            waiting[user] -= 1
            if not waiting[user]:
                heapq.heappush(ready, (first[user], keys[user], user))
    if len(order) != len(first):
        raise AssertionError("fusion produced a cycle; a group is not convex")
    return order


def _fused_node(
    group: Group, context: _Context, mapping: Mapping, outputs: set
) -> dict[NodeOutput, NodeOutput]:
    ordered = ([group.anchor] if group.anchor is not None else []) + group.elementwise
    ordered += sorted(group.reductions, key=context.position.__getitem__)
    index_of = {node: position for position, node in enumerate(ordered)}
    inputs: list[NodeOutput] = []
    members = []
    for node in ordered:
        operands = []
        for entry in node.inputs:
            if entry.node in index_of:
                operands.append((MEMBER, index_of[entry.node]))
            elif entry.node.op == "_scalar" and node is not group.anchor:
                operands.append((CONST, entry.node.attrs["value"]))
            else:
                new_entry = mapping.get(entry, entry)
                if new_entry not in inputs:
                    inputs.append(new_entry)
                operands.append((INPUT, inputs.index(new_entry)))
        attrs = tuple(node.attrs.items())
        members.append(Member(node.op, attrs, tuple(operands), node.name, node.source))
    exported = []
    group_nodes = set(ordered)
    for node in ordered:
        for index in range(num_outputs(node)):
            entry = NodeOutput(node, index)
            used_outside = any(
                consumer not in group_nodes and entry in consumer.inputs
                for consumer in context.consumers[node]
            )
            if used_outside or entry in outputs:
                exported.append((entry, (index_of[node], index)))
    attrs = freeze_attrs(
        {"members": tuple(members), "outputs": tuple(pair for _, pair in exported)}
    )
    fused = Node("_fused", _fused_name(ordered), tuple(inputs), attrs, ordered[0].source)
    return {entry: NodeOutput(fused, k) for k, (entry, _) in enumerate(exported)}


def _fused_name(nodes: list[Node]) -> str:
    names = [node.name for node in nodes]
    shown = names if len(names) <= 3 else names[:2] + [f"+{len(names) - 2}"]
    return "fused(" + ", ".join(shown) + ")"
