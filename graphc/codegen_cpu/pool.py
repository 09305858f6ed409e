"""CPU kernels for ``Pooling`` (max and average) and its gradient primitives.

What the ops compute is defined by their NumPy references in ``graphc/ir/ops/pool.py``, and
the window geometry (global pooling, 'full' windows, padding) comes from that module's
``_geometry``, so these kernels only loop. Window (h', w') covers input rows
``h'*sh - ph ... h'*sh - ph + kh - 1``, clipped to the input; only input cells take part in
a max or a sum, and the average divides by the count MXNet uses:

- ``count_include_pad``: the window clipped to the padded input (a 'full' window hanging
  past the padding counts only what lies inside it);
- otherwise: the input cells the window covers.

Max pooling keeps the first largest cell in row-major window order, or the first NaN, and
writes its flat index ``h*W + w`` to the int32 ``argmax`` output, so its gradient is a
scatter of ``dy`` by ``argmax``. The average gradient spreads each ``dy / count`` over its
window. All are ``numba.njit(cache=True)`` at module level, compiled once per dtype and
layout; as in ``conv.py``, the geometry reaches them as a tuple of ints bound at bind,
``(kh, kw, sh, sw, ph, pw, count_include_pad)``. Max pooling has a kernel for 2x2 windows,
one for 3x3 and one for any other size (``MAX_POOLING``), chosen at bind.
"""

from __future__ import annotations

import inspect
import math

import numba

from graphc.backend.lowering import Kernel, NodeSpec, float_dtype, lowering
from graphc.codegen_cpu.blas import row_range
from graphc.codegen_cpu.parts import (
    frame_arguments,
    part_frame,
    parts_call,
    parts_cell,
    run_parts,
)
from graphc.codegen_cpu.target import TARGET
from graphc.codegen_cpu.threads import parallel_parts
from graphc.ir.ops.pool import _geometry as pool_geometry

# Window loops index with unsigned integers (``_u``, non-negative by construction): with
# signed ones Numba adds a wraparound select to every access. As in ``conv.py``.
_u = numba.uint64


@numba.njit(cache=True)
def _window(out_index, kernel, stride, pad, size):
    """The input cells [low, high) window ``out_index`` covers along one axis, and how many
    cells of the padded input it covers (the divisor with ``count_include_pad``)."""
    start = out_index * stride - pad
    end = start + kernel
    padded_count = min(end, size + pad) - start
    return max(start, 0), min(end, size), padded_count


@numba.njit(cache=True)
def _first_nan(data, n, c, h_low, h_high, w_low, w_high):
    """The flat index of the first NaN of a window of plane (n, c) in row-major order."""
    for h in range(h_low, h_high):
        for w in range(w_low, w_high):
            if data[n, c, _u(h), _u(w)] != data[n, c, _u(h), _u(w)]:
                return h * data.shape[3] + w
    return -1


# Each kernel splits the (n, c) planes into ``parts`` ranges, one per thread of the shared
# parallel loop (``parts.run_parts``, calling the kernel's part function; ``threads.py``);
# the parts write disjoint planes, so the split changes no bits. ``parts`` is the
# descriptor's last entry. The loops index a plane in place (``data[n, c, h, w]``) rather
# than through a view of it (``data[n, c]``): each view counts a reference on the array,
# and two threads counting on one array plane after plane contend for its cache line
# (LeNet's pool2, 8x8 planes, 2 threads: 0.34 ms with views, 0.10 ms without).


@numba.njit(cache=True)
def _max_window(data, n, c, h_low, h_high, w_low, w_high):
    """The max of window [h_low, h_high) x [w_low, w_high) of plane (n, c) and its flat
    index: the first largest cell in row-major order, or the first NaN."""
    width = data.shape[3]
    best = data[n, c, _u(h_low), _u(w_low)]
    best_index = h_low * width + w_low
    nan_seen = False
    # Branch-free: a NaN test inside the comparison made the loop branchy and 3-5x slower.
    for h in range(h_low, h_high):
        for w in range(w_low, w_high):
            value = data[n, c, _u(h), _u(w)]
            nan_seen |= value != value
            wins = value > best
            best = value if wins else best
            best_index = h * width + w if wins else best_index
    if nan_seen:
        # np.max propagates NaN, so the first NaN is the window's winner.
        best_index = _first_nan(data, n, c, h_low, h_high, w_low, w_high)
        best = data[n, c, _u(best_index // width), _u(best_index % width)]
    return best, best_index


@numba.njit(inline="always")
def _max_full_window(data, n, c, h_low, w_low, kernel_h, kernel_w):
    """The max of a window wholly inside the plane, its flat index, and whether it met a
    NaN (the caller then asks ``_max_window``). The window's size is the loop bounds:
    inlined where it is a constant, the loops unroll. Calling ``_first_nan`` from here
    instead of the caller made LeNet's pool1 six times slower."""
    width = data.shape[3]
    best = data[n, c, _u(h_low), _u(w_low)]
    best_index = h_low * width + w_low
    nan_seen = False
    for dh in range(kernel_h):
        for dw in range(kernel_w):
            value = data[n, c, _u(h_low + dh), _u(w_low + dw)]
            nan_seen |= value != value
            wins = value > best
            best = value if wins else best
            best_index = (h_low + dh) * width + w_low + dw if wins else best_index
    return best, best_index, nan_seen


@numba.njit(cache=True)
def _inner_columns(out_w, kernel, stride, pad, size):
    """The output columns [first, last) whose windows lie wholly inside the input."""
    first = min((pad + stride - 1) // stride, out_w)
    last = (size + pad - kernel) // stride + 1 if size + pad >= kernel else 0
    return first, max(min(last, out_w), first)


@numba.njit(inline="always")
def _max_planes_sized(data, out, argmax, descriptor, first, last, kernel_h, kernel_w):
    stride_h, stride_w, pad_h, pad_w = descriptor[2:6]
    channels, height, width = data.shape[1], data.shape[2], data.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    inner_first, inner_last = _inner_columns(out_w, kernel_w, stride_w, pad_w, width)
    for index in range(first, last):
        n, c = divmod(index, channels)
        for oh in range(out_h):
            h_low, h_high, _ = _window(oh, kernel_h, stride_h, pad_h, height)
            full_first, full_last = inner_first, inner_last
            if h_high - h_low != kernel_h:
                full_first = full_last = 0  # a clipped row of windows: all by _max_window
            # The full windows first, then the clipped ones at the edges.
            for ow in range(full_first, full_last):
                w_low = ow * stride_w - pad_w
                best, best_index, nan_seen = _max_full_window(
                    data, n, c, h_low, w_low, kernel_h, kernel_w
                )
                if nan_seen:
                    best, best_index = _max_window(
                        data, n, c, h_low, h_low + kernel_h, w_low, w_low + kernel_w
                    )
                out[n, c, _u(oh), _u(ow)] = best
                argmax[n, c, _u(oh), _u(ow)] = best_index
            for ow in range(out_w):
                if full_first <= ow < full_last:
                    continue
                w_low, w_high, _ = _window(ow, kernel_w, stride_w, pad_w, width)
                best, best_index = _max_window(data, n, c, h_low, h_high, w_low, w_high)
                out[n, c, _u(oh), _u(ow)] = best
                argmax[n, c, _u(oh), _u(ow)] = best_index


# The common window sizes get kernels of their own, with constant loop bounds, which
# unroll: LeNet's 2x2 pool1 on one core, 1.8 ms window by window, 0.8 ms so. They are
# separate kernels, chosen at bind, rather than branches of one: a kernel holding all three
# copies cost every model the compile of all three (2 s of a cold LeNet start).


@numba.njit(cache=True)
def _max_planes(data, out, argmax, descriptor, first, last):
    kernel_h, kernel_w = descriptor[0], descriptor[1]
    _max_planes_sized(data, out, argmax, descriptor, first, last, kernel_h, kernel_w)


@numba.njit(inline="always")
def _max_planes_2x2_tiled(data, out, argmax, first, last):
    """2x2 windows at stride 2, no padding, every window inside the input: the four cells
    read directly, with the same first-largest and first-NaN rule as ``_max_window``
    (LeNet's pool1 on one core: 0.78 ms by the general loop, 0.56 ms so).

    A row of windows is one loop without a branch: a NaN is only noted, and the row done
    again window by window when one was seen. The NaN test branching inside the loop kept
    it scalar (pool1, the batch of 100 on one core: 0.75 ms so, 0.44 ms a row at a time)."""
    channels, width = data.shape[1], data.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    for index in range(first, last):
        n, c = divmod(index, channels)
        for oh in range(out_h):
            top = _u(2 * oh)
            nan_seen = False
            for ow in range(out_w):
                left = _u(2 * ow)
                a = data[n, c, top, left]
                b = data[n, c, top, left + 1]
                d = data[n, c, top + 1, left]
                e = data[n, c, top + 1, left + 1]
                corner = 2 * oh * width + 2 * ow
                best, best_index = a, corner
                wins = b > best
                best, best_index = (b, corner + 1) if wins else (best, best_index)
                wins = d > best
                best, best_index = (d, corner + width) if wins else (best, best_index)
                wins = e > best
                best, best_index = (e, corner + width + 1) if wins else (best, best_index)
                nan_seen |= (a != a) | (b != b) | (d != d) | (e != e)
                out[n, c, _u(oh), _u(ow)] = best
                argmax[n, c, _u(oh), _u(ow)] = best_index
            if nan_seen:
                for ow in range(out_w):
                    best, best_index = _max_window(
                        data, n, c, 2 * oh, 2 * oh + 2, 2 * ow, 2 * ow + 2
                    )
                    out[n, c, _u(oh), _u(ow)] = best
                    argmax[n, c, _u(oh), _u(ow)] = best_index


@numba.njit(cache=True)
def _max_planes_2x2(data, out, argmax, descriptor, first, last):
    stride_h, stride_w, pad_h, pad_w = descriptor[2:6]
    tiled = stride_h == 2 and stride_w == 2 and pad_h == 0 and pad_w == 0
    if tiled and 2 * out.shape[2] <= data.shape[2] and 2 * out.shape[3] <= data.shape[3]:
        _max_planes_2x2_tiled(data, out, argmax, first, last)
    else:
        _max_planes_sized(data, out, argmax, descriptor, first, last, 2, 2)


@numba.njit(cache=True)
def _max_planes_3x3(data, out, argmax, descriptor, first, last):
    _max_planes_sized(data, out, argmax, descriptor, first, last, 3, 3)


@numba.njit(cache=True)
def _planes(data, descriptor, part):
    """The (n, c) planes [first, last) of part ``part`` of the descriptor's parts."""
    return row_range(part, descriptor[-1], data.shape[0] * data.shape[1])


@numba.njit(cache=True)
def _max_part(frame, part):
    data, out, argmax, descriptor, _ = frame_arguments(frame)
    _max_planes(data, out, argmax, descriptor, *_planes(data, descriptor, part))


@numba.njit(cache=True)
def _max_part_2x2(frame, part):
    data, out, argmax, descriptor, _ = frame_arguments(frame)
    _max_planes_2x2(data, out, argmax, descriptor, *_planes(data, descriptor, part))


@numba.njit(cache=True)
def _max_part_3x3(frame, part):
    data, out, argmax, descriptor, _ = frame_arguments(frame)
    _max_planes_3x3(data, out, argmax, descriptor, *_planes(data, descriptor, part))


@numba.njit(cache=True)
def max_pooling(data, out, argmax, descriptor, parts_entry):
    """out = the max of each window's input cells, argmax = the flat index of the winner;
    the planes split into the descriptor's parts, by the part function of the window size
    (``MAX_POOLING``) in ``parts_entry``."""
    frame = part_frame(parts_entry, (data, out, argmax, descriptor, parts_entry))
    run_parts(parts_entry, frame, descriptor[-1])


MAX_POOLING = {(2, 2): _max_part_2x2, (3, 3): _max_part_3x3}
"""Max pooling's part functions by window size; any other size: :func:`_max_part`."""


@numba.njit(cache=True)
def _avg_planes(data, out, descriptor, first, last):
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, count_include_pad = descriptor[:7]
    channels, height, width = data.shape[1], data.shape[2], data.shape[3]
    out_h, out_w = out.shape[2], out.shape[3]
    for index in range(first, last):
        n, c = divmod(index, channels)
        for oh in range(out_h):
            h_low, h_high, h_padded = _window(oh, kernel_h, stride_h, pad_h, height)
            for ow in range(out_w):
                w_low, w_high, w_padded = _window(ow, kernel_w, stride_w, pad_w, width)
                total = 0.0
                for h in range(h_low, h_high):
                    for w in range(w_low, w_high):
                        total += data[n, c, _u(h), _u(w)]
                if count_include_pad:
                    count = h_padded * w_padded
                else:
                    count = (h_high - h_low) * (w_high - w_low)
                out[n, c, _u(oh), _u(ow)] = total / count


@numba.njit(cache=True)
def _avg_part(frame, part):
    data, out, descriptor, _ = frame_arguments(frame)
    _avg_planes(data, out, descriptor, *_planes(data, descriptor, part))


@numba.njit(cache=True)
def avg_pooling(data, out, descriptor, parts_entry):
    """out = the sum of each window's input cells over the window's count."""
    frame = part_frame(parts_entry, (data, out, descriptor, parts_entry))
    run_parts(parts_entry, frame, descriptor[-1])


@numba.njit(cache=True)
def _max_backward_planes(dy, argmax, data_grad, first, last):
    channels, cells = data_grad.shape[1], data_grad.shape[2] * data_grad.shape[3]
    out_h, out_w = dy.shape[2], dy.shape[3]
    # The gradient as one flat row (C-contiguous, so a view), indexed by the argmax as it
    # is: splitting that into (h, w) took two integer divisions per cell (LeNet's pool1
    # gradient on one core: 0.57 ms so, 0.33 ms this way). One view per part, not one per
    # plane (above): LeNet's pool2 gradient took 0.74 ms with a view per plane, 0.06 ms so.
    flat = data_grad.reshape(data_grad.size)
    for index in range(first, last):
        n, c = divmod(index, channels)
        start = index * cells
        for k in range(cells):
            flat[_u(start + k)] = 0
        for oh in range(out_h):
            for ow in range(out_w):
                cell = argmax[n, c, _u(oh), _u(ow)]
                flat[_u(start + cell)] += dy[n, c, _u(oh), _u(ow)]


@numba.njit(cache=True)
def _max_backward_part(frame, part):
    dy, argmax, _, data_grad, descriptor, _ = frame_arguments(frame)
    _max_backward_planes(dy, argmax, data_grad, *_planes(data_grad, descriptor, part))


@numba.njit(cache=True)
def max_pooling_backward(dy, argmax, like, data_grad, descriptor, parts_entry):
    """data_grad = zeros with each dy added at the cell its argmax names."""
    frame = part_frame(parts_entry, (dy, argmax, like, data_grad, descriptor, parts_entry))
    run_parts(parts_entry, frame, descriptor[-1])


@numba.njit(cache=True)
def _avg_backward_planes(dy, data_grad, descriptor, first, last):
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, count_include_pad = descriptor[:7]
    channels, height, width = data_grad.shape[1], data_grad.shape[2], data_grad.shape[3]
    out_h, out_w = dy.shape[2], dy.shape[3]
    for index in range(first, last):
        n, c = divmod(index, channels)
        for h in range(height):
            for w in range(width):
                data_grad[n, c, _u(h), _u(w)] = 0
        for oh in range(out_h):
            h_low, h_high, h_padded = _window(oh, kernel_h, stride_h, pad_h, height)
            for ow in range(out_w):
                w_low, w_high, w_padded = _window(ow, kernel_w, stride_w, pad_w, width)
                if count_include_pad:
                    count = h_padded * w_padded
                else:
                    count = (h_high - h_low) * (w_high - w_low)
                share = dy[n, c, _u(oh), _u(ow)] / count
                for h in range(h_low, h_high):
                    for w in range(w_low, w_high):
                        data_grad[n, c, _u(h), _u(w)] += share


@numba.njit(cache=True)
def _avg_backward_part(frame, part):
    dy, _, data_grad, descriptor, _ = frame_arguments(frame)
    _avg_backward_planes(dy, data_grad, descriptor, *_planes(data_grad, descriptor, part))


@numba.njit(cache=True)
def avg_pooling_backward(dy, like, data_grad, descriptor, parts_entry):
    """data_grad = each dy over its window's count, added over the window's input cells."""
    frame = part_frame(parts_entry, (dy, like, data_grad, descriptor, parts_entry))
    run_parts(parts_entry, frame, descriptor[-1])


# -- lowerings ----------------------------------------------------------------------------------

# Input cells a pooling kernel reads or writes from which it splits its planes over threads.
PARALLEL_CELLS = 32_768


def _parts(spec: NodeSpec, data_shape: tuple) -> int:
    planes = data_shape[0] * data_shape[1]
    return parallel_parts(spec.options, planes, math.prod(data_shape), PARALLEL_CELLS)


def _descriptor(spec: NodeSpec, data_shape: tuple) -> tuple[int, ...]:
    """The ints (kh, kw, sh, sw, ph, pw, count_include_pad, parts) of the window geometry
    as the op's own rule resolves it (global_pool included) and the threads' parts, bound
    at bind as in ``conv.py``."""
    geometry = pool_geometry(spec.attrs, data_shape)
    include_pad = int(bool(spec.attrs["count_include_pad"]))
    return (
        *geometry.kernel,
        *geometry.stride,
        *geometry.pad,
        include_pad,
        _parts(spec, data_shape),
    )


def _kernel(fn, part, descriptor: tuple[int, ...], name: str = "") -> Kernel:
    """The kernel, with its descriptor bound at bind after the arrays, then the cell of its
    part function's entry (``parts``)."""
    source = "\n\n".join(inspect.getsource(f.py_func) for f in (fn, part))

    def prepare(inputs, outputs, workspace):
        return (*inputs, *outputs, descriptor, parts_cell())

    def address_calls(arguments):
        return [parts_call(arguments[-1], part, arguments)]

    return Kernel(
        fn=fn,
        name=name or fn.__name__,
        source=source,
        prepare=prepare,
        address_calls=address_calls,
    )


@lowering(TARGET, "Pooling")
def lower_pooling(spec: NodeSpec) -> Kernel:
    """Max pooling (outputs: the max and the int32 argmax) or average pooling.

    >>> import numpy as np
    >>> f64 = np.dtype("float64")
    >>> spec = NodeSpec("Pooling", "pool", {"kernel": (2, 2), "pool_type": "avg",
    ...     "stride": (2, 2), "pad": (0, 0), "global_pool": False, "count_include_pad": True,
    ...     "pooling_convention": "valid"}, ((1, 1, 4, 4),), (f64,), ((1, 1, 2, 2),), (f64,))
    >>> kernel = lower_pooling(spec)
    >>> out = np.empty((1, 1, 2, 2))
    >>> kernel.fn(*kernel.arguments((np.arange(16.0).reshape(1, 1, 4, 4),), (out,)))
    >>> out.ravel().tolist()
    [2.5, 4.5, 10.5, 12.5]
    """
    float_dtype(spec)
    descriptor = _descriptor(spec, spec.in_shapes[0])
    if spec.attrs["pool_type"] != "max":
        return _kernel(avg_pooling, _avg_part, descriptor)
    part = MAX_POOLING.get(tuple(descriptor[:2]), _max_part)
    return _kernel(max_pooling, part, descriptor, f"max_pooling ({part.__name__})")


@lowering(TARGET, "_max_pool_backward")
def lower_max_pool_backward(spec: NodeSpec) -> Kernel:
    """dy scattered by argmax into zeros shaped like the pooled input; no workspace."""
    float_dtype(spec)
    return _kernel(max_pooling_backward, _max_backward_part, (_parts(spec, spec.out_shapes[0]),))


@lowering(TARGET, "_avg_pool_backward")
def lower_avg_pool_backward(spec: NodeSpec) -> Kernel:
    """Each dy over its window's count, spread over the window."""
    float_dtype(spec)
    return _kernel(avg_pooling_backward, _avg_backward_part, _descriptor(spec, spec.in_shapes[1]))
