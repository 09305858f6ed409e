"""Constants, gradient plumbing and explicit broadcasting.

``sum_to_like`` and ``broadcast_like`` are each other's gradients; the reverse walk inserts
``sum_to_like`` after broadcasting ops and ``add_n`` where gradients meet over fan-out.
"""

from __future__ import annotations

import numpy as np

from graphc.ir.errors import ShapeUnknown
from graphc.ir.registry import Attr, OpDef, get_op, known, register, require
from graphc.ir.symbol import apply_op, make_constructor


def broadcast_shape(left: tuple, right: tuple) -> tuple:
    """NumPy's broadcasting rule, raising RuleViolation where the shapes cannot meet."""
    ndim = max(len(left), len(right))
    padded_left = (1,) * (ndim - len(left)) + tuple(left)
    padded_right = (1,) * (ndim - len(right)) + tuple(right)
    result = []
    for axis, (a, b) in enumerate(zip(padded_left, padded_right)):
        require(
            a == b or a == 1 or b == 1,
            f"shapes {tuple(left)} and {tuple(right)} do not broadcast (axis {axis}: {a} vs {b})",
        )
        result.append(b if a == 1 else a)
    return tuple(result)


def reduce_to_shape(value: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``value`` over the axes that broadcasting added to reach it from ``shape``."""
    extra = value.ndim - len(shape)
    summed = value.sum(axis=tuple(range(extra))) if extra else value
    axes = tuple(i for i, dim in enumerate(shape) if dim == 1 and summed.shape[i] != 1)
    if axes:
        summed = summed.sum(axis=axes, keepdims=True)
    return summed.reshape(shape)


def _scalar_shape(attrs, in_shapes):
    return in_shapes, [()]


def _untyped(attrs, in_dtypes):
    return in_dtypes, None


register(
    OpDef(
        name="_scalar",
        inputs=(),
        attrs=(Attr("value", "float"),),
        infer_shape=_scalar_shape,
        infer_type=_untyped,
        forward=lambda attrs, inputs, ctx: [np.array(attrs["value"])],
        expr="{value}",
        doc="A constant scalar; it takes the dtype of what it is combined with.",
    )
)


def _like_shape(attrs, in_shapes):
    return in_shapes, [known(in_shapes[0])]


def _like_type(attrs, in_dtypes):
    return in_dtypes, in_dtypes[0]


register(
    OpDef(
        name="zeros_like",
        infer_shape=_like_shape,
        infer_type=_like_type,
        forward=lambda attrs, inputs, ctx: [np.zeros_like(inputs[0])],
        expr="0.0",
        shape_only=("data",),
        doc="Zeros of the shape and dtype of ``data``.",
    )
)
register(
    OpDef(
        name="ones_like",
        infer_shape=_like_shape,
        infer_type=_like_type,
        forward=lambda attrs, inputs, ctx: [np.ones_like(inputs[0])],
        expr="1.0",
        shape_only=("data",),
        doc="Ones of the shape and dtype of ``data``.",
    )
)


def _full_shape(attrs, in_shapes):
    shape = attrs["shape"]
    if 0 in shape:
        # MXNet's 0: a size the graph decides (an RNN cell's begin state has the batch's).
        # graphc.ir.unknown_dims settles it from the input shapes before inference runs.
        raise ShapeUnknown(f"shape {shape} has unknown (0) sizes")
    return in_shapes, [shape]


register(
    OpDef(
        name="_full",
        inputs=(),
        attrs=(
            Attr("shape", "ints", low=0, doc="the output's shape; a 0 is a size the graph decides"),
            Attr("value", "float", 0.0),
            Attr("dtype", "dtype", None, doc="None: the dtype of what it is combined with"),
        ),
        infer_shape=_full_shape,
        infer_type=lambda attrs, in_dtypes: (
            in_dtypes,
            None if attrs["dtype"] is None else np.dtype(attrs["dtype"]),
        ),
        forward=lambda attrs, inputs, ctx: [
            np.full(attrs["shape"], attrs["value"], dtype=attrs["dtype"])
        ],
        expr="{value}",
        doc="An array of ``shape`` filled with ``value`` (MXNet's ``_full``, ``_zeros``,"
        " ``_ones``).",
    )
)


def full(shape, value: float, dtype=None, name: str | None = None):
    """An array of ``shape`` filled with ``value``, of ``dtype`` (None: the dtype of what it
    is combined with, as a Python number's). A 0 in ``shape`` is a size the graph decides,
    as in MXNet: it is inferred from the shapes given at binding (an RNN cell's begin state
    of shape ``(0, H)`` takes the batch size; ``graphc.ir.unknown_dims``).

    >>> import graphc as gc
    >>> gc.evaluate(gc.full((2, 3), 7.0, "float32"), {})[0].tolist()
    [[7.0, 7.0, 7.0], [7.0, 7.0, 7.0]]
    """
    return apply_op("_full", [], {"shape": shape, "value": value, "dtype": dtype}, name=name)


def zeros(shape, dtype=None, name: str | None = None):
    """Zeros of ``shape`` (``full(shape, 0.0)``; a 0 in ``shape`` is inferred)."""
    return full(shape, 0.0, dtype, name)


def ones(shape, dtype=None, name: str | None = None):
    """Ones of ``shape`` (``full(shape, 1.0)``; a 0 in ``shape`` is inferred)."""
    return full(shape, 1.0, dtype, name)


def _add_n_inputs(attrs):
    return tuple(f"arg{i}" for i in range(attrs.get("num_args") or 0))


def _add_n_shape(attrs, in_shapes):
    first = known(in_shapes[0])
    for index, shape in enumerate(in_shapes):
        require(
            shape is None or tuple(shape) == tuple(first),
            f"add_n needs equal shapes; arg0 {first} vs arg{index} {shape}",
        )
    return [first if shape is None else shape for shape in in_shapes], [first]


register(
    OpDef(
        name="add_n",
        inputs=_add_n_inputs,
        variadic=True,
        attrs=(Attr("num_args", "int", low=1),),
        infer_shape=_add_n_shape,
        forward=lambda attrs, inputs, ctx: [np.sum(np.stack(inputs), axis=0)],
        grad=lambda args: [args.out_grads[0]] * len(args.inputs),
        doc="Sum of equally shaped arrays (MXNet's ElementWiseSum); gradients meet here.",
    )
)


def _sum_to_like_shape(attrs, in_shapes):
    source, target = known(in_shapes[0]), known(in_shapes[1])
    require(
        broadcast_shape(source, target) == tuple(source),
        f"{source} cannot be summed down to {target}",
    )
    return in_shapes, [target]


def _broadcast_like_shape(attrs, in_shapes):
    source, target = known(in_shapes[0]), known(in_shapes[1])
    require(
        broadcast_shape(source, target) == tuple(target),
        f"{source} does not broadcast to {target}",
    )
    return in_shapes, [target]


def _first_input_type(attrs, in_dtypes):
    return in_dtypes, in_dtypes[0]


register(
    OpDef(
        name="sum_to_like",
        inputs=("data", "like"),
        infer_shape=_sum_to_like_shape,
        infer_type=_first_input_type,
        forward=lambda attrs, inputs, ctx: [reduce_to_shape(inputs[0], inputs[1].shape)],
        grad=lambda args: [broadcast_like(args.out_grads[0], args.inputs[0]), None],
        doc="Sum ``data`` over the axes broadcasting added, down to the shape of ``like``.",
    )
)
register(
    OpDef(
        name="broadcast_like",
        inputs=("data", "like"),
        infer_shape=_broadcast_like_shape,
        infer_type=_first_input_type,
        forward=lambda attrs, inputs, ctx: [np.broadcast_to(inputs[0], inputs[1].shape).copy()],
        expr="{0}",
        shape_only=("like",),
        grad=lambda args: [sum_to_like(args.out_grads[0], args.inputs[0]), None],
        doc="Broadcast ``data`` to the shape of ``like`` (NumPy rules).",
    )
)


zeros_like = make_constructor(get_op("zeros_like"))
ones_like = make_constructor(get_op("ones_like"))
add_n = make_constructor(get_op("add_n"))
sum_to_like = make_constructor(get_op("sum_to_like"))
broadcast_like = make_constructor(get_op("broadcast_like"))
