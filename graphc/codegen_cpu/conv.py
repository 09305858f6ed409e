"""CPU kernels for ``Convolution`` and its two gradient primitives: im2col, one GEMM, col2im.

What the ops compute is defined by their NumPy references in ``graphc/ir/ops/conv.py``.
These kernels compute the same sums as three matrix products over a column matrix:

- ``cols`` is (C*kh*kw, rows*W'): row ``k = (c*kh + i)*kw + j`` holds, for every output
  position of the chunk, the input cell that kernel tap (c, i, j) meets there (zero in the
  padding). A chunk is a run of output rows ``r`` counted over (n, h') together, so column
  ``(r - first)*W' + w'`` belongs to image ``r // H'``, output row ``r % H'``, column w'.
- forward: ``product (F, rows*W') = weight (F, C*kh*kw) @ cols``, then the product is
  copied into ``out[n, :, h', :]`` with the bias added;
- weight gradient: ``dweight (F, C*kh*kw) += dy_rows (F, rows*W') @ cols.T``;
- data gradient: ``cols = weight.T @ dy_rows``, then col2im adds every column entry back
  into the input cell it was read from.

One big GEMM (``blas.gemm``) per chunk keeps BLAS efficient whatever the image size (LeNet's second
layer has only 8x8 outputs per image). Without padding, at unit stride along the width and
on C-contiguous arrays (LeNet's two convolutions), im2col and col2im run dense loops that
move whole runs of a row 8 cells at a time ("the dense case" below). Chunks are sized for the cache: about
``CHUNK_COLUMNS`` GEMM columns (whole output rows, across image boundaries), so BLAS reads
the column matrix im2col has just written from cache. The workspace is also bounded:
``options["im2col_bytes"]`` (64 MiB by default) caps the chunk so that all the buffers the
lowering declares sum to at most the bound, and a bound too small for one output row is a
BackendError. Buffers are declared flat and viewed as 2-D prefixes, so the last, shorter
chunk is still a C-contiguous matrix for BLAS.

All functions are ``numba.njit(cache=True)`` at module level and compiled once per dtype and
input layout, whatever the geometry. The geometry (kernel, stride, pad and rows per chunk)
is bound at bind by each kernel's ``prepare`` as a tuple of ints, the last argument
``descriptor = (kh, kw, sh, sw, ph, pw, rows, parts)``. The alternative, an entry point
generated per geometry with the numbers as constants, costs a Numba compile per distinct
convolution, because Numba links and re-optimises everything it calls: measured 1.3-1.6 s
each here, which made a cold run of this file's tests 97 s.
Inputs may have any strides; outputs are C-contiguous, as ``lowering.py`` promises.

Threads (``threads.py``): each pass splits its output rows into ``parts`` fixed at bind,
one per thread of the shared parallel loop (``parts.run_parts``, which calls the pass's
part function: ``_forward_part``, ``_weight_part``, ``_data_part``), and each part runs
im2col, a single-threaded GEMM
(``blas.gemm``) and its copies on its own slice of the workspace. Letting OpenBLAS thread
each GEMM instead left im2col, col2im and the copies on one core (0.41-0.73 of NumPy's
matmul at 2 threads), and a ``prange`` over channels inside im2col cost more than it gave.
"""

from __future__ import annotations

import inspect
import math

import numba
import numpy as np
from numba.core import types
from numba.extending import overload

from graphc.backend.lowering import Kernel, NodeSpec, lowering, uniform_float_dtype
from graphc.codegen_cpu.blas import gemm, row_range
from graphc.codegen_cpu.parts import (
    frame_arguments,
    part_frame,
    parts_call,
    parts_cell,
    run_parts,
)
from graphc.codegen_cpu.target import TARGET
from graphc.codegen_cpu.threads import parallel_parts
from graphc.ir.errors import BackendError

DEFAULT_IM2COL_BYTES = 64 * 2**20
# GEMM columns per chunk. LeNet, batch 100, float32, one BLAS thread, forward / weight grad /
# data grad in ms on a shared 2-core VM (noisy, +-20%): conv1 0.9 / 1.3 / 1.1 with 1024
# columns, 2.2 / 2.4 / 2.3 with the whole batch in one chunk; conv2 5.2 / 5.4 / 5.2 against
# 7.5 / 5.7 / 6.4. 256 to 2048 do about as well as 1024 for conv2; conv1 slows from 2048.
CHUNK_COLUMNS = 1024
# Bytes of a chunk's column matrix, at most: it is written by im2col (or read by col2im)
# and read by the GEMM, and both run at cache speed only while it stays in the core's L2
# (1-2 MiB on current x86 cores). LeNet's conv2 (500 taps), float32, one thread, over 96
# images: forward 4.01 ms with 1024 columns (2 MB), 3.69 with 512, 3.53 with 256; weight
# gradient 3.73 / 3.44 / 3.48; data gradient 3.49 / 3.49 / 3.61. conv1 (25 taps) is
# bounded by CHUNK_COLUMNS instead, where it does best (0.51 ms forward against 0.57 with
# 576 columns and 0.85 with 2304).
CHUNK_BYTES = 2**20
# GEMM flops of a pass from which it splits over threads. A parallel region costs about
# 2 us (OpenMP layer); below a few hundred kflop a pass takes tens of microseconds and
# the split would be a large share of it.
PARALLEL_FLOPS = 2_000_000


# -- column matrix ----------------------------------------------------------------------------


# Inner loops index with unsigned integers (``_u``): Numba cannot tell that a signed index is
# non-negative, so it adds a wraparound select to every access, which stops LLVM from
# vectorising the loop. Measured on LeNet's conv2 im2col (float32, batch 100): 5.9 ms signed,
# 1.9 ms unsigned. Every index cast this way is non-negative by construction.
_u = numba.uint64


@numba.njit(cache=True)
def _valid_columns(j, stride_w, pad_w, width, out_w):
    """The output columns [low, high) whose tap ``j`` lands inside the input's width."""
    low = min(out_w, max(0, -((j - pad_w) // stride_w)))
    high = min(out_w, (width - 1 + pad_w - j) // stride_w + 1)
    return low, max(low, high)


# -- the dense case: no padding, unit stride along the width --------------------------------------
#
# Both convolutions of LeNet are this case (on C-contiguous arrays; any other layout runs the
# general loops): each tap row of a chunk is one contiguous run of W' input cells per output
# row, with nothing to zero. The general loops
# below spend their time on the per-row bookkeeping (bounds, three loops, divmod) rather than
# the copy, and a run of 8 cells (LeNet's conv2) is below the trip count at which LLVM's
# vectorised loop starts, so it was copied one float at a time. The dense loops index flat
# views with a running offset per row, and move 8 cells at a time as 8 loads, then 8 stores,
# which LLVM packs into vector loads and stores (one each for float32 in 256-bit registers;
# loads first: it may not reorder a load past a store to an array it cannot prove distinct). LeNet's conv2 im2col, one part of 50
# images, one thread: 0.67 -> 0.27 ms; conv1 0.11 -> 0.07 ms.


def _flat_c(a):
    """``a`` as a flat view where Numba types it C-contiguous, else None (the general loops
    then run)."""


@overload(_flat_c)
def _flat_c_overload(a):
    if isinstance(a, types.Array) and a.layout == "C":
        return lambda a: a.reshape(a.size)
    return lambda a: None


@numba.njit(cache=True, inline="always")
def _move8(source, s, target, t, add):
    """target[t:t+8] = source[s:s+8], or += with ``add``: all loads before any store."""
    a0 = source[s]
    a1 = source[s + _u(1)]
    a2 = source[s + _u(2)]
    a3 = source[s + _u(3)]
    a4 = source[s + _u(4)]
    a5 = source[s + _u(5)]
    a6 = source[s + _u(6)]
    a7 = source[s + _u(7)]
    if add:
        a0 += target[t]
        a1 += target[t + _u(1)]
        a2 += target[t + _u(2)]
        a3 += target[t + _u(3)]
        a4 += target[t + _u(4)]
        a5 += target[t + _u(5)]
        a6 += target[t + _u(6)]
        a7 += target[t + _u(7)]
    target[t] = a0
    target[t + _u(1)] = a1
    target[t + _u(2)] = a2
    target[t + _u(3)] = a3
    target[t + _u(4)] = a4
    target[t + _u(5)] = a5
    target[t + _u(6)] = a6
    target[t + _u(7)] = a7


@numba.njit(cache=True)
def _dense_columns(image, image_grad, matrix, s, t, rows, oh, sizes, low, high):
    """Columns [low, high) of ``rows`` output rows of one tap, 8 at a time where
    ``high - low`` is a multiple of 8 (see :func:`_dense_taps`): from the flat ``image``
    at offset ``s`` into the matrix at ``t``, or, where ``image`` is None, from the matrix
    added into ``image_grad``; ``oh`` is the first row's h'.

    Which of the two is None is known when this compiles, and Numba drops the branch
    that tests it (``is not None`` on the None argument: Numba prunes only by the type of
    the argument tested). A flag tested at run time would type the store into ``image``
    too, which fails for a read-only input."""
    out_h, out_w, step, image_size = sizes
    for _ in range(rows):
        if (high - low) % 8 == 0:
            for ow in range(low, high, 8):
                if image is not None:
                    _move8(image, _u(s + ow), matrix, _u(t + ow), False)
                if image_grad is not None:
                    _move8(matrix, _u(t + ow), image_grad, _u(s + ow), True)
        else:
            for ow in range(low, high):
                if image is not None:
                    matrix[_u(t + ow)] = image[_u(s + ow)]
                if image_grad is not None:
                    image_grad[_u(s + ow)] += matrix[_u(t + ow)]
        t += out_w
        s += step
        oh += 1
        if oh == out_h:
            oh = 0
            s += image_size - out_h * step


@numba.njit(cache=True)
def _dense_taps(image, image_grad, matrix, shape, first_row, kernel, stride_h, out_h, out_w):
    """im2col (matrix rows from the flat ``image``) or, where ``image`` is None, col2im
    (matrix rows added into the flat ``image_grad``) of the dense case; ``shape`` is the
    image's (C, H, W).

    Each tap's rows go in two sweeps, the first W' // 8 * 8 columns in blocks of 8, then
    the rest one by one, so that the hot loop has no remainder: a remainder loop in it
    (which LLVM vectorises too, with its own checks) measured 0.34 against 0.27 ms."""
    channels, height, width = shape
    kernel_h, kernel_w = kernel
    columns = matrix.size // (channels * kernel_h * kernel_w)
    rows = columns // out_w
    plane = height * width
    step = stride_h * width
    sizes = (out_h, out_w, step, channels * plane)
    n, oh = divmod(first_row, out_h)
    wide = out_w - out_w % 8
    for c in range(channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                s = n * channels * plane + oh * step + c * plane + i * width + j
                t = ((c * kernel_h + i) * kernel_w + j) * columns
                _dense_columns(image, image_grad, matrix, s, t, rows, oh, sizes, 0, wide)
                if wide < out_w:
                    _dense_columns(image, image_grad, matrix, s, t, rows, oh, sizes, wide, out_w)


@numba.njit(cache=True)
def _dense(image, image_grad, shape, matrix, first_row, geometry, out_h, out_w):
    """:func:`_dense_taps` where the image (``image`` for im2col, ``image_grad`` for
    col2im, the other None) and ``matrix`` are flat views (``_flat_c``: None for an array
    of other strides) and the geometry has no padding and unit stride along the width;
    False, with nothing done, otherwise."""
    if matrix is None:
        return False
    if image is None:
        if image_grad is None:
            return False
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w = geometry
    if pad_h != 0 or pad_w != 0 or stride_w != 1 or shape[0] == 0:
        return False  # no channels: nothing to move, and no tap rows to count columns by
    kernel = (kernel_h, kernel_w)
    _dense_taps(image, image_grad, matrix, shape, first_row, kernel, stride_h, out_h, out_w)
    return True


@numba.njit(cache=True)
def _im2col(data, cols, first_row, geometry, out_h, out_w):
    """Fill ``cols`` (C*kh*kw, rows*W') with the windows of output rows first_row, ...

    The innermost loop runs along an output row, over contiguous columns of ``cols``."""
    if _dense(_flat_c(data), None, data.shape[1:], _flat_c(cols), first_row, geometry, out_h, out_w):  # fmt: skip
        return
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w = geometry
    channels, height, width = data.shape[1], data.shape[2], data.shape[3]
    rows = cols.shape[1] // out_w
    for c in range(channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                tap = (c * kernel_h + i) * kernel_w + j
                low, high = _valid_columns(j, stride_w, pad_w, width, out_w)
                first_w = low * stride_w - pad_w + j
                n, oh = divmod(first_row, out_h)
                for base in range(0, rows * out_w, out_w):
                    h = oh * stride_h - pad_h + i
                    if 0 <= h < height:
                        for ow in range(low):
                            cols[tap, _u(base + ow)] = 0
                        for ow in range(high - low):
                            cols[tap, _u(base + low + ow)] = data[
                                n, c, h, _u(first_w + ow * stride_w)
                            ]
                        for ow in range(high, out_w):
                            cols[tap, _u(base + ow)] = 0
                    else:
                        for ow in range(out_w):
                            cols[tap, _u(base + ow)] = 0
                    oh += 1
                    if oh == out_h:
                        oh = 0
                        n += 1


@numba.njit(cache=True)
def _col2im(cols, data_grad, first_row, geometry, out_h, out_w):
    """The adjoint of :func:`_im2col`: add every entry of ``cols`` into the input cell it
    was read from (entries read from the padding are dropped)."""
    if _dense(None, _flat_c(data_grad), data_grad.shape[1:], _flat_c(cols), first_row, geometry, out_h, out_w):  # fmt: skip
        return
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w = geometry
    channels, height, width = data_grad.shape[1], data_grad.shape[2], data_grad.shape[3]
    rows = cols.shape[1] // out_w
    for c in range(channels):
        for i in range(kernel_h):
            for j in range(kernel_w):
                tap = (c * kernel_h + i) * kernel_w + j
                low, high = _valid_columns(j, stride_w, pad_w, width, out_w)
                first_w = low * stride_w - pad_w + j
                n, oh = divmod(first_row, out_h)
                for base in range(0, rows * out_w, out_w):
                    h = oh * stride_h - pad_h + i
                    if 0 <= h < height:
                        for ow in range(high - low):
                            data_grad[n, c, h, _u(first_w + ow * stride_w)] += cols[
                                tap, _u(base + low + ow)
                            ]
                    oh += 1
                    if oh == out_h:
                        oh = 0
                        n += 1


# -- moving rows between (N, F, H', W') arrays and (F, rows*W') matrices ------------------------


@numba.njit(cache=True)
def _gather_rows(source, matrix, first_row):
    """matrix[f, (r - first_row)*W' + w'] = source[n, f, h', w'] for output rows r = (n, h')."""
    filters, out_h, out_w = source.shape[1], source.shape[2], source.shape[3]
    rows = matrix.shape[1] // out_w
    for f in range(filters):
        n, oh = divmod(first_row, out_h)
        for base in range(0, rows * out_w, out_w):
            for ow in range(out_w):
                matrix[f, _u(base + ow)] = source[n, f, oh, _u(ow)]
            oh += 1
            if oh == out_h:
                oh = 0
                n += 1


@numba.njit(cache=True)
def _scatter_rows(matrix, bias, out, first_row):
    """The inverse of :func:`_gather_rows`, adding ``bias[f]`` unless ``bias`` is None."""
    filters, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    rows = matrix.shape[1] // out_w
    for f in range(filters):
        shift = 0.0
        if bias is not None:
            shift = bias[f]
        n, oh = divmod(first_row, out_h)
        for base in range(0, rows * out_w, out_w):
            for ow in range(out_w):
                out[n, f, oh, _u(ow)] = matrix[f, _u(base + ow)] + shift
            oh += 1
            if oh == out_h:
                oh = 0
                n += 1


@numba.njit(cache=True)
def _weight_matrix(weight_buffer, filters):
    """The flat weight workspace as the C-contiguous (F, C*kh*kw) matrix the GEMMs read."""
    return weight_buffer.reshape(filters, weight_buffer.size // filters)


@numba.njit(cache=True)
def _copy_weight(weight, weight_buffer):
    """``weight`` (F, C, kh, kw), any strides, into the flat weight workspace, laid out as
    :func:`_weight_matrix` reads it."""
    filters, channels, kernel_h, kernel_w = weight.shape
    matrix = _weight_matrix(weight_buffer, filters)
    for f in range(filters):
        for c in range(channels):
            for i in range(kernel_h):
                for j in range(kernel_w):
                    matrix[f, (c * kernel_h + i) * kernel_w + j] = weight[f, c, i, j]


# -- the three passes ---------------------------------------------------------------------------
#
# Each pass splits its output rows (counted over (n, h') together) into ``parts`` ranges,
# one per thread (``parts.run_parts``, ``threads.py``): each part runs im2col, a single-threaded
# GEMM and the copies of its own rows on its own slice of the workspace, chunk after chunk.
# The data gradient splits whole images instead, because col2im of two output rows of one
# image adds into the same input cells. The weight gradient sums over every row: each part
# sums its rows into its own partial, and the partials are added in part order afterwards,
# so a given part count gives the same bits on every run.


@numba.njit(cache=True)
def _unpack(descriptor):
    """((kh, kw, sh, sw, ph, pw), chunk_rows, parts) from a geometry descriptor tuple."""
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, chunk_rows, parts = descriptor
    return (kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w), chunk_rows, parts


@numba.njit(cache=True)
def _forward_rows(
    data, weight_matrix, bias, out, cols_buffer, product_buffer, geometry, chunk_rows, first, last
):
    filters, out_h, out_w = out.shape[1], out.shape[2], out.shape[3]
    taps = weight_matrix.shape[1]
    one = out.dtype.type(1.0)
    zero = out.dtype.type(0.0)
    for first_row in range(first, last, chunk_rows):
        columns = min(chunk_rows, last - first_row) * out_w
        cols = cols_buffer[: taps * columns].reshape(taps, columns)
        product = product_buffer[: filters * columns].reshape(filters, columns)
        _im2col(data, cols, first_row, geometry, out_h, out_w)
        gemm(one, weight_matrix, cols, zero, product)
        _scatter_rows(product, bias, out, first_row)


@numba.njit(cache=True)
def _share(buffer, part, parts):
    """Part ``part``'s slice of a flat workspace buffer split evenly into ``parts``."""
    size = buffer.size // parts
    return buffer[part * size : (part + 1) * size]


@numba.njit(cache=True)
def _forward_part(frame, part):
    """Part ``part`` of :func:`convolution_forward`: its output rows, on its own slice of
    the workspace."""
    data, _, bias, out, cols_buffer, product_buffer, weight_buffer, descriptor, _ = frame_arguments(
        frame
    )
    geometry, chunk_rows, parts = _unpack(descriptor)
    batch, filters, out_h, _ = out.shape
    weight_matrix = _weight_matrix(weight_buffer, filters)
    first, last = row_range(part, parts, batch * out_h)
    _forward_rows(
        data, weight_matrix, bias, out, _share(cols_buffer, part, parts),
        _share(product_buffer, part, parts), geometry, chunk_rows, first, last,
    )  # fmt: skip


@numba.njit(cache=True)
def convolution_forward(
    data, weight, bias, out, cols_buffer, product_buffer, weight_buffer, descriptor, parts_entry
):
    """out = Convolution(data, weight) + bias (None: no bias), one GEMM per chunk of output
    rows, the rows split into parts (:func:`_forward_part`, through ``parts_entry``)."""
    _copy_weight(weight, weight_buffer)
    arguments = (
        data, weight, bias, out, cols_buffer, product_buffer, weight_buffer, descriptor,
        parts_entry,
    )  # fmt: skip
    run_parts(parts_entry, part_frame(parts_entry, arguments), descriptor[7])


@numba.njit(cache=True)
def _weight_rows(dy, data, grad_matrix, cols_buffer, dy_buffer, scratch, geometry, chunk_rows, first, last):  # fmt: skip
    """grad_matrix = the sum over output rows [first, last) of dy_rows @ cols.T."""
    filters, out_h, out_w = dy.shape[1], dy.shape[2], dy.shape[3]
    taps = grad_matrix.shape[1]
    one = grad_matrix.dtype.type(1.0)
    zero = grad_matrix.dtype.type(0.0)
    if first == last:
        grad_matrix[...] = 0
    for first_row in range(first, last, chunk_rows):
        columns = min(chunk_rows, last - first_row) * out_w
        cols = cols_buffer[: taps * columns].reshape(taps, columns)
        dy_rows = dy_buffer[: filters * columns].reshape(filters, columns)
        _im2col(data, cols, first_row, geometry, out_h, out_w)
        _gather_rows(dy, dy_rows, first_row)
        if first_row == first:
            gemm(one, dy_rows, cols.T, zero, grad_matrix)
        else:
            gemm(one, dy_rows, cols.T, zero, scratch)
            for f in range(filters):
                for tap in range(taps):
                    grad_matrix[f, tap] += scratch[f, tap]


@numba.njit(cache=True)
def _weight_part(frame, part):
    """Part ``part`` of :func:`convolution_backward_weight`: the sum over its output rows,
    into ``weight_grad`` for part 0 and into its own partial for the others."""
    dy, data, weight_grad, cols_buffer, dy_buffer, partial_buffer, descriptor, _ = frame_arguments(
        frame
    )
    geometry, chunk_rows, parts = _unpack(descriptor)
    batch, filters, out_h, _ = dy.shape
    taps = weight_grad.size // filters
    matrix = filters * taps
    scratch_size = (partial_buffer.size - (parts - 1) * matrix) // parts
    first, last = row_range(part, parts, batch * out_h)
    scratch = partial_buffer[part * scratch_size : (part + 1) * scratch_size].reshape(
        filters, scratch_size // filters
    )
    if part == 0:
        own = weight_grad.reshape(filters, taps)
    else:
        sums = partial_buffer[parts * scratch_size :]
        own = sums[(part - 1) * matrix : part * matrix].reshape(filters, taps)
    _weight_rows(
        dy, data, own, _share(cols_buffer, part, parts), _share(dy_buffer, part, parts),
        scratch, geometry, chunk_rows, first, last,
    )  # fmt: skip


@numba.njit(cache=True)
def convolution_backward_weight(
    dy, data, weight_grad, cols_buffer, dy_buffer, partial_buffer, descriptor, parts_entry
):
    """weight_grad = _conv_backward_weight(dy, data): the sum over chunks of dy_rows @ cols.T.

    ``partial_buffer`` holds one chunk's product per part (empty when every part is one
    chunk), then the partial sums of parts 1, 2, ... (part 0 sums into weight_grad)."""
    parts = descriptor[7]
    arguments = (
        dy, data, weight_grad, cols_buffer, dy_buffer, partial_buffer, descriptor, parts_entry
    )  # fmt: skip
    run_parts(parts_entry, part_frame(parts_entry, arguments), parts)
    matrix = weight_grad.size
    sums = partial_buffer[partial_buffer.size - (parts - 1) * matrix :]
    flat = weight_grad.reshape(matrix)
    for part in range(1, parts):  # in part order: the same bits on every run
        for k in range(matrix):
            flat[_u(k)] += sums[_u((part - 1) * matrix + k)]


@numba.njit(cache=True)
def _data_rows(dy, weight_matrix, data_grad, cols_buffer, dy_buffer, geometry, chunk_rows, first_image, last_image):  # fmt: skip
    filters, out_h, out_w = dy.shape[1], dy.shape[2], dy.shape[3]
    taps = weight_matrix.shape[1]
    one = data_grad.dtype.type(1.0)
    zero = data_grad.dtype.type(0.0)
    data_grad[first_image:last_image] = 0
    last = last_image * out_h
    for first_row in range(first_image * out_h, last, chunk_rows):
        columns = min(chunk_rows, last - first_row) * out_w
        cols = cols_buffer[: taps * columns].reshape(taps, columns)
        dy_rows = dy_buffer[: filters * columns].reshape(filters, columns)
        _gather_rows(dy, dy_rows, first_row)
        gemm(one, weight_matrix.T, dy_rows, zero, cols)
        _col2im(cols, data_grad, first_row, geometry, out_h, out_w)


@numba.njit(cache=True)
def _data_part(frame, part):
    """Part ``part`` of :func:`convolution_backward_data`: its whole images."""
    dy, _, _, data_grad, cols_buffer, dy_buffer, weight_buffer, descriptor, _ = frame_arguments(
        frame
    )
    geometry, chunk_rows, parts = _unpack(descriptor)
    batch, filters = dy.shape[0], dy.shape[1]
    weight_matrix = _weight_matrix(weight_buffer, filters)
    first, last = row_range(part, parts, batch)
    _data_rows(
        dy, weight_matrix, data_grad, _share(cols_buffer, part, parts),
        _share(dy_buffer, part, parts), geometry, chunk_rows, first, last,
    )  # fmt: skip


@numba.njit(cache=True)
def convolution_backward_data(
    dy, weight, like, data_grad, cols_buffer, dy_buffer, weight_buffer, descriptor, parts_entry
):
    """data_grad = _conv_backward_data(dy, weight): col2im of weight.T @ dy_rows per chunk,
    each part on whole images (:func:`_data_part`)."""
    _copy_weight(weight, weight_buffer)
    arguments = (
        dy, weight, like, data_grad, cols_buffer, dy_buffer, weight_buffer, descriptor,
        parts_entry,
    )  # fmt: skip
    run_parts(parts_entry, part_frame(parts_entry, arguments), descriptor[7])


# -- lowerings ----------------------------------------------------------------------------------


def geometry_descriptor(spec: NodeSpec, rows: int, parts: int) -> tuple[int, ...]:
    """The ints (kh, kw, sh, sw, ph, pw, rows per chunk, parts) the kernels read."""
    kernel_h, kernel_w = spec.attrs["kernel"]
    return (kernel_h, kernel_w, *spec.attrs["stride"], *spec.attrs["pad"], rows, parts)


def conv_parts(spec: NodeSpec, out_shape: tuple, taps: int, by_images: bool) -> int:
    """How many threads' parts a pass splits into: its output rows (whole images for the
    data gradient), or 1 below ``PARALLEL_FLOPS`` of GEMM work."""
    batch, filters, out_h, out_w = out_shape
    flops = 2 * batch * filters * out_h * out_w * taps
    rows = batch if by_images else batch * out_h
    return parallel_parts(spec.options, rows, flops, PARALLEL_FLOPS)


def chunk_rows(
    spec: NodeSpec,
    out_shape: tuple,
    row_elements: int,
    fixed_elements,
    parts: int = 1,
    by_images: bool = False,
    taps: int = 0,
) -> tuple[int, int]:
    """Output rows per chunk and parts: about ``CHUNK_COLUMNS`` GEMM columns per chunk, or
    fewer where a column matrix of ``taps`` rows would pass ``CHUNK_BYTES``, and never so
    many that the workspace of all parts exceeds ``options["im2col_bytes"]`` (fewer parts
    where even one row each would not fit).

    ``row_elements`` is the scratch one output row needs (its column-matrix and GEMM-operand
    columns), ``fixed_elements(parts)`` what the workspace needs whatever the chunk. A
    part's rows (a ``parts``-th of the output rows, or of the images with ``by_images``) are
    spread evenly over the fewest chunks of that size, so no chunk is a small remainder.

    >>> import numpy as np
    >>> spec = NodeSpec("Convolution", "conv", {}, (), (np.dtype("float32"),), (), (),
    ...                 {"im2col_bytes": 3600})
    >>> chunk_rows(spec, (2, 4, 10, 10), 100, lambda parts: 0)
    (7, 1)
    >>> chunk_rows(spec, (2, 4, 10, 10), 100, lambda parts: 0, parts=2)
    (4, 2)
    >>> chunk_rows(spec, (2, 4, 10, 10), 500, lambda parts: 0, parts=2)
    (1, 1)
    """
    itemsize = uniform_float_dtype(spec).itemsize
    bound = spec.options.get("im2col_bytes", DEFAULT_IM2COL_BYTES)
    while True:
        fitting = (bound // itemsize - fixed_elements(parts)) // (row_elements * parts)
        if fitting >= 1 or parts == 1:
            break
        parts -= 1
    if fitting < 1:
        raise BackendError(
            f"{spec.name} ({spec.op}): inputs {list(spec.in_shapes)} need"
            f" {(fixed_elements(1) + row_elements) * itemsize} bytes of im2col workspace for"
            f" one output row, more than the im2col_bytes bound of {bound}; raise the bound"
        )
    batch, out_h = out_shape[0], out_shape[2]
    if by_images:
        part_rows = math.ceil(batch / parts) * out_h
    else:
        part_rows = math.ceil(batch * out_h / parts)
    columns = (
        max(1, min(CHUNK_COLUMNS, CHUNK_BYTES // (taps * itemsize))) if taps else CHUNK_COLUMNS
    )
    wanted = min(fitting, part_rows, math.ceil(columns / out_shape[3]))
    chunks = math.ceil(part_rows / wanted)
    return math.ceil(part_rows / chunks), parts


def _flat(elements: int, dtype: np.dtype) -> tuple:
    return ((elements,), dtype)


def _kernel(fn, part, workspace: tuple, descriptor: tuple[int, ...], no_bias=False) -> Kernel:
    """The kernel with its geometry bound at bind after the arrays, then the cell of its
    part function's entry (``parts``); ``no_bias``: None stands for the bias."""
    source = "\n\n".join(inspect.getsource(f.py_func) for f in (fn, part, _im2col))

    def prepare(inputs, outputs, buffers):
        if no_bias:
            inputs = (*inputs, None)
        return (*inputs, *outputs, *buffers, descriptor, parts_cell())

    def address_calls(arguments):
        return [parts_call(arguments[-1], part, arguments)]

    return Kernel(
        fn=fn,
        workspace=workspace,
        name=fn.__name__,
        source=source,
        prepare=prepare,
        address_calls=address_calls,
    )


@lowering(TARGET, "Convolution")
def lower_convolution(spec: NodeSpec) -> Kernel:
    """im2col + GEMM forward; workspace: the column matrix and the GEMM product of each
    part, the weight as a contiguous (F, C*kh*kw) matrix (all flat); the geometry is bound
    at bind.

    >>> import numpy as np
    >>> f32 = np.dtype("float32")
    >>> spec = NodeSpec("Convolution", "conv", {"kernel": (3, 3), "stride": (1, 1),
    ...     "pad": (1, 1), "num_filter": 4, "no_bias": True}, ((2, 3, 5, 5), (4, 3, 3, 3)),
    ...     (f32, f32), ((2, 4, 5, 5),), (f32,))
    >>> [shape for shape, dtype in lower_convolution(spec).workspace]
    [(1350,), (200,), (108,)]
    """
    dtype = uniform_float_dtype(spec)
    out_shape = spec.out_shapes[0]
    filters, out_w = out_shape[1], out_shape[3]
    taps = math.prod(spec.in_shapes[1][1:])
    parts = conv_parts(spec, out_shape, taps, by_images=False)
    rows, parts = chunk_rows(
        spec, out_shape, (taps + filters) * out_w, lambda parts: filters * taps, parts, taps=taps
    )
    workspace = (
        _flat(parts * taps * rows * out_w, dtype),
        _flat(parts * filters * rows * out_w, dtype),
        _flat(filters * taps, dtype),
    )
    descriptor = geometry_descriptor(spec, rows, parts)
    return _kernel(convolution_forward, _forward_part, workspace, descriptor, spec.attrs["no_bias"])


@lowering(TARGET, "_conv_backward_weight")
def lower_conv_backward_weight(spec: NodeSpec) -> Kernel:
    """GEMM of dy rows by the column matrix; workspace: each part's column matrix and dy as
    (F, rows*W'), then one chunk's product (F, C*kh*kw) per part where a part has more than
    one chunk, and the partial sums of every part but the first."""
    dtype = uniform_float_dtype(spec)
    dy_shape = spec.in_shapes[0]
    filters, out_w = dy_shape[1], dy_shape[3]
    taps = math.prod(spec.out_shapes[0][1:])
    matrix = filters * taps
    parts = conv_parts(spec, dy_shape, taps, by_images=False)
    rows, parts = chunk_rows(
        spec,
        dy_shape,
        (taps + filters) * out_w,
        lambda parts: (2 * parts - 1) * matrix,
        parts,
        taps=taps,
    )
    one_chunk = rows >= math.ceil(dy_shape[0] * dy_shape[2] / parts)
    workspace = (
        _flat(parts * taps * rows * out_w, dtype),
        _flat(parts * filters * rows * out_w, dtype),
        _flat((0 if one_chunk else parts * matrix) + (parts - 1) * matrix, dtype),
    )
    descriptor = geometry_descriptor(spec, rows, parts)
    return _kernel(convolution_backward_weight, _weight_part, workspace, descriptor)


@lowering(TARGET, "_conv_backward_data")
def lower_conv_backward_data(spec: NodeSpec) -> Kernel:
    """GEMM of the transposed weight by dy rows, then col2im; workspace: each part's column
    matrix and dy as (F, rows*W'), the weight as a contiguous (F, C*kh*kw) matrix."""
    dtype = uniform_float_dtype(spec)
    dy_shape = spec.in_shapes[0]
    filters, out_w = dy_shape[1], dy_shape[3]
    taps = math.prod(spec.in_shapes[1][1:])
    parts = conv_parts(spec, dy_shape, taps, by_images=True)
    rows, parts = chunk_rows(
        spec, dy_shape, (taps + filters) * out_w, lambda parts: filters * taps, parts, True, taps
    )
    workspace = (
        _flat(parts * taps * rows * out_w, dtype),
        _flat(parts * filters * rows * out_w, dtype),
        _flat(filters * taps, dtype),
    )
    descriptor = geometry_descriptor(spec, rows, parts)
    return _kernel(convolution_backward_data, _data_part, workspace, descriptor)
