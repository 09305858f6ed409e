"""The scalar-expression emitter every backend shares: an op's scalar expression
(``OpDef.expr``) spelled over operand reads, and the index expressions that read a
broadcast input at the loop's indices ``i0, i1, ...``. A backend wraps these in its own
loops (``codegen_cpu.elementwise`` and ``codegen_cpu.fused`` in Python loops for Numba)
and passes its own spellings of the math functions; nothing here is CPU-specific.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from graphc.ir.ops.fused import CONST, INPUT, MEMBER
from graphc.ir.registry import get_op


def expression_template(op: str, attrs) -> str:
    expr = get_op(op).expr
    return expr(attrs) if callable(expr) else expr


def read_positions(op: str, attrs) -> list[int]:
    """Positions of the inputs an op's expression reads (shape-only inputs are skipped)."""
    opdef = get_op(op)
    names = opdef.input_names(attrs)
    return [position for position, name in enumerate(names) if name not in opdef.shape_only]


def operand_axes(op: str, attrs, out_ndim: int, position: int):
    """The output axes input ``position`` is indexed by (None: NumPy's trailing alignment)."""
    rule = get_op(op).operand_axes
    return None if rule is None else rule(attrs, out_ndim, position)


def render_expression(
    op: str,
    attrs,
    operands: Sequence[str],
    out_shape: tuple,
    spellings: Mapping[str, str] | None = None,
) -> str:
    """The op's scalar expression over the given operand expressions; ``{index}`` and
    ``{extent}`` become the loop index ``i<axis>`` and the output length along the op's
    ``axis``; ``spellings`` replace the expression's functions with a target's own (the
    CPU's vectorizing float32 tanh for ``math.tanh``)."""
    values = {key: repr(value) for key, value in attrs.items() if isinstance(value, (int, float))}
    if "axis" in attrs and isinstance(attrs["axis"], int) and out_shape:
        axis = attrs["axis"] % len(out_shape)
        values["index"] = f"i{axis}"
        values["extent"] = str(out_shape[axis])
    text = expression_template(op, attrs)
    for spelling, target_spelling in (spellings or {}).items():
        text = text.replace(spelling, target_spelling)
    return "(" + text.format(*operands, **values) + ")"


def needs_indices(op: str, attrs) -> bool:
    """Whether the op's expression reads loop indices (so a flat loop will not do)."""
    return "{index}" in expression_template(op, attrs) or get_op(op).operand_axes is not None


def read_index(in_shape: tuple, out_shape: tuple, axes: Sequence[int] | None = None) -> str:
    """How to read an input of ``in_shape`` at the loop indices of ``out_shape``: along
    ``axes`` (one output axis per input dimension) or, by default, aligned to the trailing
    axes; size-1 dimensions of a broadcast input are read at index 0."""
    if not in_shape:
        return "[()]"
    if axes is None:
        offset = len(out_shape) - len(in_shape)
        axes = [offset + axis for axis in range(len(in_shape))]
    parts = [
        f"i{out_axis}" if dim != 1 or out_shape[out_axis] == 1 else "0"
        for dim, out_axis in zip(in_shape, axes)
    ]
    return "[" + ", ".join(parts) + "]"


def full_index(out_shape: tuple) -> str:
    if not out_shape:
        return "[()]"
    return "[" + ", ".join(f"i{axis}" for axis in range(len(out_shape))) + "]"


def literal(value: float, dtype) -> str:
    """A constant in generated source, rounded to ``dtype`` as a stored scalar would be."""
    if math.isnan(value):
        text = "math.nan"
    elif math.isinf(value):
        text = "math.inf" if value > 0 else "-math.inf"
    else:
        text = repr(float(value))
    return f"np.{np.dtype(dtype).name}({text})"


def pairwise_expression(operands: list[str]) -> str:
    """Source adding ``operands`` as a balanced tree, in order.

    >>> pairwise_expression(["a", "b", "c", "d", "e"])
    '(((a + b) + (c + d)) + e)'
    """
    level = list(operands)
    while len(level) > 1:
        paired = [f"({level[k]} + {level[k + 1]})" for k in range(0, len(level) - 1, 2)]
        level = paired + level[len(paired) * 2 :]
    return level[0]


def reads_at_position(member, in_shapes: Sequence[tuple], shape: tuple) -> bool:
    """Whether a fused node's ``member`` (``ir.ops.fused.Member``) reads every input it uses
    at the loop's own position: its expression reads no loop index and each such input has
    the iteration ``shape`` (so a flat loop can read it). An anchor (no expression) writes
    an output of the iteration shape, which the loop reads at its position too."""
    if get_op(member.op).expr is None:
        return True
    if needs_indices(member.op, member.attr_map):
        return False
    used = read_positions(member.op, member.attr_map)
    for position, (kind, value) in enumerate(member.operands):
        if kind == INPUT and position in used and tuple(in_shapes[value]) != tuple(shape):
            return False
    return True


def member_operands(
    member,
    in_shapes: Sequence[tuple],
    shape: tuple,
    dtype,
    read_flat: Callable[[int], str] | None = None,
    read_scalar: Callable[[int], str] | None = None,
) -> list[str]:
    """The source of each operand of a fused node's ``member`` at the loop's position: an
    earlier member's local ``v<j>``, a constant rounded to ``dtype``, or input ``k`` read
    flat (``read_flat(k)``, given in a flat loop) or at the loop indices ``i0, i1, ...``
    (broadcast as ``read_index`` reads it; a 0-d input through ``read_scalar(k)`` where the
    target passes it otherwise). ``"None"`` for an operand the expression does not read."""
    used = read_positions(member.op, member.attr_map)
    operands = []
    for position, (kind, value) in enumerate(member.operands):
        if position not in used:
            operands.append("None")
        elif kind == MEMBER:
            operands.append(f"v{value}")
        elif kind == CONST:
            operands.append(literal(value, dtype))
        elif read_flat is not None:
            operands.append(read_flat(value))
        elif read_scalar is not None and not in_shapes[value]:
            operands.append(read_scalar(value))
        else:
            axes = operand_axes(member.op, member.attr_map, len(shape), position)
            operands.append(f"in{value}" + read_index(tuple(in_shapes[value]), shape, axes))
    return operands
