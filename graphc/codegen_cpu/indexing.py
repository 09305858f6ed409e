"""CPU kernels for the ops that index with integer-valued arrays: ``Embedding``,
``_embedding_backward``, ``one_hot``, ``pick`` and ``_pick_backward``.

What each op computes is defined by its NumPy reference in ``graphc/ir/ops/indexing.py``.
Indices arrive as floats, as in MXNet. A value that is not an integer in range (NaN
included) raises ValueError naming the op, the position of the element in C order and the
allowed range; nothing is ever clipped or wrapped. Inputs may have any strides: they are
read through ``.flat`` in C order, and outputs, C-contiguous, are written through flat
views.
"""

from __future__ import annotations

import math

import numba

from graphc.backend.lowering import Kernel, NodeSpec, lowering
from graphc.codegen_cpu.target import TARGET
from graphc.ir.ops.indexing import IndexElementError
from graphc.ir.registry import normalize_axis


@numba.njit(cache=True)
def checked_index(value, limit):
    """``value`` as an int, or -1 unless it is an integer in [0, limit): each kernel raises
    IndexElementError with its own op's name (a name passed in here would be a string
    literal, and each name another compile of this function)."""
    if not (value >= 0 and value < limit) or value != math.floor(value):
        return -1
    return int(value)


# -- Embedding ---------------------------------------------------------------------------------


@numba.njit(cache=True)
def embedding_kernel(data, weight, out):
    """out[..., :] = weight[data[...], :]: one row of weight per index."""
    input_dim, output_dim = weight.shape
    rows = out.reshape((data.size, output_dim))
    for position, value in enumerate(data.flat):
        row = checked_index(value, input_dim)
        if row < 0:
            raise IndexElementError("Embedding", position, input_dim)
        for j in range(output_dim):
            rows[position, j] = weight[row, j]


@numba.njit(cache=True)
def embedding_backward_kernel(dy, indices, out):
    """out = zeros, then out[indices[k], :] += dy row k, for k in C order.

    The rows hit by repeated indices are added in index order, as ``np.add.at`` does, so
    the result equals the reference bit for bit."""
    input_dim, output_dim = out.shape
    out[:] = 0
    gradients = iter(dy.flat)
    for position, value in enumerate(indices.flat):
        row = checked_index(value, input_dim)
        if row < 0:
            raise IndexElementError("Embedding", position, input_dim)
        for j in range(output_dim):
            out[row, j] += next(gradients)


@lowering(TARGET, "Embedding")
def lower_embedding(spec: NodeSpec) -> Kernel:
    return Kernel(fn=embedding_kernel, name="embedding")


@lowering(TARGET, "_embedding_backward")
def lower_embedding_backward(spec: NodeSpec) -> Kernel:
    return Kernel(fn=embedding_backward_kernel, name="embedding_backward")


# -- one_hot and pick --------------------------------------------------------------------------


@numba.njit(cache=True)
def one_hot_kernel(indices, out, on_value, off_value):
    """out[..., k] = on_value where k == indices[...], off_value elsewhere."""
    depth = out.shape[-1]
    rows = out.reshape((indices.size, depth))
    rows[:] = off_value
    for position, value in enumerate(indices.flat):
        column = checked_index(value, depth)
        if column < 0:
            raise IndexElementError("one_hot", position, depth)
        rows[position, column] = on_value


@numba.njit(cache=True)
def pick_kernel(data, index, out, outer, axis_length, inner):
    """With data as (outer, axis_length, inner) and index, out as (outer, inner) in C order:
    out[o, i] = data[o, index[o, i], i]."""
    source = data.flat
    flat_out = out.reshape(out.size)
    for position, value in enumerate(index.flat):
        o = position // inner
        i = position - o * inner
        j = checked_index(value, axis_length)
        if j < 0:
            raise IndexElementError("pick", position, axis_length)
        flat_out[position] = source[(o * axis_length + j) * inner + i]


@numba.njit(cache=True)
def pick_backward_kernel(dy, index, out, outer, axis_length, inner):
    """out = zeros of (outer, axis_length, inner), then out[o, index[o, i], i] = dy[o, i]."""
    flat_out = out.reshape(out.size)
    flat_out[:] = 0
    gradients = iter(dy.flat)
    for position, value in enumerate(index.flat):
        o = position // inner
        i = position - o * inner
        j = checked_index(value, axis_length)
        if j < 0:
            raise IndexElementError("pick", position, axis_length)
        flat_out[(o * axis_length + j) * inner + i] = next(gradients)


def _bound(function, name: str, *constants) -> Kernel:
    """A kernel whose shape-derived constants follow its arrays, bound once at bind."""

    def prepare(inputs, outputs, workspace):
        return (*inputs, *outputs, *constants)

    return Kernel(fn=function, name=name, prepare=prepare)


@lowering(TARGET, "one_hot")
def lower_one_hot(spec: NodeSpec) -> Kernel:
    on_value, off_value = float(spec.attrs["on_value"]), float(spec.attrs["off_value"])
    return _bound(one_hot_kernel, "one_hot", on_value, off_value)


def pick_geometry(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    """(outer, axis_length, inner) of ``shape`` around ``axis``.

    >>> pick_geometry((2, 3, 5), -2)
    (2, 3, 5)
    """
    axis = normalize_axis(axis, len(shape))
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :])


@lowering(TARGET, "pick")
def lower_pick(spec: NodeSpec) -> Kernel:
    outer, axis_length, inner = pick_geometry(spec.in_shapes[0], spec.attrs["axis"])
    return _bound(pick_kernel, "pick", outer, axis_length, inner)


@lowering(TARGET, "_pick_backward")
def lower_pick_backward(spec: NodeSpec) -> Kernel:
    """Inputs (dy, index, like); ``like`` only lends its shape."""
    outer, axis_length, inner = pick_geometry(spec.in_shapes[2], spec.attrs["axis"])

    def prepare(inputs, outputs, workspace):
        dy, index, _like = inputs
        return (dy, index, *outputs, outer, axis_length, inner)

    return Kernel(fn=pick_backward_kernel, name="pick_backward", prepare=prepare)
