"""Run one node's CUDA kernel as the runtime will, on device arrays, beside the reference.

The inputs are copied to the device, the outputs start as poisoned device arrays (NaN for
floats), the kernel is called on what its ``prepare`` makes of them, and the outputs come
back to the host. Under ``NUMBA_ENABLE_CUDASIM=1`` (tests/conftest.py) the device is Numba's
simulator.
"""

from __future__ import annotations

import numpy as np
from cpu_helpers import poisoned

import graphc.codegen_cuda  # noqa: F401 - registers the CUDA lowerings
from graphc.backend.lowering import LOWERINGS, NodeSpec, lower
from graphc.codegen_cuda.device import cuda_module


def has_cuda_lowering(op: str) -> bool:
    return ("cuda", op) in LOWERINGS


def call_cuda_kernel(
    spec: NodeSpec, inputs, training: bool = True, counter: int = 0
) -> list[np.ndarray]:
    """The outputs of ``spec``'s CUDA kernel on the host arrays ``inputs``; a kernel that
    takes the Dropout counter and the training flag gets ``counter`` and ``training``."""
    cuda = cuda_module()
    kernel = lower(spec, "cuda")
    if kernel.view_of is not None:  # the runtime binds a view and runs nothing
        return [np.asarray(inputs[kernel.view_of]).reshape(spec.out_shapes[0])]
    device_inputs = [cuda.to_device(np.ascontiguousarray(array)) for array in inputs]
    device_outputs = [
        cuda.to_device(poisoned(shape, dtype))
        for shape, dtype in zip(spec.out_shapes, spec.out_dtypes)
    ]
    workspace = [cuda.to_device(poisoned(shape, dtype)) for shape, dtype in kernel.workspace]
    arguments = kernel.arguments(tuple(device_inputs), tuple(device_outputs), tuple(workspace))
    if kernel.needs_counter:
        arguments = (*arguments, counter, training)
    kernel.fn(*arguments)
    cuda.synchronize()
    return [array.copy_to_host() for array in device_outputs]
