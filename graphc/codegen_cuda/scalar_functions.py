"""Device functions the generated CUDA kernels' expressions call (``fused.CUDA_SPELLINGS``):
the CUDA spellings of the CPU's checked helpers (``codegen_cpu.scalar_functions``)."""

from __future__ import annotations

import math

from numba import cuda


@cuda.jit(device=True)
def one_hot_at(fault, flat, index, position, extent):
    """1.0 where ``index`` equals ``position``, else 0.0; an index that is not an integer
    in [0, extent) records ``flat`` in ``fault`` (``faults.py``) and reads as 0.0."""
    if not (index >= 0 and index < extent) or index != math.floor(index):
        cuda.atomic.min(fault, 0, flat)
        return 0.0
    return 1.0 if index == position else 0.0
