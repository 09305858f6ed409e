"""The CPU backend: every op lowered to a Numba kernel. Importing this registers them all."""

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
from graphc.codegen_cpu.lowering import LOWERINGS, Kernel, NodeSpec, lower
