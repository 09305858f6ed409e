"""Matrix products through Numba's BLAS binding: FullyConnected, dot, batch_dot.

``blas.gemm`` writes into the planned output, so a step allocates nothing; transposed
operands are passed as ``.T`` views, which BLAS reads without a copy. Above
``PARALLEL_FLOPS`` a product splits its output rows into one part per thread, each a
single-threaded GEMM on its rows (``threads.py``). A dot whose sum runs over many more
rows than it has output rows (``INNER_SPLIT`` times), as the weight gradient of a decoder
over every step of a sequence, ``h.T @ dy`` with (12800, 256) and (12800, 84), splits the
sum instead: each part multiplies contiguous blocks of both operands into its own partial,
and the partials are added in part order (measured on that product at 2 threads: 2.9 ms
against 4.1 ms splitting its 256 output rows, whose operand is then a strided half of h).
"""

from __future__ import annotations

import math

import numba
from numba.extending import overload

from graphc.backend.lowering import Kernel, NodeSpec, lowering
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

_JIT = {"cache": True, "error_model": "numpy"}
# Indices known to be non-negative, so that Numba adds no wraparound select (conv.py).
_u = numba.uint64

# GEMM flops from which a product splits its output rows over threads (``threads.py``).
# A parallel region costs about 2 us; a 1 Mflop GEMM takes about 7 us on one core here.
PARALLEL_FLOPS = 1_000_000
# A dot splits the rows it sums, not its output rows, when it sums over at least this many
# times more rows than it outputs (see above).
INNER_SPLIT = 8


@numba.njit(**_JIT)
def _add_bias_rows(out, bias, first, last):
    """out[first:last] += bias, row by row; nothing for a None bias (a parameter, so that
    Numba prunes the branch: a value unpacked from a frame it cannot prune)."""
    if bias is None:
        return
    cols = out.shape[1]
    # Rows indexed in place: a view per row counts a reference on ``out``, and the parts'
    # threads counting on one array row after row contend for it (pool.py).
    for i in range(first, last):
        for j in range(cols):
            out[_u(i), _u(j)] += bias[_u(j)]


@numba.njit(**_JIT)
def _fully_connected_part(frame, part):
    """Part ``part`` of :func:`fully_connected`: its output rows."""
    data, weight, bias, out, parts, _ = frame_arguments(frame)
    rows = out.shape[0] if out.ndim == 2 else out.size // out.shape[-1]
    flat = data.reshape(rows, weight.shape[1])
    out2 = out.reshape(rows, weight.shape[0])
    first, last = row_range(part, parts, rows)
    gemm(out.dtype.type(1.0), flat[first:last], weight.T, out.dtype.type(0.0), out2[first:last])
    _add_bias_rows(out2, bias, first, last)


@numba.njit(**_JIT)
def fully_connected(data, weight, bias, out, parts, parts_entry):
    """out = data (N, K) @ weight.T + bias (None: no bias), with data flattened to (N, K),
    its rows split into ``parts`` (:func:`_fully_connected_part`, through ``parts_entry``)."""
    frame = part_frame(parts_entry, (data, weight, bias, out, parts, parts_entry))
    run_parts(parts_entry, frame, parts)


def _parts(spec: NodeSpec, rows: int, inner: int, cols: int) -> int:
    return parallel_parts(spec.options, rows, 2 * rows * inner * cols, PARALLEL_FLOPS)


def _split(part_function):
    """``Kernel.address_calls`` of a kernel whose last argument is its part function's cell."""

    def address_calls(arguments: tuple) -> list:
        return [parts_call(arguments[-1], part_function, arguments)]

    return address_calls


@lowering(TARGET, "FullyConnected")
def lower_fully_connected(spec: NodeSpec) -> Kernel:
    hidden, inner = spec.in_shapes[1]
    rows = math.prod(spec.out_shapes[0]) // hidden
    parts = _parts(spec, rows, inner, hidden)
    no_bias = spec.attrs["no_bias"]

    def prepare(inputs, outputs, workspace):
        if no_bias:
            inputs = (*inputs, None)
        return (*inputs, *outputs, *workspace, parts, parts_cell())

    name = "fully_connected_no_bias" if no_bias else "fully_connected"
    address_calls = _split(_fully_connected_part)
    return Kernel(fully_connected, name=name, prepare=prepare, address_calls=address_calls)


def _matrix(a):
    """``a`` as a matrix of rows: itself when 2-D (any strides), else its leading axes
    flattened into rows (a view: the arrays graphc binds are C-contiguous)."""


@overload(_matrix)
def _matrix_overload(a):
    if a.ndim == 2:
        return lambda a: a
    return lambda a: a.reshape(a.size // a.shape[-1], a.shape[-1])


@numba.njit(**_JIT)
def _dot_operands(a, b, out, transpose_a, transpose_b):
    left = _matrix(a).T if transpose_a else _matrix(a)
    right = b.T if transpose_b else b
    return left, right, out.reshape(left.shape[0], right.shape[1])


@numba.njit(**_JIT)
def _dot_part(frame, part):
    """Part ``part`` of :func:`dot_kernel`: its output rows, or with partials its block of
    the rows summed, into the output (part 0) or its partial."""
    a, b, out, partials, parts, transpose_a, transpose_b, _ = frame_arguments(frame)
    one = out.dtype.type(1.0)
    zero = out.dtype.type(0.0)
    left, right, product = _dot_operands(a, b, out, transpose_a, transpose_b)
    if partials.shape[0] > 0:
        first, last = row_range(part, parts, left.shape[1])
        target = product if part == 0 else partials[part - 1]
        gemm(one, left[:, first:last], right[first:last], zero, target)
    else:
        first, last = row_range(part, parts, left.shape[0])
        gemm(one, left[first:last], right, zero, product[first:last])


@numba.njit(**_JIT)
def dot_kernel(a, b, out, partials, parts, transpose_a, transpose_b, parts_entry):
    """out = op(a) @ op(b), op a transposition where asked (a is then 2-D; otherwise its
    leading axes are the rows; b is 2-D). With ``partials`` (parts - 1 products; only for
    ``a.T @ b`` and ``a.T @ b.T``) the sum over a's rows is split into parts: part 0 writes
    out, part p > 0 partials[p - 1], added into out in part order (the same bits on every
    run); without (an empty workspace), out's rows are (:func:`_dot_part`).

    One kernel for the four transpositions, chosen by run-time flags: the operands' views
    unify to one array type, so Numba compiles it once per dtype and operand rank (it
    compiled four wrappers and two split functions, each optimizing its callees again:
    about 2.8 s of a cold LeNet start), and a new batch size that changes the split
    compiles nothing."""
    arguments = (a, b, out, partials, parts, transpose_a, transpose_b, parts_entry)
    run_parts(parts_entry, part_frame(parts_entry, arguments), parts)
    if partials.shape[0] > 0:
        _, _, product = _dot_operands(a, b, out, transpose_a, transpose_b)
        rows, cols = product.shape
        for part in range(1, parts):  # in part order: the same bits on every run
            partial = partials[part - 1]
            for i in range(rows):
                row = product[i]
                add = partial[i]
                for j in range(cols):
                    row[j] += add[j]


@lowering(TARGET, "dot")
def lower_dot(spec: NodeSpec) -> Kernel:
    """a @ b with either transposed, split over output rows, or for ``a.T @ b`` summing
    over ``INNER_SPLIT`` times more rows than it outputs, over the rows it sums; workspace:
    the partial products of every part but the first.

    >>> import numpy as np
    >>> f32 = np.dtype("float32")
    >>> spec = NodeSpec("dot", "dot", {"transpose_a": True, "transpose_b": False},
    ...     ((12800, 256), (12800, 84)), (f32, f32), ((256, 84),), (f32,), {"num_threads": 2})
    >>> kernel = lower_dot(spec)
    >>> kernel.name, [shape for shape, dtype in kernel.workspace]
    ('dot_tn', [(1, 256, 84)])
    """
    key = (spec.attrs["transpose_a"], spec.attrs["transpose_b"])
    out_shape = spec.out_shapes[0]
    a_shape = spec.in_shapes[0]
    inner = a_shape[0] if key[0] else a_shape[-1]
    cols = out_shape[-1] if out_shape else 1
    rows = math.prod(out_shape) // max(cols, 1)
    name = f"dot_{'t' if key[0] else 'n'}{'t' if key[1] else 'n'}"
    # a.T @ b: split over a's rows (both operands' blocks of the sum are contiguous rows)
    # when it sums over many more rows than it outputs, with a workspace of partials; an
    # empty one says to split the output rows.
    split_inner = False
    if key[0]:
        parts = parallel_parts(spec.options, inner, 2 * rows * inner * cols, PARALLEL_FLOPS)
        split_inner = len(a_shape) == 2 and inner >= INNER_SPLIT * rows and parts > 1
    if split_inner:
        workspace = (((parts - 1, rows, cols), spec.out_dtypes[0]),)
    else:
        parts = _parts(spec, rows, inner, cols)
        workspace = (((0, rows, cols), spec.out_dtypes[0]),)

    def prepare(inputs, outputs, buffers):
        return (*inputs, *outputs, *buffers, parts, bool(key[0]), bool(key[1]), parts_cell())

    return Kernel(
        dot_kernel,
        workspace=workspace,
        name=name,
        prepare=prepare,
        address_calls=_split(_dot_part),
    )


@numba.njit(**_JIT)
def _batch_dot_part(frame, part):
    """Part ``part`` of :func:`batch_dot_kernel`: its block of the batch."""
    a, b, out, parts, transpose_a, transpose_b, _ = frame_arguments(frame)
    one = out.dtype.type(1.0)
    zero = out.dtype.type(0.0)
    first, last = row_range(part, parts, out.shape[0])
    for index in range(first, last):
        left = a[index].T if transpose_a else a[index]
        right = b[index].T if transpose_b else b[index]
        gemm(one, left, right, zero, out[index])


@numba.njit(**_JIT)
def batch_dot_kernel(a, b, out, parts, transpose_a, transpose_b, parts_entry):
    """out[i] = op(a[i]) @ op(b[i]), op a transposition where asked, the batch split into
    ``parts`` (:func:`_batch_dot_part`). The flags are run-time values (from ``prepare``),
    as :func:`dot_kernel`'s: a literal flag per variant compiled this kernel once for each
    (three for a trained ``batch_dot``, its forward and two gradients)."""
    arguments = (a, b, out, parts, transpose_a, transpose_b, parts_entry)
    run_parts(parts_entry, part_frame(parts_entry, arguments), parts)


@lowering(TARGET, "batch_dot")
def lower_batch_dot(spec: NodeSpec) -> Kernel:
    key = (spec.attrs["transpose_a"], spec.attrs["transpose_b"])
    batch, rows, cols = spec.out_shapes[0]
    a_shape = spec.in_shapes[0]
    inner = a_shape[1] if key[0] else a_shape[2]
    flops = 2 * batch * rows * inner * cols
    parts = parallel_parts(spec.options, batch, flops, PARALLEL_FLOPS)
    flags = (bool(key[0]), bool(key[1]))

    def prepare(inputs, outputs, workspace):
        return (*inputs, *outputs, *workspace, parts, *flags, parts_cell())

    return Kernel(
        batch_dot_kernel,
        name="batch_dot",
        prepare=prepare,
        address_calls=_split(_batch_dot_part),
    )
