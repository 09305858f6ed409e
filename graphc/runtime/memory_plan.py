"""The memory plan of a bound graph: which block of memory holds each intermediate.

Buffers live from the step that writes them to the last step that reads them. Walking the
schedule in order, a buffer takes the smallest free block that fits it (best fit, sizes
rounded up to 64 bytes) and gives the block back after its last reader, so buffers whose
lifetimes do not overlap share memory. Views (reshapes) share their base's block and extend
its lifetime. The plan is fixed at bind: a step allocates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ALIGN = 64
FOREVER = 1 << 62


def round_up(nbytes: int) -> int:
    return max(ALIGN, -(-nbytes // ALIGN) * ALIGN)


@dataclass
class BufferRequest:
    """A buffer one step writes: its size, and the steps that define and last read it."""

    key: object
    nbytes: int
    first: int
    last: int


@dataclass
class MemoryPlan:
    """Blocks (their sizes) and the block of every requested buffer."""

    block_sizes: list[int] = field(default_factory=list)
    assignment: dict = field(default_factory=dict)
    lifetimes: dict = field(default_factory=dict)
    requested_bytes: int = 0

    @property
    def planned_peak_bytes(self) -> int:
        return sum(self.block_sizes)

    def allocate(self) -> list[np.ndarray]:
        return [np.empty(size, dtype=np.uint8) for size in self.block_sizes]


def plan_memory(requests: list[BufferRequest]) -> MemoryPlan:
    """Assign blocks to buffers so that no two buffers alive at the same step share one."""
    plan = MemoryPlan()
    free: list[int] = []
    releases: dict[int, list[int]] = {}
    by_step: dict[int, list[BufferRequest]] = {}
    for request in requests:
        by_step.setdefault(request.first, []).append(request)
    for step in sorted(by_step):
        for block in _due(releases, step):
            free.append(block)
        for request in by_step[step]:
            size = round_up(request.nbytes)
            plan.requested_bytes += size
            block = _best_fit(free, plan.block_sizes, size)
            if block is None:
                block = len(plan.block_sizes)
                plan.block_sizes.append(size)
            plan.assignment[request.key] = block
            plan.lifetimes[request.key] = (request.first, request.last)
            releases.setdefault(request.last, []).append(block)
    return plan


def _due(releases: dict[int, list[int]], step: int) -> list[int]:
    """Blocks whose last reader ran before ``step``."""
    due = []
    for last in [key for key in releases if key < step]:
        due.extend(releases.pop(last))
    return due


def _best_fit(free: list[int], sizes: list[int], size: int) -> int | None:
    candidates = [block for block in free if sizes[block] >= size]
    if not candidates:
        return None
    block = min(candidates, key=lambda b: sizes[b])
    free.remove(block)
    return block
