"""Kernels by node signature: each distinct (op, attributes, shapes, dtypes, options) is
lowered once per process; the compiled code itself is cached on disk by Numba."""

from __future__ import annotations

from graphc.codegen_cpu.lowering import Kernel, NodeSpec, lower

_KERNELS: dict[tuple, Kernel] = {}


def spec_key(spec: NodeSpec) -> tuple:
    return (
        spec.op,
        tuple(sorted((key, repr(value)) for key, value in spec.attrs.items())),
        spec.in_shapes,
        tuple(str(dtype) for dtype in spec.in_dtypes),
        spec.out_shapes,
        tuple(str(dtype) for dtype in spec.out_dtypes),
        tuple(sorted((key, repr(value)) for key, value in spec.options.items())),
    )


def kernel_for(spec: NodeSpec) -> Kernel:
    """The kernel for a node, from the in-process cache or freshly lowered."""
    key = spec_key(spec)
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = lower(spec)
        _KERNELS[key] = kernel
    return kernel


def cached_kernel_count() -> int:
    return len(_KERNELS)
