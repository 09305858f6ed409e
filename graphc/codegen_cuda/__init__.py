"""The CUDA backend: numba-cuda kernels lowered through the same seam as the CPU's
(``graphc.backend.lowering``) and the target ``gc.gpu()`` binds through
(``gpu_target.py``), tested under Numba's CUDA simulator.

numba-cuda (the optional extra ``graphc[cuda]``) is imported when a kernel is lowered or a
device array made, and nothing outside this package imports it, so a CPU-only program never
loads a CUDA library. Lowered so far: the elementwise ops and fused elementwise groups
(``fused.py``), ``FullyConnected`` and ``dot`` (a shared-memory tiled GEMM with register
blocking, ``gemm.py``), the sums (deterministic tree reductions, ``reduce.py``), the loss
heads (``softmax_loss.py``) and reshapes. The runtime binds on the device: one device arena
laid out by the memory plan, parameters and gradients as device arrays, one launch per
kernel (``sequence.py``). Not yet: convolution, pooling, the LSTM, Embedding, the
optimizers on the device (``Model.fit``), epilogue fusion and CUDA graphs.
"""

from graphc.backend.target import register_target
from graphc.codegen_cuda import (  # noqa: F401 - each registers its lowerings
    conv,
    fused,
    gemm,
    indexing,
    lstm,
    pool,
    reduce,
    shape_ops,
    softmax_loss,
)
from graphc.codegen_cuda.gpu_target import CUDA

register_target(CUDA)
