"""Pooling on the GPU: max and average forward, and their gradients, one thread per output
element (a grid-stride loop), with the window geometry from the op's definition
(``graphc/ir/ops/pool.py``) as constants of the generated source and the batch read from
the arrays at run time.

Max pooling keeps, as the reference does, the first winner of each window in row-major
order over the input cells it covers (padding never wins; a NaN wins its window) and
writes its flat index in the plane to ``argmax``. Both gradients are gathers: each input
cell sums, in a fixed order, what the windows that cover it send it, so no two threads add
into one cell and no atomics are needed: the same bits on every run.
"""

from __future__ import annotations

import math

from graphc.backend.lowering import Kernel, NodeSpec, float_dtype, lowering
from graphc.backend.source_cache import load_kernel
from graphc.codegen_cuda.target import TARGET, THREADS, Launch, blocks_for
from graphc.ir.ops.pool import _geometry as pool_geometry

HEADER = """import math

from numba import cuda, float64

H, W = {H}, {W}
OH, OW = {OH}, {OW}
KH, KW, SH, SW, PH, PW = {KH}, {KW}, {SH}, {SW}, {PH}, {PW}
INCLUDE_PAD = {include_pad}


@cuda.jit(device=True, inline="always")
def window_start(index, stride, pad):
    return index * stride - pad


@cuda.jit(device=True, inline="always")
def counted(first, kernel, size, pad, include_pad):
    # The cells of a window along one axis that an average divides by, as MXNet counts:
    # with padding the window clipped to the padded input, else the input cells it covers.
    low = -pad if include_pad else 0
    high = size + pad if include_pad else size
    return min(first + kernel, high) - max(first, low)


@cuda.jit(device=True, inline="always")
def covering(cell, kernel, stride, pad, outputs):
    # The windows along one axis whose span holds input cell ``cell``: [first, last).
    first = max(0, (cell + pad - kernel) // stride + 1)
    last = min(outputs, (cell + pad) // stride + 1)
    return first, last
"""

WINDOW = """    for flat in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        plane = flat // (OH * OW)
        rest = flat - plane * (OH * OW)
        oh = rest // OW
        ow = rest - oh * OW
        top = window_start(oh, SH, PH)
        left = window_start(ow, SW, PW)
"""
"""A forward kernel's loop head: one output element ``rest`` of ``plane`` per thread, and
where its window starts."""

CELL = """    for flat in range(cuda.grid(1), dx.size, cuda.gridsize(1)):
        plane = flat // (H * W)
        cell = flat - plane * (H * W)
        y = cell // W
        x_ = cell - y * W
        first_h, last_h = covering(y, KH, SH, PH, OH)
        first_w, last_w = covering(x_, KW, SW, PW, OW)
        total = 0.0
"""
"""A gradient kernel's loop head: one input cell per thread, and the windows that cover it."""

MAX_FORWARD = (
    """

@cuda.jit(cache=True)
def kernel(x, out, argmax):
"""
    + WINDOW
    + """        best = -math.inf
        winner = -1
        for y in range(max(top, 0), min(top + KH, H)):
            for x_ in range(max(left, 0), min(left + KW, W)):
                value = x[plane, y * W + x_]
                if winner < 0 or value > best or (value != value and best == best):
                    best = value
                    winner = y * W + x_
        out[plane, rest] = best
        argmax[plane, rest] = winner
"""
)

AVG_FORWARD = (
    """

@cuda.jit(cache=True)
def kernel(x, out):
"""
    + WINDOW
    + """        total = 0.0
        for y in range(max(top, 0), min(top + KH, H)):
            for x_ in range(max(left, 0), min(left + KW, W)):
                total += float64(x[plane, y * W + x_])
        count = counted(top, KH, H, PH, INCLUDE_PAD) * counted(left, KW, W, PW, INCLUDE_PAD)
        out[plane, rest] = total / count
"""
)

MAX_BACKWARD = (
    """

@cuda.jit(cache=True)
def kernel(dy, argmax, dx):
"""
    + CELL
    + """        for oh in range(first_h, last_h):
            for ow in range(first_w, last_w):
                if argmax[plane, oh * OW + ow] == cell:
                    total += float64(dy[plane, oh * OW + ow])
        dx[plane, cell] = total
"""
)

AVG_BACKWARD = (
    """

@cuda.jit(cache=True)
def kernel(dy, dx):
"""
    + CELL
    + """        for oh in range(first_h, last_h):
            top = window_start(oh, SH, PH)
            for ow in range(first_w, last_w):
                left = window_start(ow, SW, PW)
                count = counted(top, KH, H, PH, INCLUDE_PAD) * counted(
                    left, KW, W, PW, INCLUDE_PAD
                )
                total += float64(dy[plane, oh * OW + ow]) / count
        dx[plane, cell] = total
"""
)


def _launch(spec: NodeSpec, data_shape: tuple, body: str, elements: int) -> tuple[Launch, str]:
    geometry = pool_geometry(spec.attrs, data_shape)
    (kh, kw), (sh, sw), (ph, pw) = geometry.kernel, geometry.stride, geometry.pad
    source = (
        HEADER.format(
            H=geometry.in_hw[0],
            W=geometry.in_hw[1],
            OH=geometry.out_hw[0],
            OW=geometry.out_hw[1],
            KH=kh,
            KW=kw,
            SH=sh,
            SW=sw,
            PH=ph,
            PW=pw,
            include_pad=bool(spec.attrs["count_include_pad"]),
        )  # fmt: skip
        + body
    )
    launch = Launch(load_kernel(source, "kernel", TARGET), (blocks_for(elements),), (THREADS,))
    return launch, source


def _planes(array, shape: tuple):
    """(N*C, H*W) view of an NCHW array."""
    return array.reshape(max(1, shape[0] * shape[1]), max(1, shape[2] * shape[3]))


@lowering(TARGET, "Pooling")
def lower_pooling(spec: NodeSpec) -> Kernel:
    float_dtype(spec)
    data_shape, out_shape = spec.in_shapes[0], spec.out_shapes[0]
    is_max = spec.attrs["pool_type"] == "max"
    body = MAX_FORWARD if is_max else AVG_FORWARD
    launch, source = _launch(spec, data_shape, body, math.prod(out_shape))

    def prepare(inputs, outputs, workspace):
        arrays = [_planes(inputs[0], data_shape)]
        arrays += [_planes(output, out_shape) for output in outputs]
        return tuple(arrays)

    return Kernel(
        fn=launch, name=f"cuda_{spec.attrs['pool_type']}_pool", prepare=prepare, source=source
    )


@lowering(TARGET, "_max_pool_backward")
def lower_max_pool_backward(spec: NodeSpec) -> Kernel:
    float_dtype(spec)
    dy_shape, _, data_shape = spec.in_shapes
    launch, source = _launch(spec, data_shape, MAX_BACKWARD, math.prod(data_shape))

    def prepare(inputs, outputs, workspace):
        dy, argmax = (_planes(array, dy_shape) for array in inputs[:2])
        return (dy, argmax, _planes(outputs[0], data_shape))

    return Kernel(fn=launch, name="cuda_max_pool_backward", prepare=prepare, source=source)


@lowering(TARGET, "_avg_pool_backward")
def lower_avg_pool_backward(spec: NodeSpec) -> Kernel:
    float_dtype(spec)
    dy_shape, data_shape = spec.in_shapes
    launch, source = _launch(spec, data_shape, AVG_BACKWARD, math.prod(data_shape))

    def prepare(inputs, outputs, workspace):
        return (_planes(inputs[0], dy_shape), _planes(outputs[0], data_shape))

    return Kernel(fn=launch, name="cuda_avg_pool_backward", prepare=prepare, source=source)
