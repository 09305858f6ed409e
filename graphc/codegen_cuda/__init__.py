"""The CUDA backend (issue [cuda], in progress): numba-cuda kernels lowered through the same
seam as the CPU's (``graphc.backend.lowering``), tested under Numba's CUDA simulator.

numba-cuda (the optional extra ``graphc[cuda]``) is imported when a kernel is lowered, and
nothing outside this package imports it, so a CPU-only install never loads a CUDA library. What is here
so far: the lowerings of the elementwise ops, ``FullyConnected`` and ``dot`` (a
shared-memory tiled GEMM with register blocking) and the sums (deterministic tree
reductions in shared memory), each tested against the NumPy reference forward and
backward (``tests/test_cuda_kernels.py``). Not yet: the device arena and a ``gc.gpu()``
bind (the runtime still binds NumPy arrays only), convolution, pooling, the LSTM, the loss
heads, the optimizers, the training loop and CUDA graphs.
"""

from graphc.codegen_cuda import elementwise, gemm, reduce  # noqa: F401 - register lowerings
