"""Device memory: the arena, the arrays ``simple_bind`` makes, and the copies the runtime
asks for (``backend.target.ArrayOps``), on numba-cuda's device arrays.

Arrays are numba-cuda ``DeviceNDArray``s (``__cuda_array_interface__``, ``copy_to_host()``;
under the simulator Numba's stand-ins for them). ``add`` and ``fill`` are small grid-stride
kernels, so that ``grad_req='add'`` and the head gradients' ones never leave the device.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from graphc.backend.source_cache import load_kernel
from graphc.backend.target import ArrayOps
from graphc.codegen_cuda.device import cuda_module
from graphc.codegen_cuda.target import TARGET, THREADS, blocks_for

ADD = """from numba import cuda


@cuda.jit(cache=True)
def kernel(destination, source):
    for i in range(cuda.grid(1), destination.size, cuda.gridsize(1)):
        destination[i] += source[i]
"""

NONFINITE = """import math

from numba import cuda


@cuda.jit(cache=True)
def kernel(values, flags, slot):
    for i in range(cuda.grid(1), values.size, cuda.gridsize(1)):
        if not math.isfinite(values[i]):
            flags[slot] = 1
"""
"""Marks ``flags[slot]`` when any value is NaN or infinite (every writer writes 1: no
order matters)."""

FILL = """from numba import cuda


@cuda.jit(cache=True)
def kernel(destination, value):
    for i in range(cuda.grid(1), destination.size, cuda.gridsize(1)):
        destination[i] = value
"""


@cache
def _kernel(source: str):
    return load_kernel(source, "kernel", TARGET)


def is_device_array(array) -> bool:
    """Whether ``array`` is a C-contiguous numba-cuda device array (or, under the
    simulator, its stand-in, since the simulator has no ``is_cuda_array``)."""
    cuda = cuda_module()
    is_cuda_array = getattr(cuda, "is_cuda_array", None)
    if is_cuda_array is not None:
        found = is_cuda_array(array)
    else:
        found = type(array).__name__ == "FakeCUDAArray"
    return bool(found and hasattr(array, "is_c_contiguous") and array.is_c_contiguous())


def _flat(array):
    return array.reshape(max(1, math.prod(array.shape)))


def allocate_arena(nbytes: int):
    """One device allocation of ``nbytes`` bytes (at least one): the memory plan's arena.
    CUDA allocations are aligned to 256 bytes, more than the plan's 64."""
    cuda = cuda_module()
    try:
        return cuda.device_array(max(1, nbytes), dtype=np.uint8)
    except Exception as error:  # numba-cuda raises CudaAPIError for out of memory
        if "OUT_OF_MEMORY" in str(error) or "out of memory" in str(error).lower():
            raise MemoryError(str(error)) from error
        raise


def zeros(shape: tuple, dtype) -> object:
    array = cuda_module().device_array(tuple(shape), dtype=np.dtype(dtype))
    fill(array, 0)
    return array


def fill(destination, value) -> None:
    if not math.prod(destination.shape):
        return
    flat = _flat(destination)
    _kernel(FILL)[blocks_for(flat.size), THREADS](flat, destination.dtype.type(value))


def copy(destination, source) -> None:
    """``destination[...] = source`` from the host or from the device."""
    if not math.prod(destination.shape):
        return
    if isinstance(source, np.ndarray) or np.isscalar(source):
        source = np.ascontiguousarray(source, dtype=destination.dtype).reshape(destination.shape)
    destination.copy_to_device(source)


def add(destination, source) -> None:
    if not math.prod(destination.shape):
        return
    flat = _flat(destination)
    _kernel(ADD)[blocks_for(flat.size), THREADS](flat, _flat(source))


def nonfinite(arrays) -> list[bool]:
    """For each array, whether it holds a NaN or an infinity: one launch per array into one
    device vector of flags, then one copy to the host (one wait, not one per array)."""
    cuda = cuda_module()
    flags = cuda.to_device(np.zeros(max(1, len(arrays)), dtype=np.int32))
    for slot, array in enumerate(arrays):
        if math.prod(array.shape):
            flat = _flat(array)
            _kernel(NONFINITE)[blocks_for(flat.size), THREADS](flat, flags, slot)
    return [bool(flag) for flag in flags.copy_to_host()[: len(arrays)]]


def to_host(array) -> np.ndarray:
    if isinstance(array, np.ndarray):
        return array
    return array.copy_to_host()


DEVICE_ARRAYS = ArrayOps(
    zeros=zeros,
    copy=copy,
    add=add,
    fill=fill,
    to_host=to_host,
    owns=is_device_array,
    nonfinite=nonfinite,
)
