"""Sums, maxima and minima on the GPU: deterministic tree reductions in shared memory, no
atomics.

A reduction is read as (outer, length, inner) (``backend.reduction_layout``, the CPU's
layout): one block per output element (a grid-stride loop over them), whose threads each
sum a strided share of the ``length`` values in float64 (cast explicitly: under the
simulator a float32 added to a Python float stays float32, NumPy 2's rule), in a fixed order, then add their
partial sums pairwise in shared memory. The order depends only on the layout and the
block size, so a sum gives the same bits on every run. Sizes are run-time arguments: one
compiled kernel per dtype serves every shape.
"""

from __future__ import annotations

import math

import numpy as np

from graphc.backend.lowering import Kernel, NodeSpec, float_dtype, lowering
from graphc.backend.reduction_layout import reduction_layout, sum_to_like_axes
from graphc.backend.scalar_expr import pairwise_expression
from graphc.backend.source_cache import load_kernel
from graphc.codegen_cuda.device import cuda_module
from graphc.codegen_cuda.loops import grid_stride_launch, grid_stride_source
from graphc.codegen_cuda.memory import FILL
from graphc.codegen_cuda.target import MAX_BLOCKS, TARGET, THREADS, Launch
from graphc.ir.errors import BackendError
from graphc.ir.ops.reduce import reduced_axes

COMBINE = {
    "sum": ("0.0", "{into} += {value}"),
    "max": ("-math.inf", "if {value} > {into} or {value} != {value}:\n    {into} = {value}"),
    "min": ("math.inf", "if {value} < {into} or {value} != {value}:\n    {into} = {value}"),
}
"""Each reduction's start and how it takes a value into a partial result: a NaN wins a
maximum or minimum and stays (as NumPy's), so the tree's order cannot hide one."""


def _combine(kind: str, into: str, value: str, indent: str) -> str:
    statement = COMBINE[kind][1].format(into=into, value=value)
    return "".join(f"{indent}{line}\n" for line in statement.splitlines())


def _tree(kind: str) -> str:
    """The end of the kernels' loop over outputs: the threads' float64 partial results
    combined pairwise in shared memory, in the same order every run; thread 0 writes."""
    return (
        "        partial[t] = total\n"
        "        cuda.syncthreads()\n"
        "        half = THREADS // 2\n"
        "        while half > 0:\n"
        "            if t < half:\n"
        "                other = partial[t + half]\n"
        + _combine(kind, "partial[t]", "other", "                ")
        + "            cuda.syncthreads()\n"
        "            half //= 2\n"
        "        if t == 0:\n"
        "            out[position] = partial[0]\n"
        "        cuda.syncthreads()\n"
    )


def contiguous_source(kind: str) -> str:
    """Kernel reducing (outer, length, inner) data over ``length``."""
    return f"""import math

from numba import cuda, float64

THREADS = {THREADS}


@cuda.jit(cache=True)
def kernel(data, out, length, inner):
    partial = cuda.shared.array(THREADS, float64)
    t = cuda.threadIdx.x
    for position in range(cuda.blockIdx.x, out.size, cuda.gridDim.x):
        p = position // inner
        q = position - p * inner
        base = p * length * inner + q
        total = {COMBINE[kind][0]}
        for index in range(t, length, THREADS):
            value = float64(data[base + index * inner])
{_combine(kind, "total", "value", "            ")}{_tree(kind)}"""


def strided_source(kind: str) -> str:
    """Kernel reducing over axes that are not adjacent (see ``_strided_reduction``)."""
    return f"""import math

from numba import cuda, float64

THREADS = {THREADS}


@cuda.jit(cache=True)
def kernel(data, out, kept_dims, kept_strides, summed_dims, summed_strides, length):
    partial = cuda.shared.array(THREADS, float64)
    t = cuda.threadIdx.x
    for position in range(cuda.blockIdx.x, out.size, cuda.gridDim.x):
        rest = position
        base = 0
        for d in range(kept_dims.size - 1, -1, -1):
            base += (rest % kept_dims[d]) * kept_strides[d]
            rest //= kept_dims[d]
        total = {COMBINE[kind][0]}
        for index in range(t, length, THREADS):
            rest = index
            offset = base
            for d in range(summed_dims.size - 1, -1, -1):
                offset += (rest % summed_dims[d]) * summed_strides[d]
                rest //= summed_dims[d]
            value = float64(data[offset])
{_combine(kind, "total", "value", "            ")}{_tree(kind)}"""


def _strided_reduction(spec: NodeSpec, kind: str, shape: tuple, axes: tuple, layout) -> Kernel:
    """Reduced axes that are not adjacent: each output element's offset and each summed
    element's are unravelled over the kept and the summed axes (their dimensions and
    element strides copied to the device once, at bind)."""
    cuda = cuda_module()
    strides = [math.prod(shape[axis + 1 :]) for axis in range(len(shape))]
    kept = [axis for axis in range(len(shape)) if axis not in axes]
    tables = [
        cuda.to_device(np.array(values, dtype=np.int64).reshape(-1))
        for values in (
            [shape[a] for a in kept] or [1],
            [strides[a] for a in kept] or [0],
            [shape[a] for a in axes],
            [strides[a] for a in axes],
        )
    ]
    outputs = max(1, layout.outer)
    launch = Launch(
        load_kernel(strided_source(kind), "kernel", TARGET),
        (max(1, min(MAX_BLOCKS, outputs)),),
        (THREADS,),
    )

    def prepare(inputs, outputs_, workspace):
        data = inputs[0].reshape(max(1, math.prod(shape)))
        return (data, outputs_[0].reshape(outputs), *tables, np.int64(layout.length))

    return Kernel(fn=launch, name=f"cuda_{spec.op}_strided_tree", prepare=prepare)


def _reduction(spec: NodeSpec, axes: tuple[int, ...], kind: str = "sum") -> Kernel:
    float_dtype(spec)
    shape = tuple(spec.in_shapes[0])
    layout = reduction_layout(shape, axes)
    if kind != "sum" and layout.length == 0 and layout.outer * layout.inner:
        raise BackendError(f"{spec.name} ({spec.op}): a reduction over zero elements of {shape}")
    if layout.order is not None:
        return _strided_reduction(spec, kind, shape, tuple(sorted(axes)), layout)
    outputs = layout.outer * layout.inner
    launch = Launch(
        load_kernel(contiguous_source(kind), "kernel", TARGET),
        (max(1, min(MAX_BLOCKS, outputs)),),
        (THREADS,),
    )

    def prepare(inputs, outputs_, workspace):
        data = inputs[0].reshape(max(1, math.prod(shape)))
        out = outputs_[0].reshape(max(1, outputs))
        return (data, out, np.int64(layout.length), np.int64(layout.inner))

    return Kernel(fn=launch, name=f"cuda_{spec.op}_tree", prepare=prepare)


@lowering(TARGET, "sum")
def lower_sum(spec: NodeSpec) -> Kernel:
    return _reduction(spec, reduced_axes(spec.attrs["axis"], len(spec.in_shapes[0])))


@lowering(TARGET, "max", "min")
def lower_extremum(spec: NodeSpec) -> Kernel:
    axes = reduced_axes(spec.attrs["axis"], len(spec.in_shapes[0]))
    return _reduction(spec, axes, spec.op)


@lowering(TARGET, "sum_to_like")
def lower_sum_to_like(spec: NodeSpec) -> Kernel:
    """Sum over the axes broadcasting added; a view where nothing was broadcast."""
    if tuple(spec.in_shapes[0]) == tuple(spec.out_shapes[0]):
        return Kernel(fn=None, view_of=0, name="sum_to_like_identity")
    return _reduction(spec, sum_to_like_axes(spec.in_shapes[0], spec.in_shapes[1]))


@lowering(TARGET, "_size")
def lower_size(spec: NodeSpec) -> Kernel:
    """Writes the (shape-derived, constant) element count over ``axis``."""
    shape = spec.in_shapes[0]
    count = float(math.prod(shape[axis] for axis in reduced_axes(spec.attrs["axis"], len(shape))))
    dtype = float_dtype(spec)
    launch = Launch(load_kernel(FILL, "kernel", TARGET), (1,), (THREADS,))

    def prepare(inputs, outputs, workspace):
        return (outputs[0].reshape(1), dtype.type(count))

    return Kernel(fn=launch, name="cuda_size", prepare=prepare)


@lowering(TARGET, "add_n")
def lower_add_n(spec: NodeSpec) -> Kernel:
    """Element-wise sum of the inputs in float64, added pairwise in the CPU's order."""
    count = len(spec.in_shapes)
    names = [f"arg{k}" for k in range(count)]
    expression = pairwise_expression([f"float64({name}[flat])" for name in names])
    source = grid_stride_source([*names, "out"], "out.size", [f"out[flat] = {expression}"])
    elements = math.prod(spec.out_shapes[0])

    def prepare(inputs, outputs, workspace):
        return tuple(array.reshape(max(1, elements)) for array in (*inputs, *outputs))

    return Kernel(
        fn=grid_stride_launch(source, elements),
        name=f"cuda_add_n_{count}",
        source=source,
        prepare=prepare,
        elementwise=True,
    )
