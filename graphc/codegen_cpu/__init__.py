"""The CPU backend: every op lowered to a Numba kernel. Importing this registers the
lowerings and the CPU target."""

from graphc.backend.target import register_target
from graphc.codegen_cpu import (  # noqa: F401 - imported to register the lowerings
    conv,
    elementwise,
    fused,
    gemm,
    indexing,
    lstm,
    pool,
    reduce,
    shape_ops,
    softmax_loss,
)
from graphc.codegen_cpu.target import CPU

register_target(CPU)
