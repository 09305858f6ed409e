"""Elementwise kernels generated as source from the ops' scalar expressions.

Every op with a scalar expression (``OpDef.expr``) lowers here: the expression is
substituted with the operands' element reads and wrapped in a loop over the output. Inputs
that broadcast are read with index 0 on their size-1 axes, so no broadcast copy is made.
When every operand has the output's shape the loop is flat. The source is printable, cached
on disk by content, and compiled by Numba with NumPy's error model (x / 0 is inf, not an
exception), so results match the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from graphc.backend.lowering import Kernel, NodeSpec, lowering
from graphc.backend.scalar_expr import (
    full_index,
    needs_indices,
    operand_axes,
    read_index,
    read_positions,
    render_expression,
)
from graphc.backend.source_cache import load_kernel
from graphc.codegen_cpu.scalar_functions import CPU_SPELLINGS, NAMES
from graphc.codegen_cpu.target import TARGET
from graphc.codegen_cpu.threads import parallel_parts
from graphc.ir.registry import REGISTRY

HEADER = (
    "import math\n\nimport numba\nimport numpy as np\n\n"
    f"from graphc.codegen_cpu.scalar_functions import {', '.join(sorted(NAMES))}\n\n\n"
)
DECORATOR = "@numba.njit(cache=True, error_model='numpy', fastmath={fastmath}{parallel})\n"

# Elements of a flat loop from which it splits into one part per thread (``threads.py``).
# Below this the loop takes a few microseconds, about what a parallel region costs.
PARALLEL_ELEMENTS = 65_536


def decorator(fastmath: bool, parts: int = 1) -> str:
    """The generated kernel's ``@numba.njit(...)`` line; parallel when it has parts."""
    return DECORATOR.format(fastmath=bool(fastmath), parallel=", parallel=True" * (parts > 1))


def flat_parts(options, elements: int) -> int:
    """Parts of a flat elementwise loop over ``elements``: 1 below ``PARALLEL_ELEMENTS``."""
    return parallel_parts(options, elements, elements, PARALLEL_ELEMENTS)


def flat_loop_lines(
    elements, parts: int, indent: str = "    ", by_part: bool = False
) -> tuple[list[str], str]:
    """The loop header over flat index ``i`` in [0, elements) (a count, or the source of
    an expression that gives it at run time), split into ``parts`` ranges
    of a ``prange`` when there is more than one, and the indent of its body; ``by_part``:
    only the range of part ``part`` (a part function's, ``codegen_cpu.parts``). The index
    is unsigned: with a signed one Numba adds a wraparound select to every access of a loop
    that does not start at 0, and LLVM does not vectorize it (as in ``conv.py``)."""
    if parts <= 1:
        return [f"{indent}for i in range({elements}):"], indent + "    "
    if by_part:
        return [
            f"{indent}first = numba.uint64(part * {elements} // {parts})",
            f"{indent}last = numba.uint64((part + 1) * {elements} // {parts})",
            f"{indent}for i in range(first, last):",
        ], indent + "    "
    return [
        f"{indent}for part in numba.prange({parts}):",
        f"{indent}    first = numba.uint64(part * {elements} // {parts})",
        f"{indent}    last = numba.uint64((part + 1) * {elements} // {parts})",
        f"{indent}    for i in range(first, last):",
    ], indent + "        "


def loop_header(out_shape: tuple, array: str = "out0") -> tuple[list[str], str]:
    """Nested loops over ``out_shape``: the lines and the indent of the loop body."""
    lines, indent = [], "    "
    for axis in range(len(out_shape)):
        lines.append(f"{indent}for i{axis} in range({array}.shape[{axis}]):")
        indent += "    "
    return lines, indent


def render_kernel(
    op: str,
    attrs,
    in_shapes: Sequence[tuple],
    out_shape: tuple,
    fastmath: bool = False,
    options=None,
) -> str:
    """Source of a Numba kernel computing one elementwise op into ``out0``.

    fastmath is off unless asked for: results then match the reference bit for bit in
    order of operations, and NaN and infinity behave as in NumPy."""
    used = read_positions(op, attrs)
    params = [f"in{i}" for i in range(len(in_shapes))] + ["out0"]
    lines = []
    flat = (
        all(tuple(in_shapes[i]) == tuple(out_shape) for i in used)
        and len(out_shape) != 0
        and not needs_indices(op, attrs)
    )
    if flat:
        elements = math.prod(out_shape)
        parts = flat_parts(options or {}, elements)
        lines.append(HEADER + decorator(fastmath, parts) + f"def kernel({', '.join(params)}):")
        lines.append("    flat_out = out0.ravel()")
        for i in used:
            lines.append(f"    flat{i} = in{i}.ravel()")
        # The length is read at run time: one compiled kernel serves every batch size.
        loop, indent = flat_loop_lines("flat_out.size", parts)
        lines += loop
        operands = {i: f"flat{i}[i]" for i in used}
        expression = render_expression(
            op, attrs, _operand_list(operands, in_shapes), out_shape, CPU_SPELLINGS
        )
        lines.append(f"{indent}flat_out[i] = {expression}")
        return "\n".join(lines) + "\n"
    lines.append(HEADER + decorator(fastmath) + f"def kernel({', '.join(params)}):")
    loops, indent = loop_header(tuple(out_shape))
    lines.extend(loops)
    operands = {
        i: f"in{i}"
        + read_index(
            tuple(in_shapes[i]), tuple(out_shape), operand_axes(op, attrs, len(out_shape), i)
        )
        for i in used
    }
    expression = render_expression(
        op, attrs, _operand_list(operands, in_shapes), out_shape, CPU_SPELLINGS
    )
    lines.append(f"{indent}out0{full_index(tuple(out_shape))} = {expression}")
    return "\n".join(lines) + "\n"


def _operand_list(operands: dict[int, str], in_shapes: Sequence) -> list[str]:
    """Operand expressions by input position; shape-only inputs are never read."""
    return [operands.get(position, "None") for position in range(len(in_shapes))]


def lower_elementwise(spec: NodeSpec) -> Kernel:
    fastmath = bool(spec.options.get("fastmath", False))
    source = render_kernel(
        spec.op, spec.attrs, spec.in_shapes, spec.out_shapes[0], fastmath, spec.options
    )
    return Kernel(
        fn=load_kernel(source), name=f"elementwise_{spec.op}", source=source, elementwise=True
    )


# Every op that defines a scalar expression is elementwise, except BlockGrad (a copy kernel
# elsewhere, so its gradient-stopping role stays visible in profiles).
_OPS = sorted(
    name for name, opdef in REGISTRY.items() if opdef.expr is not None and name != "BlockGrad"
)
lowering(TARGET, *_OPS)(lower_elementwise)
