"""The CUDA target: what this backend gives the runtime through the seam
(``graphc.backend.target``)."""

from __future__ import annotations

from graphc.backend.target import Target
from graphc.codegen_cuda.device import require_device
from graphc.codegen_cuda.memory import DEVICE_ARRAYS, allocate_arena
from graphc.codegen_cuda.optimizer_updates import update_kernel
from graphc.codegen_cuda.sequence import call, compile_sequence
from graphc.codegen_cuda.target import TARGET
from graphc.passes.fuse import FusionCapabilities

CUDA = Target(
    name=TARGET,
    device_type="gpu",
    # Elementwise groups only, for now: the CPU fuses an epilogue by calling the anchor's
    # kernel first inside its own; on the GPU an epilogue belongs inside the GEMM's kernel
    # and a reduction inside a tree, which these kernels do not do yet.
    fusion=FusionCapabilities(epilogue_anchors=frozenset(), reductions=False),
    allocate_arena=allocate_arena,
    compile_sequence=compile_sequence,
    call=call,
    compile_training_loop=None,
    arrays=DEVICE_ARRAYS,
    require=require_device,
    update_kernel=update_kernel,
)
