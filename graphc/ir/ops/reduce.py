"""Reductions: sum, max, min over axes (mean is sum over a size), and the size helper."""

from __future__ import annotations

import numpy as np

from graphc.ir.ops.broadcast import broadcast_like
from graphc.ir.ops.elementwise import equal
from graphc.ir.ops.shape_ops import expand_dims
from graphc.ir.registry import (
    Attr,
    OpDef,
    get_op,
    known,
    normalize_axis,
    register,
    require,
    size_of,
)
from graphc.ir.symbol import Symbol, apply_op, make_constructor


def reduced_axes(axis, ndim: int) -> tuple[int, ...]:
    """The sorted, non-negative axes a reduction runs over (all of them when ``axis`` is None)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    normalized = tuple(sorted(normalize_axis(a, ndim) for a in axes))
    require(len(set(normalized)) == len(normalized), f"repeated axis in {axis}")
    return normalized


def _reduce_shape(attrs, in_shapes):
    source = known(in_shapes[0])
    axes = reduced_axes(attrs["axis"], len(source))
    if attrs["keepdims"]:
        out = tuple(1 if i in axes else dim for i, dim in enumerate(source))
    else:
        out = tuple(dim for i, dim in enumerate(source) if i not in axes)
    return in_shapes, [out]


def _restore_axes(args, value: Symbol) -> Symbol:
    """Put the reduced axes back as size 1 so ``value`` broadcasts against the input."""
    if args.attrs["keepdims"]:
        return value
    axis = args.attrs["axis"]
    if axis is None:
        return value  # a 0-d value broadcasts to anything
    # expand_dims counts axes in its output, whose rank is the input's: the reduction's
    # axes, negative ones included, name the same positions there.
    return expand_dims(value, axis=axis)


def _sum_grad(args):
    return [broadcast_like(_restore_axes(args, args.out_grads[0]), args.inputs[0])]


def _extremum_grad(args):
    # The gradient flows to every element equal to the extremum (all of a tie).
    x = args.inputs[0]
    y = broadcast_like(_restore_axes(args, args.outputs[0]), x)
    dy = broadcast_like(_restore_axes(args, args.out_grads[0]), x)
    return [dy * equal(x, y)]


_REDUCE_ATTRS = (Attr("axis", "axis", None), Attr("keepdims", "bool", False))


def _reducer(fn):
    def forward(attrs, inputs, ctx):
        data = inputs[0]
        axes = reduced_axes(attrs["axis"], data.ndim)
        return [np.asarray(fn(data, axis=axes, keepdims=attrs["keepdims"]))]

    return forward


register(
    OpDef(
        name="sum",
        attrs=_REDUCE_ATTRS,
        infer_shape=_reduce_shape,
        forward=_reducer(np.sum),
        grad=_sum_grad,
        doc="Sum over ``axis`` (all axes when None).",
    )
)
register(
    OpDef(
        name="max",
        attrs=_REDUCE_ATTRS,
        infer_shape=_reduce_shape,
        forward=_reducer(np.max),
        grad=_extremum_grad,
        doc="Maximum over ``axis``; the gradient goes to every maximal element.",
    )
)
register(
    OpDef(
        name="min",
        attrs=_REDUCE_ATTRS,
        infer_shape=_reduce_shape,
        forward=_reducer(np.min),
        grad=_extremum_grad,
        doc="Minimum over ``axis``; the gradient goes to every minimal element.",
    )
)


def _size_shape(attrs, in_shapes):
    source = known(in_shapes[0])
    reduced_axes(attrs["axis"], len(source))
    return in_shapes, [()]


def _size_forward(attrs, inputs, ctx):
    data = inputs[0]
    axes = reduced_axes(attrs["axis"], data.ndim)
    return [np.array(size_of([data.shape[a] for a in axes]), dtype=data.dtype)]


register(
    OpDef(
        name="_size",
        attrs=(Attr("axis", "axis", None),),
        infer_shape=_size_shape,
        forward=_size_forward,
        doc="The number of elements over ``axis`` as a 0-d array: a shape-derived constant"
        " that lets mean and loss normalizations be written as compositions.",
    )
)

sum = make_constructor(get_op("sum"))  # noqa: A001 - MXNet's name
max = make_constructor(get_op("max"))  # noqa: A001
min = make_constructor(get_op("min"))  # noqa: A001


def size_array(data: Symbol, axis=None) -> Symbol:
    """Number of elements of ``data`` over ``axis``, as a 0-d symbol of its dtype."""
    return apply_op("_size", [data], {"axis": axis})


def mean(data: Symbol, axis=None, keepdims: bool = False, name: str | None = None) -> Symbol:
    """Mean over ``axis``: the sum divided by the number of elements reduced.

    >>> import graphc as gc
    >>> gc.evaluate(gc.mean(gc.Variable("x"), axis=1), {"x": [[1.0, 3.0], [2.0, 6.0]]})[0].tolist()
    [2.0, 4.0]
    """
    total = apply_op("sum", [data], {"axis": axis, "keepdims": keepdims})
    return apply_op("divide", [total, size_array(data, axis)], {}, name=name)


__all__ = ["max", "mean", "min", "size_array", "sum"]
