"""The CUDA target's name in the lowering table, and how its kernels are launched.

A lowering gives the runtime a :class:`Launch`: the kernel with its grid and block fixed
at bind from the node's shapes (numba-cuda's ``kernel[grid, block]`` configures a launch;
doing it once keeps that out of every step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from graphc.codegen_cuda.device import simulated

TARGET = "cuda"

SIMULATED = simulated()
"""Numba's simulator runs a Python thread per CUDA thread, and starting them is most of its
time: under it the same kernels are generated with small blocks and grids, so that the
tests of every lowering run in minutes and every grid-stride loop runs more than once."""

THREADS = 8 if SIMULATED else 256
"""Threads per block of the elementwise and reduction kernels (a power of two)."""

MAX_BLOCKS = 4 if SIMULATED else 4096
"""The most blocks a grid-stride kernel launches; its loop covers the rest."""


def blocks_for(elements: int, threads: int = THREADS) -> int:
    """Blocks of ``threads`` that cover ``elements`` (at least 1, at most MAX_BLOCKS)."""
    return max(1, min(MAX_BLOCKS, -(-elements // threads)))


@dataclass(frozen=True)
class Launch:
    """``kernel[grid, block](*args)``, configured once; then ``check(args)``, when given,
    which reads back what the kernel found wrong in its data and raises (``faults.py``)."""

    kernel: object
    grid: tuple
    block: tuple
    check: Callable[[tuple], None] | None = None

    def __post_init__(self) -> None:
        if not SIMULATED:
            object.__setattr__(self, "_configured", self.kernel[self.grid, self.block])

    def __call__(self, *args) -> None:
        if SIMULATED:
            # The simulator's kernel[grid, block] sets the grid on the kernel itself and
            # returns it, so a configuration kept from bind would take the grid of whichever
            # launch of the same kernel was configured last (a smaller batch's GEMM would
            # leave tiles unwritten): configure at every call there.
            self.kernel[self.grid, self.block](*args)
        else:
            self._configured(*args)
        if self.check is not None:
            self.check(args)
