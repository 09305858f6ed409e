"""The CPU target: what this backend gives the runtime through the seam
(``graphc.backend.target``)."""

from __future__ import annotations

from functools import partial

import numpy as np

from graphc.backend.target import Target
from graphc.codegen_cpu.numba_cache import call_repairing
from graphc.codegen_cpu.sequence import compile_sequence
from graphc.codegen_cpu.threads import bind_options, call_partitioned
from graphc.codegen_cpu.train_loop import compile_training_loop
from graphc.ir.ops.fused import ANCHOR_OPS
from graphc.passes.fuse import FusionCapabilities
from graphc.passes.memory_plan import ALIGN

TARGET = "cpu"


def allocate_arena(nbytes: int) -> np.ndarray:
    """One allocation of ``nbytes`` bytes whose start is aligned as the plan's offsets are."""
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start : start + nbytes]


CPU = Target(
    name=TARGET,
    device_type="cpu",
    # Every anchor: the CPU's fused kernel calls the anchor's own kernel, then its loop.
    fusion=FusionCapabilities(epilogue_anchors=ANCHOR_OPS, reductions=True),
    allocate_arena=allocate_arena,
    compile_sequence=compile_sequence,
    call=partial(call_partitioned, call_repairing),
    compile_training_loop=compile_training_loop,
    bind_options=bind_options,
)
