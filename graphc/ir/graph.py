"""A graph: the nodes that a set of outputs depends on, in topological order.

Walks are iterative (an explicit stack), because an unrolled sequence model is deeper
than Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from graphc.ir.errors import GraphFormatError
from graphc.ir.node import Node, NodeOutput
from graphc.ir.registry import get_op


def topological_order(outputs: Iterable[NodeOutput]) -> list[Node]:
    """Nodes reachable from ``outputs``, each after all of its inputs.

    The order is a depth-first post-order that visits inputs left to right, so arguments
    come out in MXNet's ``list_arguments`` order (data, conv1_weight, conv1_bias, ...)."""
    order: list[Node] = []
    done: set[int] = set()
    on_stack: set[int] = set()
    for head in outputs:
        stack: list[tuple[Node, int]] = [(head.node, 0)]
        while stack:
            node, next_input = stack.pop()
            if id(node) in done:
                continue
            if next_input == 0:
                on_stack.add(id(node))
            if next_input < len(node.inputs):
                stack.append((node, next_input + 1))
                child = node.inputs[next_input].node
                if id(child) not in done:
                    if id(child) in on_stack:
                        raise GraphFormatError(f"cycle through node {child.name!r}")
                    stack.append((child, 0))
                continue
            on_stack.discard(id(node))
            done.add(id(node))
            order.append(node)
    return order


@dataclass(frozen=True, eq=False)
class Graph:
    """The nodes of ``outputs`` in topological order, with arguments and auxiliary states."""

    outputs: tuple[NodeOutput, ...]
    nodes: tuple[Node, ...] = field(init=False)
    consumers: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        nodes = tuple(topological_order(self.outputs))
        object.__setattr__(self, "nodes", nodes)
        consumers: dict[Node, list[Node]] = {node: [] for node in nodes}
        for node in nodes:
            for entry in node.inputs:
                consumers[entry.node].append(node)
        object.__setattr__(self, "consumers", consumers)
        _check_unique_variable_names(nodes)

    @property
    def variables(self) -> list[Node]:
        return [node for node in self.nodes if node.is_variable]

    @property
    def aux_variables(self) -> list[Node]:
        """Variables that feed an op's auxiliary-state input (MXNet's aux states)."""
        aux: list[Node] = []
        for node in self.nodes:
            if node.is_variable:
                continue
            opdef = get_op(node.op)
            if not opdef.aux:
                continue
            names = opdef.input_names(node.attrs)
            for input_name, entry in zip(names, node.inputs):
                if input_name in opdef.aux and entry.node.is_variable and entry.node not in aux:
                    aux.append(entry.node)
        return aux

    @property
    def arguments(self) -> list[Node]:
        aux = set(self.aux_variables)
        return [node for node in self.variables if node not in aux]

    def variable(self, name: str) -> Node:
        for node in self.variables:
            if node.name == name:
                return node
        known = ", ".join(node.name for node in self.variables)
        raise KeyError(f"no variable named {name!r}; the graph has: {known}")


def _check_unique_variable_names(nodes: Sequence[Node]) -> None:
    seen: dict[str, Node] = {}
    for node in nodes:
        if not node.is_variable:
            continue
        other = seen.get(node.name)
        if other is not None and other is not node:
            raise GraphFormatError(
                f"two different Variables are named {node.name!r} (created at {other.source}"
                f" and {node.source}); reuse one Variable to share a parameter"
            )
        seen[node.name] = node
