"""The CUDA target: what this backend gives the runtime through the seam
(``graphc.backend.target``)."""

from __future__ import annotations

from graphc.backend.target import Target
from graphc.codegen_cuda import conv  # noqa: F401 - its GEMM ops, before GEMM_OPS is read
from graphc.codegen_cuda.device import require_device
from graphc.codegen_cuda.gemm import GEMM_OPS
from graphc.codegen_cuda.memory import DEVICE_ARRAYS, allocate_arena
from graphc.codegen_cuda.optimizer_updates import update_kernel
from graphc.codegen_cuda.sequence import call, compile_sequence
from graphc.codegen_cuda.target import TARGET
from graphc.ir.ops.fused import ANCHOR_OPS
from graphc.passes.fuse import FusionCapabilities

CUDA = Target(
    name=TARGET,
    device_type="gpu",
    # The ops the tiled GEMM computes may lead a group, whose elementwise members then run
    # in the GEMM's store (fused.lower_epilogue); reductions belong in a tree, which a fused
    # loop here does not do yet.
    fusion=FusionCapabilities(epilogue_anchors=ANCHOR_OPS & frozenset(GEMM_OPS), reductions=False),
    allocate_arena=allocate_arena,
    compile_sequence=compile_sequence,
    call=call,
    compile_training_loop=None,
    arrays=DEVICE_ARRAYS,
    require=require_device,
    update_kernel=update_kernel,
)
