"""The CUDA target's name in the lowering table, and how its kernels are launched.

A lowering gives the runtime a :class:`Launch`: the kernel with its grid and block fixed
at bind from the node's shapes (numba-cuda's ``kernel[grid, block]`` configures a launch;
doing it once keeps that out of every step).
"""

from __future__ import annotations

from dataclasses import dataclass

from graphc.codegen_cuda.device import simulated

TARGET = "cuda"

SIMULATED = simulated()
"""Numba's simulator runs a Python thread per CUDA thread: under it the same kernels are
generated with smaller blocks, so that the tests of every lowering run in minutes."""

THREADS = 32 if SIMULATED else 256
"""Threads per block of the elementwise and reduction kernels (a power of two)."""

MAX_BLOCKS = 4096
"""The most blocks an elementwise kernel launches; a grid-stride loop covers the rest."""


def blocks_for(elements: int, threads: int = THREADS) -> int:
    """Blocks of ``threads`` that cover ``elements`` (at least 1, at most MAX_BLOCKS)."""
    return max(1, min(MAX_BLOCKS, -(-elements // threads)))


@dataclass(frozen=True)
class Launch:
    """``kernel[grid, block](*args)``, configured once."""

    kernel: object
    grid: tuple
    block: tuple

    def __post_init__(self) -> None:
        object.__setattr__(self, "_configured", self.kernel[self.grid, self.block])

    def __call__(self, *args) -> None:
        self._configured(*args)
