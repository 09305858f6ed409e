"""The fused node: several ops of the original graph computed by one kernel.

Fusion (``graphc.passes.fuse``) replaces a group of nodes by one ``_fused`` node whose
``members`` attribute lists the replaced nodes in order, each with its op, attributes, name
and the user's file:line (the provenance that errors and listings show), and whose operands
refer to the fused node's inputs, to earlier members, or to inlined scalar constants. The
``outputs`` attribute says which member outputs leave the group.

The meaning of a fused node is the meaning of its members: its shape rule, dtype rule and
NumPy reference run the members' own rules in order, so the reference executor checks a
fused graph exactly as it checks the original. Fusion runs after differentiation, so a
fused node has no gradient rule of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphc.ir.registry import Attr, EvalContext, OpDef, get_op, register, same_dtype_rule

INPUT, MEMBER, CONST = "input", "member", "const"
"""Operand kinds: an input of the fused node, an earlier member's output 0, a constant."""

ANCHOR_OPS = frozenset(
    {
        "FullyConnected",
        "Convolution",
        "dot",
        "batch_dot",
        "_conv_backward_data",
        "Pooling",
        "_max_pool_backward",
        "_avg_pool_backward",
    }
)
"""Ops that may lead a fused node as its anchor (member 0, whose output 0 the elementwise
members read): each writes its whole output at once and takes no Dropout counter. A target
declares which of them its kernels can anchor (``passes.fuse.FusionCapabilities``)."""

REDUCTIONS = frozenset({"sum", "sum_to_like"})
"""Reductions that may be members of a fused node, accumulating inside its loop."""


@dataclass(frozen=True)
class Member:
    """One original node inside a fused node.

    ``operands`` hold ``(kind, value)`` pairs: ``("input", k)`` the fused node's input k,
    ``("member", j)`` output 0 of member j (always an earlier member), ``("const", x)`` a
    scalar constant inlined from a ``_scalar`` node."""

    op: str
    attrs: tuple[tuple[str, Any], ...]
    operands: tuple[tuple[str, Any], ...]
    name: str
    source: str

    @property
    def attr_map(self) -> dict[str, Any]:
        return dict(self.attrs)


def members_of(attrs: Mapping) -> tuple[Member, ...]:
    return attrs["members"]


def _input_names(attrs: Mapping) -> tuple[str, ...]:
    count = 0
    for member in members_of(attrs):
        for kind, value in member.operands:
            if kind == INPUT:
                count = max(count, value + 1)
    return tuple(f"input{index}" for index in range(count))


def _output_names(attrs: Mapping) -> tuple[str, ...]:
    members = members_of(attrs)
    return tuple(f"{members[member].name}_output{index}" for member, index in attrs["outputs"])


def run_members(attrs: Mapping, inputs: Sequence, constant, apply) -> list[list]:
    """Run ``apply(member, operand_values) -> output values`` over the members in order and
    return every member's outputs. ``constant(value)`` gives a const operand's value."""
    results: list[list] = []
    for member in members_of(attrs):
        operands = []
        for kind, value in member.operands:
            if kind == INPUT:
                operands.append(inputs[value])
            elif kind == MEMBER:
                operands.append(results[value][0])
            else:
                operands.append(constant(value))
        results.append(list(apply(member, operands)))
    return results


def member_shapes(attrs: Mapping, in_shapes: Sequence) -> list[list]:
    """The output shapes of every member, from the fused node's input shapes."""
    return _run_shape_rules(attrs, in_shapes)[1]


def _run_shape_rules(attrs: Mapping, in_shapes: Sequence) -> tuple[list, list[list]]:
    """The members' shape rules in order: the input shapes, with those a member's rule
    fills in (a layer's weight from the data, as the unfused node would) filled in, and
    every member's output shapes."""
    filled = list(in_shapes)

    def apply(member: Member, shapes: list) -> list:
        new_in, out = get_op(member.op).infer_shape(member.attr_map, shapes)
        for (kind, value), shape in zip(member.operands, new_in):
            if kind == INPUT and filled[value] is None and shape is not None:
                filled[value] = tuple(shape)
        return out

    # run_members reads ``filled`` afresh for every member, so later members see the fills.
    results = run_members(attrs, filled, lambda value: (), apply)
    return filled, results


def member_dtypes(attrs: Mapping, in_dtypes: Sequence) -> list[list]:
    """The output dtypes of every member (constants take their consumer's dtype)."""

    def apply(member: Member, dtypes: list) -> list:
        opdef = get_op(member.op)
        rule = opdef.infer_type or same_dtype_rule
        _, out = rule(member.attr_map, list(dtypes))
        count = opdef.num_outputs(member.attr_map)
        return list(out) if isinstance(out, (list, tuple)) else [out] * count

    return run_members(attrs, in_dtypes, lambda value: None, apply)


def _pick(attrs: Mapping, per_member: list[list]) -> list:
    return [per_member[member][index] for member, index in attrs["outputs"]]


def _infer_shape(attrs, in_shapes):
    filled, results = _run_shape_rules(attrs, in_shapes)
    return filled, _pick(attrs, results)


def _infer_type(attrs, in_dtypes):
    return in_dtypes, _pick(attrs, member_dtypes(attrs, in_dtypes))


def _forward(attrs, inputs, ctx: EvalContext):
    dtypes = member_dtypes(attrs, [np.asarray(value).dtype for value in inputs])
    members = members_of(attrs)
    position = iter(range(len(members)))

    def apply(member: Member, values: list) -> list:
        outputs = get_op(member.op).forward(member.attr_map, values, ctx)
        expected = dtypes[next(position)]
        return [
            np.asarray(value).astype(dtype, copy=False) if dtype is not None else value
            for value, dtype in zip(outputs, expected)
        ]

    with np.errstate(all="ignore"):  # members compute what the unfused nodes computed
        results = run_members(attrs, inputs, np.array, apply)
    return _pick(attrs, results)


register(
    OpDef(
        name="_fused",
        inputs=_input_names,
        outputs=_output_names,
        attrs=(
            Attr("members", "records", doc="the replaced nodes, in order"),
            Attr("outputs", "records", doc="(member, output index) of each output"),
        ),
        infer_shape=_infer_shape,
        infer_type=_infer_type,
        forward=_forward,
        grad=None,
        doc="Several original nodes computed by one kernel (built by the fusion pass, after"
        " differentiation, so it has no gradient rule).",
    )
)
