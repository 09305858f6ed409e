"""CUDA kernels for the ops that index with integer-valued arrays: ``Embedding``,
``_embedding_backward``, ``one_hot``, ``pick`` and ``_pick_backward``, with the meaning of
their NumPy references (``graphc/ir/ops/indexing.py``).

Indices arrive as floats, as in MXNet. One that is not an integer in range (NaN included)
is never clipped or wrapped: the kernel records the first index position holding one in a
fault flag and the launch raises ValueError naming the op, that position and the range, as
the CPU's kernels do (``faults.py``). Every kernel writes each output element from one
thread: the gradients are gathers (``_embedding_backward`` sums, for each row of the
weight, the rows of ``dy`` whose index names it, in index order and in its dtype, as the
reference's ``np.add.at``), so no atomics add floats and the results are the same on every
run.
"""

from __future__ import annotations

import math

import numpy as np

from graphc.backend.lowering import Kernel, NodeSpec, lowering
from graphc.codegen_cuda.faults import FaultFlag
from graphc.codegen_cuda.loops import grid_stride_launch, grid_stride_source
from graphc.codegen_cuda.target import TARGET
from graphc.ir.registry import normalize_axis

CHECKED = """

@cuda.jit(device=True, inline="always")
def checked(value, limit, position, fault):
    # The index as an int; -1 (and the position recorded) unless an integer in [0, limit).
    if not (value >= 0 and value < limit) or value != math.floor(value):
        cuda.atomic.min(fault, 0, position)
        return -1
    return int64(value)
"""


def _indexing_kernel(
    spec: NodeSpec, what: str, limit: int, params, size: str, body, arrays
) -> Kernel:
    """A checked grid-stride kernel over ``size`` positions; ``arrays(inputs, outputs)``
    gives its array arguments, the fault flag follows them."""
    fault = FaultFlag(f"{what}: index element {{position}} is not an integer in [0, {limit})")
    source = grid_stride_source([*params, "fault"], size, body, prelude=CHECKED)
    launch = grid_stride_launch(source, math.prod(spec.out_shapes[0]), check=fault.check)

    def prepare(inputs, outputs, workspace):
        return (*arrays(inputs, outputs), fault.flag)

    return Kernel(fn=launch, name=f"cuda_{spec.op}", source=source, prepare=prepare)


def _flat(array):
    return array.reshape(max(1, math.prod(array.shape)))


@lowering(TARGET, "Embedding")
def lower_embedding(spec: NodeSpec) -> Kernel:
    """out[p, :] = weight[data[p], :], one thread per output element."""
    input_dim, output_dim = spec.in_shapes[1]
    body = [
        f"p = flat // {output_dim}",
        f"row = checked(data[p], {input_dim}, p, fault)",
        f"out[flat] = weight[row, flat - p * {output_dim}] if row >= 0 else 0",
    ]
    return _indexing_kernel(
        spec, "Embedding", input_dim, ["data", "weight", "out"], "out.size", body,
        lambda inputs, outputs: (_flat(inputs[0]), inputs[1], _flat(outputs[0])),
    )  # fmt: skip


@lowering(TARGET, "_embedding_backward")
def lower_embedding_backward(spec: NodeSpec) -> Kernel:
    """out[r, j] = the sum, in index order, of dy[p, j] over the positions p whose index is
    r: one thread per element of the weight's gradient, each reading every index."""
    input_dim, output_dim = spec.out_shapes[0]
    kind = np.dtype(spec.out_dtypes[0]).name
    body = [  # added in the gradient's dtype, in index order: the reference's np.add.at sums
        f"r = flat // {output_dim}",
        f"j = flat - r * {output_dim}",
        f"total = {kind}(0)",
        "for p in range(indices.size):",
        f"    if checked(indices[p], {input_dim}, p, fault) == r:",
        f"        total += dy[p * {output_dim} + j]",
        "out[flat] = total",
    ]
    return _indexing_kernel(
        spec, "Embedding", input_dim, ["dy", "indices", "out"], "out.size", body,
        lambda inputs, outputs: (_flat(inputs[0]), _flat(inputs[1]), _flat(outputs[0])),
    )  # fmt: skip


@lowering(TARGET, "one_hot")
def lower_one_hot(spec: NodeSpec) -> Kernel:
    depth = spec.out_shapes[0][-1]
    on_value, off_value = float(spec.attrs["on_value"]), float(spec.attrs["off_value"])
    body = [
        f"p = flat // {depth}",
        f"k = checked(indices[p], {depth}, p, fault)",
        f"out[flat] = {on_value!r} if k == flat - p * {depth} else {off_value!r}",
    ]
    return _indexing_kernel(
        spec, "one_hot", depth, ["indices", "out"], "out.size", body,
        lambda inputs, outputs: (_flat(inputs[0]), _flat(outputs[0])),
    )  # fmt: skip


def pick_geometry(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    """(outer, axis_length, inner) of ``shape`` around ``axis``."""
    axis = normalize_axis(axis, len(shape))
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :])


@lowering(TARGET, "pick")
def lower_pick(spec: NodeSpec) -> Kernel:
    """out[o, i] = data[o, index[o, i], i]."""
    outer, length, inner = pick_geometry(spec.in_shapes[0], spec.attrs["axis"])
    body = [
        f"o = flat // {inner}",
        f"i = flat - o * {inner}",
        f"j = checked(index[flat], {length}, flat, fault)",
        "out[flat] = data[o, j, i] if j >= 0 else 0",
    ]
    return _indexing_kernel(
        spec, "pick", length, ["data", "index", "out"], "out.size", body,
        lambda inputs, outputs: (
            inputs[0].reshape(max(1, outer), length, max(1, inner)), _flat(inputs[1]),
            _flat(outputs[0]),
        ),
    )  # fmt: skip


@lowering(TARGET, "_pick_backward")
def lower_pick_backward(spec: NodeSpec) -> Kernel:
    """Inputs (dy, index, like): out[o, l, i] = dy[o, i] where l == index[o, i], else 0."""
    outer, length, inner = pick_geometry(spec.in_shapes[2], spec.attrs["axis"])
    body = [
        f"o = flat // ({length} * {inner})",
        f"rest = flat - o * ({length} * {inner})",
        f"l = rest // {inner}",
        f"i = rest - l * {inner}",
        f"j = checked(index[o * {inner} + i], {length}, o * {inner} + i, fault)",
        f"out[flat] = dy[o * {inner} + i] if j == l else 0",
    ]
    return _indexing_kernel(
        spec, "pick", length, ["dy", "index", "out"], "out.size", body,
        lambda inputs, outputs: (_flat(inputs[0]), _flat(inputs[1]), _flat(outputs[0])),
    )  # fmt: skip
