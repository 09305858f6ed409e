"""Elementwise CUDA kernels generated from the ops' scalar expressions, as on the CPU.

The expression is the registry's (``backend.scalar_expr``), spelled over element reads; a
grid-stride loop covers the output, one element per thread per pass. When every operand
has the output's shape the arrays are read flat (``prepare`` passes 1-D views); otherwise
the loop unravels its flat index over the output's shape, read at run time so one compiled
kernel serves every batch size, and a broadcast input is read at index 0 on its size-1
axes, as the CPU's kernels read it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from graphc.backend.lowering import Kernel, NodeSpec, lowering
from graphc.backend.scalar_expr import (
    needs_indices,
    operand_axes,
    read_index,
    read_positions,
    render_expression,
)
from graphc.backend.source_cache import load_kernel
from graphc.codegen_cuda.target import TARGET, THREADS, Launch, blocks_for
from graphc.ir.registry import REGISTRY

HEADER = "import math\n\nfrom numba import cuda\n\n\n"
DECORATOR = "@cuda.jit(cache=True, fastmath={fastmath})\n"
UNSUPPORTED = ("one_hot_like",)
"""Ops with a scalar expression the CUDA backend does not lower yet: ``one_hot_like``
checks its labels by raising, which a CUDA kernel cannot (an error flag is to come)."""


def is_flat(op: str, attrs, in_shapes: Sequence[tuple], out_shape: tuple) -> bool:
    used = read_positions(op, attrs)
    return all(tuple(in_shapes[i]) == tuple(out_shape) for i in used) and not needs_indices(
        op, attrs
    )


def render_kernel(
    op: str, attrs, in_shapes: Sequence[tuple], out_shape: tuple, fastmath: bool = False
) -> str:
    """Source of a CUDA kernel computing one elementwise op into ``out0``."""
    used = read_positions(op, attrs)
    params = [f"in{i}" for i in range(len(in_shapes))] + ["out0"]
    lines = [
        HEADER + DECORATOR.format(fastmath=bool(fastmath)) + f"def kernel({', '.join(params)}):"
    ]
    lines += ["    start = cuda.grid(1)", "    stride = cuda.gridsize(1)"]
    if is_flat(op, attrs, in_shapes, out_shape):
        lines.append("    for i in range(start, out0.size, stride):")
        operands = {i: f"in{i}[i]" for i in used}
        expression = render_expression(op, attrs, _operands(operands, in_shapes), out_shape)
        lines.append(f"        out0[i] = {expression}")
        return "\n".join(lines) + "\n"
    ndim = len(out_shape)
    lines.append("    for flat in range(start, out0.size, stride):")
    lines.append("        rest = flat")
    for axis in range(ndim - 1, 0, -1):
        lines.append(f"        i{axis} = rest % out0.shape[{axis}]")
        lines.append(f"        rest //= out0.shape[{axis}]")
    lines.append("        i0 = rest")
    operands = {}
    for i in used:
        shape = tuple(in_shapes[i])
        if not shape:
            operands[i] = f"in{i}[0]"  # prepare passes a 0-d input as one element
        else:
            axes = operand_axes(op, attrs, ndim, i)
            operands[i] = f"in{i}" + read_index(shape, tuple(out_shape), axes)
    expression = render_expression(op, attrs, _operands(operands, in_shapes), out_shape)
    index = ", ".join(f"i{axis}" for axis in range(ndim))
    lines.append(f"        out0[{index}] = {expression}")
    return "\n".join(lines) + "\n"


def _operands(operands: dict[int, str], in_shapes: Sequence) -> list[str]:
    return [operands.get(position, "None") for position in range(len(in_shapes))]


def lower_elementwise(spec: NodeSpec) -> Kernel:
    out_shape = tuple(spec.out_shapes[0])
    # A 0-d output is computed as one flat element (CUDA kernels index arrays of rank >= 1).
    shape = out_shape if out_shape else (1,)
    in_shapes = [tuple(s) if (tuple(s) or out_shape) else (1,) for s in spec.in_shapes]
    fastmath = bool(spec.options.get("fastmath", False))
    source = render_kernel(spec.op, spec.attrs, in_shapes, shape, fastmath)
    elements = math.prod(shape)
    launch = Launch(load_kernel(source, "kernel", TARGET), (blocks_for(elements),), (THREADS,))
    flat = is_flat(spec.op, spec.attrs, in_shapes, shape)

    def prepare(inputs, outputs, workspace):
        def laid_out(array, wanted):
            if flat or not array.shape:
                return array.reshape(math.prod(wanted) if wanted else 1)
            return array

        arrays = [laid_out(array, wanted) for array, wanted in zip(inputs, in_shapes)]
        return (*arrays, laid_out(outputs[0], shape))

    return Kernel(
        fn=launch,
        name=f"cuda_elementwise_{spec.op}",
        source=source,
        prepare=prepare,
        elementwise=True,
    )


_OPS = sorted(
    name
    for name, opdef in REGISTRY.items()
    if opdef.expr is not None and name != "BlockGrad" and name not in UNSUPPORTED
)
lowering(TARGET, *_OPS)(lower_elementwise)
