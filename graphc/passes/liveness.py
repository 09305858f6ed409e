"""Liveness and in-place decisions over a schedule: which buffer each entry uses, and for
how long it must live. The memory plan (``graphc.passes.memory_plan``) then places them.

The inputs are facts the lowering produced, as plain data: which scheduled nodes are views
of an input (Reshape, expand_dims: no kernel, no buffer of their own) and which kernels are
elementwise (each output element is computed from the same element of its inputs, so an
output may overwrite an input of its shape and dtype). Nothing here allocates.

Invariants:

- a view, and an in-place output, uses the buffer of its *root*: the entry that owns it;
- an entry takes an input's buffer only at ``in_place`` (``-O2``), only from an intermediate
  of the same shape and dtype that nothing (no alias either) reads after this position, that is
  no output or gradient of the graph, and that no other output of the same kernel took;
- a root lives from the position that defines it to the last that reads it or any alias.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from graphc.ir.node import Node, NodeOutput
from graphc.ir.registry import get_op
from graphc.passes.memory_plan import FOREVER, BufferRequest


@dataclass
class BufferAssignment:
    """Which entries own a buffer, which share one, and when each owned buffer is read."""

    storage: dict[NodeOutput, NodeOutput] = field(default_factory=dict)
    """entry -> the root entry whose buffer it uses (views and in-place outputs)."""
    in_place: dict[NodeOutput, int] = field(default_factory=dict)
    """in-place output -> the index of the input whose buffer it takes."""
    first_def: dict[NodeOutput, int] = field(default_factory=dict)
    """entry that owns a buffer -> the schedule position that writes it."""
    last_use: dict[NodeOutput, int] = field(default_factory=dict)
    """root -> the last schedule position that reads it or an alias of it."""

    def root(self, entry: NodeOutput) -> NodeOutput:
        return self.storage.get(entry, entry)


def outputs_of(node: Node) -> list[NodeOutput]:
    return [NodeOutput(node, index) for index in range(get_op(node.op).num_outputs(node.attrs))]


def assign_buffers(
    schedule: Sequence[Node],
    views: Mapping[Node, int],
    elementwise: set[Node],
    shapes: Mapping[NodeOutput, tuple],
    dtypes: Mapping[NodeOutput, np.dtype],
    kept: set[NodeOutput],
    in_place: bool,
) -> BufferAssignment:
    """Decide, walking ``schedule``, the buffer of every output (see the module docstring).

    ``views`` maps a node whose output is a view to the input it views; ``kept`` are the
    entries the caller reads after the schedule (outputs, gradients)."""
    assignment = BufferAssignment()
    last_read = _last_reads(schedule)
    for position, node in enumerate(schedule):
        for entry in node.inputs:
            assignment.last_use[assignment.root(entry)] = position
        taken: set[NodeOutput] = set()
        for entry in outputs_of(node):
            if node in views:
                assignment.storage[entry] = assignment.root(node.inputs[views[node]])
                continue
            donor = None
            if in_place and node in elementwise:
                donor = _donor(
                    node, entry, position, assignment, shapes, dtypes, last_read, kept, taken
                )
            if donor is None:
                assignment.first_def[entry] = position
            else:
                root = assignment.root(node.inputs[donor])
                assignment.storage[entry] = root
                assignment.in_place[entry] = donor
                taken.add(root)
    return assignment


def _donor(node, entry, position, assignment, shapes, dtypes, last_read, kept, taken) -> int | None:
    """The first input whose buffer ``entry`` may take, or None."""
    aliases: dict[NodeOutput, list[NodeOutput]] = {}
    for alias, root in assignment.storage.items():
        aliases.setdefault(root, []).append(alias)
    for donor, source in enumerate(node.inputs):
        root = assignment.root(source)
        if root not in assignment.first_def or root in taken:
            continue
        if shapes[source] != shapes[entry] or dtypes[source] != dtypes[entry]:
            continue
        family = [root, *aliases.get(root, [])]
        if any(member in kept for member in family):
            continue
        if any(last_read.get(member, -1) > position for member in family):
            continue
        return donor
    return None


def _last_reads(schedule: Sequence[Node]) -> dict[NodeOutput, int]:
    """The last schedule position that reads each entry."""
    last: dict[NodeOutput, int] = {}
    for position, node in enumerate(schedule):
        for entry in node.inputs:
            last[entry] = position
    return last


def lifetime_requests(
    assignment: BufferAssignment,
    owned: Sequence[NodeOutput],
    outputs: Sequence[NodeOutput],
    gradients: Sequence[NodeOutput],
    end: int,
    nbytes: Mapping[NodeOutput, int],
) -> list[BufferRequest]:
    """A request per owned buffer: from its definition to its last use, where the graph's
    ``outputs`` live forever (the user reads them after any pass) and ``gradients`` until
    the end of the schedule (they are copied out, or read by the optimizer, after it)."""
    last_use = dict(assignment.last_use)
    for entry in gradients:
        last_use[assignment.root(entry)] = end
    for entry in outputs:
        last_use[assignment.root(entry)] = FOREVER
    return [
        BufferRequest(entry, nbytes[entry], first, max(first, last_use.get(entry, first)))
        for entry in owned
        for first in (assignment.first_def[entry],)
    ]


def workspace_requests(workspace_bytes: Sequence[Sequence[int]]) -> list[BufferRequest]:
    """A request per workspace buffer of each scheduled kernel, alive at its position only."""
    return [
        BufferRequest(("ws", position, slot), size, position, position)
        for position, sizes in enumerate(workspace_bytes)
        for slot, size in enumerate(sizes)
    ]
