"""CPU kernels for the reductions: ``sum``, ``max``, ``min``, ``sum_to_like``, ``_size`` and
``add_n``.

What each op computes is defined by its NumPy reference (``graphc/ir/ops/reduce.py`` and
``graphc/ir/ops/broadcast.py``). Every reduction reads its input as a sequence in C order of
shape ``(outer, length, inner)``: ``length`` runs over the reduced axes, ``outer`` and
``inner`` over the kept axes before and after them. When the reduced axes are not one run
(after dropping axes of size 1), the input is read through a transposed view that puts them
last, so ``inner`` is 1; the view is made once, at bind. Values are read by position through
``.flat`` of the input or of that view, whatever the strides, and nothing is copied or
allocated.

Summation order. Sums are trees, fixed for a given ``length``, so results are identical run
to run and their rounding error grows like log(length) rather than length. They accumulate
in float64 whatever the dtype, and round once when the result is stored: a float32 tree
with float32 partial sums missed 1e-6 relative error on 10^7 float32 values of mixed
magnitude (1.5e-6 with heavy cancellation; see tests/test_cpu_kernels_misc.py), while the
float64 accumulators keep it at float32's final rounding (3e-8):

- the ``length`` values of one output are cut into blocks of ``BLOCK`` (128) consecutive
  values; a block of fewer than ``LANES`` (8) values is summed left to right, a longer one
  into 8 interleaved partial sums (value k goes to lane k % 8, as NumPy's pairwise sum does),
  which are combined as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)), and the values
  past the last multiple of 8 are added to that;
- the block sums are combined pairwise, neighbours first, level by level
  (``combine_pairwise``).

When ``inner > 1`` (the bias gradient: a sum over axis 0 of (N, H)) the same order is applied
to whole rows at once: lanes and block partials are rows of ``inner`` values in workspace
buffers, so the input streams row by row instead of being read one strided column at a time.
Each output element gets exactly the additions it would get alone.

``add_n`` adds its inputs element by element as a balanced tree over the inputs, in input
order and in float64: ((a0 + a1) + (a2 + a3)) + a4.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from graphc.backend.lowering import Kernel, NodeSpec, float_dtype, lowering
from graphc.backend.reduction_layout import ReductionLayout, reduction_layout, sum_to_like_axes
from graphc.backend.scalar_expr import pairwise_expression
from graphc.backend.source_cache import load_kernel
from graphc.codegen_cpu.target import TARGET
from graphc.ir.errors import BackendError
from graphc.ir.ops.reduce import reduced_axes

BLOCK = 128
LANES = 8


# -- tree sums ---------------------------------------------------------------------------------
#
# ``source`` is anything indexed by C-order position: ``data.flat`` or the ``.flat`` of a
# transposed view. Reading by position through ``.flat`` measured fastest of the ways tried
# (10^7 float32 values: 2.9 ms against 3.6 ms for an iterator and 5.2 ms for a reshaped 1-d
# array; sum over axis 0 of (4096, 512): 0.29 ms against 1.3 and 1.9 ms), and it works for
# any strides.


@numba.njit(cache=True)
def sum_block(source, start, count):
    """Sum, in float64, of ``source[start:start + count]`` (1 to BLOCK values)."""
    if count < LANES:
        total = np.float64(source[start])
        for k in range(start + 1, start + count):
            total += source[k]
        return total
    lane0 = np.float64(source[start])
    lane1 = np.float64(source[start + 1])
    lane2 = np.float64(source[start + 2])
    lane3 = np.float64(source[start + 3])
    lane4 = np.float64(source[start + 4])
    lane5 = np.float64(source[start + 5])
    lane6 = np.float64(source[start + 6])
    lane7 = np.float64(source[start + 7])
    done = LANES
    while done + LANES <= count:
        k = start + done
        lane0 += source[k]
        lane1 += source[k + 1]
        lane2 += source[k + 2]
        lane3 += source[k + 3]
        lane4 += source[k + 4]
        lane5 += source[k + 5]
        lane6 += source[k + 6]
        lane7 += source[k + 7]
        done += LANES
    total = ((lane0 + lane1) + (lane2 + lane3)) + ((lane4 + lane5) + (lane6 + lane7))
    for k in range(start + done, start + count):
        total += source[k]
    return total


@numba.njit(cache=True)
def sum_row_block(source, start, count, lanes, dst):
    """Column sums of ``count`` (1 to BLOCK) rows of ``len(dst)`` values from ``start`` on,
    into the float64 row ``dst``, in ``sum_block``'s order in every column. ``lanes`` is
    (LANES, len(dst)) float64 scratch, used when ``count >= LANES``."""
    width = dst.shape[0]
    if count < LANES:
        for i in range(width):
            dst[i] = source[start + i]
        for row in range(1, count):
            first = start + row * width
            for i in range(width):
                dst[i] += source[first + i]
        return
    for lane in range(LANES):
        first = start + lane * width
        for i in range(width):
            lanes[lane, i] = source[first + i]
    done = LANES
    while done + LANES <= count:
        for lane in range(LANES):
            first = start + (done + lane) * width
            for i in range(width):
                lanes[lane, i] += source[first + i]
        done += LANES
    for i in range(width):
        dst[i] = ((lanes[0, i] + lanes[1, i]) + (lanes[2, i] + lanes[3, i])) + (
            (lanes[4, i] + lanes[5, i]) + (lanes[6, i] + lanes[7, i])
        )
    for row in range(done, count):
        first = start + row * width
        for i in range(width):
            dst[i] += source[first + i]


@numba.njit(cache=True)
def combine_pairwise(partials, count):
    """Reduce rows ``partials[:count]`` into row 0 by adding neighbours, level by level."""
    width = partials.shape[1]
    while count > 1:
        half = count // 2
        for k in range(half):
            for i in range(width):
                partials[k, i] = partials[2 * k, i] + partials[2 * k + 1, i]
        if count % 2:
            for i in range(width):
                partials[half, i] = partials[count - 1, i]
        count = half + count % 2


def block_count(length: int) -> int:
    """Rows of block partials a tree sum of ``length`` values needs."""
    return max(1, math.ceil(length / BLOCK))


@numba.njit(cache=True)
def tree_sum(source, start, count, partials):
    """Sum, in float64, of ``source[start:start + count]`` (count >= 1) in the tree order.

    ``partials`` is float64 scratch of shape (>= block_count(count), >= 1), used only when
    ``count > BLOCK``."""
    blocks = (count + BLOCK - 1) // BLOCK
    if blocks == 1:
        return sum_block(source, start, count)
    for block in range(blocks):
        first = block * BLOCK
        partials[block, 0] = sum_block(source, start + first, min(BLOCK, count - first))
    combine_pairwise(partials, blocks)
    return partials[0, 0]


@numba.njit(cache=True)
def tree_sum_rows(source, start, count, lanes, partials, dst):
    """Column sums of ``count`` (>= 1) rows of ``len(dst)`` values from ``start`` on, into
    ``dst``, each column in the tree order, in float64. Scratch, float64: ``lanes``
    (LANES, len(dst)) and ``partials`` (block_count(count), len(dst))."""
    width = dst.shape[0]
    blocks = (count + BLOCK - 1) // BLOCK
    for block in range(blocks):
        first = block * BLOCK
        rows = min(BLOCK, count - first)
        sum_row_block(source, start + first * width, rows, lanes, partials[block])
    combine_pairwise(partials, blocks)
    for i in range(width):
        dst[i] = partials[0, i]


def sum_workspace(length: int, inner: int) -> tuple:
    """The float64 (lanes, partials) buffers ``sum_kernel`` needs for a layout."""
    blocks = block_count(length)
    if inner == 1:
        return (((0, 1), np.float64), ((blocks if blocks > 1 else 0, 1), np.float64))
    lane_rows = LANES if length >= LANES else 0
    return (((lane_rows, inner), np.float64), ((blocks, inner), np.float64))


# -- reduction kernels --------------------------------------------------------------------------


@numba.njit(cache=True)
def sum_kernel(source, out, length, lanes, partials):
    """out (outer, inner)[o, i] = tree sum over r of source at (o, r, i) in C order."""
    outer, inner = out.shape
    if length == 0:
        out[:] = 0
        return
    for o in range(outer):
        start = o * length * inner
        if inner == 1:
            out[o, 0] = tree_sum(source, start, length, partials)
        else:
            tree_sum_rows(source, start, length, lanes, partials, out[o])


@numba.njit(cache=True)
def extremum_kernel(source, out, length, take_max):
    """out (outer, inner)[o, i] = max (or min) over r of source at (o, r, i) in C order; a
    NaN anywhere makes the result NaN, as NumPy's max and min do."""
    outer, inner = out.shape
    for o in range(outer):
        row = out[o]
        start = o * length * inner
        for i in range(inner):
            row[i] = source[start + i]
        for r in range(1, length):
            first = start + r * inner
            for i in range(inner):
                value = source[first + i]
                better = value > row[i] if take_max else value < row[i]
                if better or value != value:
                    row[i] = value


# -- lowerings ----------------------------------------------------------------------------------
#
# The layout's numbers and the reading order are bound once, at bind, by each kernel's
# ``prepare``: the compiled functions are shape-generic, so one compile per dtype and rank
# serves every reduction (generating an entry point per shape cost a compile per shape,
# about 0.8 s each, which dominated cold starts).


@numba.njit(cache=True)
def sum_entry(data, out, length, lanes, partials):
    """Tree sum of ``data`` read in C order as (outer, length, inner) into ``out``."""
    sum_kernel(data.flat, out, length, lanes, partials)


@numba.njit(cache=True)
def extremum_entry(data, out, length, take_max):
    extremum_kernel(data.flat, out, length, take_max)


@numba.njit(cache=True)
def sum_around_entry(
    data, out, before, kept, after, lanes, partials, rows, row_lanes, row_partials
):
    """Sum of (before, kept, after) data over ``before`` and ``after`` (the bias gradient of
    a convolution: axes 0, 2, 3 of NCHW) in two tree stages that both stream contiguous
    memory: each contiguous run of ``after`` values is tree-summed into the float64 rows
    (before, kept), then the rows are tree-summed over ``before``. Reading the transposed
    view element by element instead measured 16 ms for LeNet's conv1 (100, 20, 24, 24)."""
    sum_kernel(data.flat, rows.reshape(before * kept, 1), after, lanes, partials)
    sum_kernel(rows.reshape(rows.size), out.reshape(1, kept), before, row_lanes, row_partials)


def _sum_around(spec: NodeSpec, layout: ReductionLayout, around: tuple[int, int, int]) -> Kernel:
    before, kept, after = around
    workspace = (
        *sum_workspace(after, 1),
        ((before, kept), np.float64),
        *sum_workspace(before, kept),
    )

    def prepare(inputs, outputs, workspace):
        return (inputs[0], outputs[0], before, kept, after, *workspace)

    return Kernel(fn=sum_around_entry, workspace=workspace, name=f"{spec.op}_tree", prepare=prepare)


def kept_run(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(before, kept, after) sizes when the kept axes form one run between reduced ones."""
    kept = [axis for axis in range(len(shape)) if axis not in axes and shape[axis] != 1]
    if not kept or kept != list(range(kept[0], kept[-1] + 1)):
        return None
    return (
        math.prod(shape[: kept[0]]),
        math.prod(shape[kept[0] : kept[-1] + 1]),
        math.prod(shape[kept[-1] + 1 :]),
    )


def reading_view(array: np.ndarray, layout: ReductionLayout) -> np.ndarray:
    """``array`` itself, or a transposed view of it that puts the reduced axes last."""
    return array if layout.order is None else np.transpose(array, layout.order)


def _sum_lowering(spec: NodeSpec, axes: tuple[int, ...]) -> Kernel:
    float_dtype(spec)
    layout = reduction_layout(spec.in_shapes[0], axes)
    around = kept_run(spec.in_shapes[0], axes) if layout.order is not None else None
    if around is not None:
        return _sum_around(spec, layout, around)

    def prepare(inputs, outputs, workspace):
        lanes, partials = workspace
        out = outputs[0].reshape(layout.outer, layout.inner)
        return (reading_view(inputs[0], layout), out, layout.length, lanes, partials)

    workspace = sum_workspace(layout.length, layout.inner)
    return Kernel(fn=sum_entry, workspace=workspace, name=f"{spec.op}_tree", prepare=prepare)


@lowering(TARGET, "sum")
def lower_sum(spec: NodeSpec) -> Kernel:
    """Tree sum over ``axis``; workspace: float64 lanes (8, inner) and block partials
    (blocks, inner) of the layout, empty where the layout needs none.

    >>> f64 = np.dtype("float64")
    >>> spec = NodeSpec("sum", "s", {"axis": 0, "keepdims": False}, ((300, 7),), (f64,),
    ...     ((7,),), (f64,))
    >>> [shape for shape, dtype in lower_sum(spec).workspace]
    [(8, 7), (3, 7)]
    """
    axes = reduced_axes(spec.attrs["axis"], len(spec.in_shapes[0]))
    return _sum_lowering(spec, axes)


@lowering(TARGET, "sum_to_like")
def lower_sum_to_like(spec: NodeSpec) -> Kernel:
    """Tree sum over the axes broadcasting added; ``like`` only lends its shape. Where
    nothing was broadcast the output is a view of the input and no kernel runs."""
    if tuple(spec.in_shapes[0]) == tuple(spec.out_shapes[0]):
        return Kernel(fn=None, view_of=0, name="sum_to_like_identity")
    axes = sum_to_like_axes(spec.in_shapes[0], spec.in_shapes[1])
    return _sum_lowering(spec, axes)


@lowering(TARGET, "max", "min")
def lower_extremum(spec: NodeSpec) -> Kernel:
    """Running maximum (minimum) over ``axis``, whole rows at a time; no workspace."""
    shape = spec.in_shapes[0]
    axes = reduced_axes(spec.attrs["axis"], len(shape))
    layout = reduction_layout(shape, axes)
    if layout.length == 0 and layout.outer * layout.inner:
        raise BackendError(f"{spec.name} ({spec.op}): a reduction over zero elements of {shape}")
    take_max = spec.op == "max"

    def prepare(inputs, outputs, workspace):
        out = outputs[0].reshape(layout.outer, layout.inner)
        return (reading_view(inputs[0], layout), out, layout.length, take_max)

    return Kernel(fn=extremum_entry, name=spec.op, prepare=prepare)


@numba.njit(cache=True)
def fill_scalar(out, value):
    out[()] = value


@lowering(TARGET, "_size")
def lower_size(spec: NodeSpec) -> Kernel:
    """Writes the (shape-derived, constant) element count over ``axis``."""
    shape = spec.in_shapes[0]
    count = float(math.prod(shape[axis] for axis in reduced_axes(spec.attrs["axis"], len(shape))))
    return Kernel(
        fn=fill_scalar, name="size", prepare=lambda inputs, outputs, ws: (outputs[0], count)
    )


_ADD_N = """\
# graphc add_n kernel of {count} inputs
import numba
import numpy as np


@numba.njit(cache=True)
def kernel({params}):
    flat_out = out.reshape(out.size)
{flats}
    for i in range(flat_out.size):
        flat_out[i] = {expression}
"""


@lowering(TARGET, "add_n")
def lower_add_n(spec: NodeSpec) -> Kernel:
    """Element-wise pairwise sum of the inputs in float64; inputs of any strides are read
    through ``.flat`` (C order), which costs nothing extra for C-contiguous ones.

    >>> pairwise = lower_add_n(NodeSpec("add_n", "g", {"num_args": 3}, ((2,),) * 3,
    ...     (np.dtype("float32"),) * 3, ((2,),), (np.dtype("float32"),)))
    >>> pairwise.source.splitlines()[-1].strip()
    'flat_out[i] = ((np.float64(flat0[i]) + np.float64(flat1[i])) + np.float64(flat2[i]))'
    """
    count = len(spec.in_shapes)
    names = [f"arg{k}" for k in range(count)]
    flats = "\n".join(f"    flat{k} = {name}.flat" for k, name in enumerate(names))
    expression = pairwise_expression([f"np.float64(flat{k}[i])" for k in range(count)])
    source = _ADD_N.format(
        count=count, params=", ".join([*names, "out"]), flats=flats, expression=expression
    )
    return Kernel(fn=load_kernel(source), name=f"add_n_{count}", source=source)
