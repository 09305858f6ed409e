"""Elementwise kernels generated as source from the ops' scalar expressions.

Every op with a scalar expression (``OpDef.expr``) lowers here: the expression is
substituted with the operands' element reads and wrapped in a loop over the output. Inputs
that broadcast are read with index 0 on their size-1 axes, so no broadcast copy is made.
When every operand has the output's shape the loop is flat. The source is printable, cached
on disk by content, and compiled by Numba with NumPy's error model (x / 0 is inf, not an
exception), so results match the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

from graphc.codegen_cpu.lowering import Kernel, NodeSpec, lowering
from graphc.ir.registry import REGISTRY, get_op
from graphc.runtime.cache import load_kernel

HEADER = "import math\n\nimport numba\n\n\n"
DECORATOR = "@numba.njit(cache=True, error_model='numpy', fastmath={fastmath})\n"

# Ops whose expression reads only some inputs; the others only lend a shape.
_UNUSED_TRAILING_INPUTS = {"zeros_like": 1, "ones_like": 1, "broadcast_like": 1}


def expression_template(op: str, attrs) -> str:
    expr = get_op(op).expr
    return expr(attrs) if callable(expr) else expr


def render_expression(op: str, attrs, operands: Sequence[str]) -> str:
    """The op's scalar expression over the given operand expressions."""
    values = {key: repr(value) for key, value in attrs.items() if isinstance(value, (int, float))}
    return "(" + expression_template(op, attrs).format(*operands, **values) + ")"


def _index(in_shape: tuple, out_shape: tuple) -> str:
    """How to read an input of ``in_shape`` at the loop indices of ``out_shape``."""
    if not in_shape:
        return "[()]"
    offset = len(out_shape) - len(in_shape)
    parts = [
        f"i{offset + axis}" if dim != 1 or out_shape[offset + axis] == 1 else "0"
        for axis, dim in enumerate(in_shape)
    ]
    return "[" + ", ".join(parts) + "]"


def render_kernel(
    op: str, attrs, in_shapes: Sequence[tuple], out_shape: tuple, fastmath: bool = False
) -> str:
    """Source of a Numba kernel computing one elementwise op into ``out0``.

    fastmath is off unless asked for: results then match the reference bit for bit in
    order of operations, and NaN and infinity behave as in NumPy."""
    used = len(in_shapes) - _UNUSED_TRAILING_INPUTS.get(op, 0)
    params = [f"in{i}" for i in range(len(in_shapes))] + ["out0"]
    decorator = DECORATOR.format(fastmath=bool(fastmath))
    lines = [HEADER + decorator + f"def kernel({', '.join(params)}):"]
    flat = (
        all(tuple(shape) == tuple(out_shape) for shape in in_shapes[:used]) and len(out_shape) != 0
    )
    if flat:
        lines.append("    flat_out = out0.ravel()")
        for i in range(used):
            lines.append(f"    flat{i} = in{i}.ravel()")
        lines.append("    for i in range(flat_out.size):")
        operands = [f"flat{i}[i]" for i in range(used)]
        lines.append(f"        flat_out[i] = {render_expression(op, attrs, operands)}")
        return "\n".join(lines) + "\n"
    indent = "    "
    for axis in range(len(out_shape)):
        lines.append(f"{indent}for i{axis} in range(out0.shape[{axis}]):")
        indent += "    "
    operands = [f"in{i}{_index(tuple(in_shapes[i]), tuple(out_shape))}" for i in range(used)]
    target = "out0" + (
        "[()]" if not out_shape else "[" + ", ".join(f"i{a}" for a in range(len(out_shape))) + "]"
    )
    lines.append(f"{indent}{target} = {render_expression(op, attrs, operands)}")
    return "\n".join(lines) + "\n"


def lower_elementwise(spec: NodeSpec) -> Kernel:
    fastmath = bool(spec.options.get("fastmath", False))
    source = render_kernel(spec.op, spec.attrs, spec.in_shapes, spec.out_shapes[0], fastmath)
    return Kernel(fn=load_kernel(source), name=f"elementwise_{spec.op}", source=source)


# Every op that defines a scalar expression is elementwise, except BlockGrad (a copy kernel
# elsewhere, so its gradient-stopping role stays visible in profiles).
_OPS = sorted(
    name for name, opdef in REGISTRY.items() if opdef.expr is not None and name != "BlockGrad"
)
lowering(*_OPS)(lower_elementwise)
