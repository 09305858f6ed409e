"""Ops that index with integer-valued arrays: Embedding, one_hot, pick.

Indices arrive as floats, as in MXNet; a value that is not a valid index is an error, never
clipped or wrapped.
"""

from __future__ import annotations

import numpy as np

from graphc.ir.registry import Attr, OpDef, fill, get_op, known, normalize_axis, register, require
from graphc.ir.symbol import apply_op, make_constructor


class IndexElementError(ValueError):
    """An index that is not an integer in [0, limit), named by its position in C order. The
    reference raises it and so do the CPU kernels, from the numbers alone (a compiled kernel
    that built the message would compile Numba's string routines, about 0.5 s of a cold
    start).

    >>> str(IndexElementError("Embedding", 1, 4))
    'Embedding: index element 1 is not an integer in [0, 4)'
    """

    def __init__(self, what, position, limit) -> None:
        # The numbers are the arguments, so the error pickles and copies like any other.
        super().__init__(str(what), int(position), int(limit))

    def __str__(self) -> str:
        what, position, limit = self.args
        return f"{what}: index element {position} is not an integer in [0, {limit})"


def as_indices(values: np.ndarray, limit: int, what: str) -> np.ndarray:
    """Integer indices in [0, limit), or IndexElementError naming the first bad one."""
    values = np.asarray(values)
    with np.errstate(invalid="ignore"):  # NaN has no integer: it is reported, not cast
        indices = values.astype(np.int64)
    bad = (indices != values) | (indices < 0) | (indices >= limit)
    if np.any(bad):
        raise IndexElementError(what, int(np.flatnonzero(bad)[0]), limit)
    return indices


def _float_output_type(attrs, in_dtypes):
    """Output takes the dtype of the first float (non-index) input."""
    return in_dtypes, in_dtypes[1]


# -- Embedding ---------------------------------------------------------------------------------


def _embedding_shape(attrs, in_shapes):
    data = known(in_shapes[0], "data")
    weight = fill(in_shapes[1], (attrs["input_dim"], attrs["output_dim"]), "weight")
    return [data, weight], [tuple(data) + (attrs["output_dim"],)]


def _embedding_forward(attrs, inputs, ctx):
    data, weight = inputs
    return [weight[as_indices(data, attrs["input_dim"], "Embedding")]]


def _embedding_grad(args):
    data, weight = args.inputs
    dy = args.out_grads[0]
    dweight = (
        apply_op("_embedding_backward", [dy, data], dict(args.attrs)) if args.wants[1] else None
    )
    return [None, dweight]


_EMBEDDING_ATTRS = (Attr("input_dim", "int", low=1), Attr("output_dim", "int", low=1))

register(
    OpDef(
        name="Embedding",
        inputs=("data", "weight"),
        params=("weight",),
        integer_inputs=("data",),
        attrs=_EMBEDDING_ATTRS,
        infer_shape=_embedding_shape,
        infer_type=_float_output_type,
        forward=_embedding_forward,
        grad=_embedding_grad,
        doc="Look up rows of weight (input_dim, output_dim) by the indices in data.",
    )
)


def _embedding_backward_shape(attrs, in_shapes):
    grad_shape, data = known(in_shapes[0]), known(in_shapes[1])
    expected = tuple(data) + (attrs["output_dim"],)
    require(tuple(grad_shape) == expected, f"gradient {grad_shape} does not match {expected}")
    return in_shapes, [(attrs["input_dim"], attrs["output_dim"])]


def _embedding_backward_forward(attrs, inputs, ctx):
    dy, data = inputs
    out = np.zeros((attrs["input_dim"], attrs["output_dim"]), dtype=dy.dtype)
    indices = as_indices(data, attrs["input_dim"], "Embedding")
    np.add.at(out, indices.reshape(-1), dy.reshape(-1, attrs["output_dim"]))
    return [out]


register(
    OpDef(
        name="_embedding_backward",
        inputs=("data", "indices"),
        integer_inputs=("indices",),
        attrs=_EMBEDDING_ATTRS,
        infer_shape=_embedding_backward_shape,
        infer_type=lambda attrs, dtypes: (dtypes, dtypes[0]),
        forward=_embedding_backward_forward,
        grad=lambda args: [
            apply_op("Embedding", [args.inputs[1], args.out_grads[0]], dict(args.attrs)),
            None,
        ],
        doc="Scatter-add of an Embedding's output gradient into the rows it looked up.",
    )
)


# -- one_hot -----------------------------------------------------------------------------------


def _one_hot_forward(attrs, inputs, ctx):
    depth = attrs["depth"]
    indices = as_indices(inputs[0], depth, "one_hot")
    out = np.full(indices.shape + (depth,), attrs["off_value"], dtype=attrs["dtype"])
    np.put_along_axis(out, indices[..., None], attrs["on_value"], axis=-1)
    return [out]


register(
    OpDef(
        name="one_hot",
        inputs=("indices",),
        integer_inputs=("indices",),
        attrs=(
            Attr("depth", "int", low=1),
            Attr("on_value", "float", 1.0),
            Attr("off_value", "float", 0.0),
            Attr("dtype", "dtype", "float32"),
        ),
        infer_shape=lambda attrs, shapes: (shapes, [tuple(known(shapes[0])) + (attrs["depth"],)]),
        infer_type=lambda attrs, dtypes: (dtypes, np.dtype(attrs["dtype"])),
        forward=_one_hot_forward,
        doc="One-hot vectors of length depth along a new last axis.",
    )
)


# -- pick and its scatter ----------------------------------------------------------------------


def _pick_shape(attrs, in_shapes):
    data = known(in_shapes[0], "data")
    axis = normalize_axis(attrs["axis"], len(data))
    index_shape = out_shape = tuple(dim for i, dim in enumerate(data) if i != axis)
    if attrs["keepdims"]:
        out_shape = tuple(1 if i == axis else dim for i, dim in enumerate(data))
        # MXNet's index is the data's shape without axis under keepdims too; graphc also
        # takes one with the kept 1 (the same positions in the same order).
        if in_shapes[1] is not None and tuple(in_shapes[1]) == out_shape:
            index_shape = out_shape
    index = fill(in_shapes[1], index_shape, "index")
    return [data, index], [out_shape]


def _pick_forward(attrs, inputs, ctx):
    data, index = inputs
    axis = attrs["axis"] % data.ndim
    indices = as_indices(index, data.shape[axis], "pick")
    if indices.ndim < data.ndim:
        indices = np.expand_dims(indices, axis)
    picked = np.take_along_axis(data, indices, axis=axis)
    return [picked if attrs["keepdims"] else np.squeeze(picked, axis=axis)]


def _pick_grad(args):
    data, index = args.inputs
    if not args.wants[0]:
        return [None, None]
    return [apply_op("_pick_backward", [args.out_grads[0], index, data], dict(args.attrs)), None]


_PICK_ATTRS = (Attr("axis", "int", -1), Attr("keepdims", "bool", False))

register(
    OpDef(
        name="pick",
        inputs=("data", "index"),
        integer_inputs=("index",),
        attrs=_PICK_ATTRS,
        infer_shape=_pick_shape,
        infer_type=lambda attrs, dtypes: (dtypes, dtypes[0]),
        forward=_pick_forward,
        grad=_pick_grad,
        doc="Take one element along axis at each position, chosen by index (MXNet's pick).",
    )
)


def _pick_backward_shape(attrs, in_shapes):
    like = known(in_shapes[2], "like")
    _, (expected,) = _pick_shape(attrs, [like, None])
    require(
        tuple(known(in_shapes[0])) == expected, f"gradient {in_shapes[0]} does not match {expected}"
    )
    return in_shapes, [like]


def _pick_backward_forward(attrs, inputs, ctx):
    dy, index, like = inputs
    axis = attrs["axis"] % like.ndim
    indices = as_indices(index, like.shape[axis], "pick")
    if indices.ndim < like.ndim:
        indices = np.expand_dims(indices, axis)
    if not attrs["keepdims"]:
        dy = np.expand_dims(dy, axis)
    out = np.zeros(like.shape, dtype=dy.dtype)
    np.put_along_axis(out, indices, dy, axis=axis)
    return [out]


register(
    OpDef(
        name="_pick_backward",
        inputs=("data", "index", "like"),
        integer_inputs=("index",),
        attrs=_PICK_ATTRS,
        infer_shape=_pick_backward_shape,
        infer_type=lambda attrs, dtypes: (dtypes, dtypes[2]),
        forward=_pick_backward_forward,
        grad=lambda args: [
            apply_op("pick", [args.out_grads[0], args.inputs[1]], dict(args.attrs)),
            None,
            None,
        ],
        doc="Place each value of data at its index along axis, zeros elsewhere (pick's gradient);"
        " the result takes the dtype of like.",
    )
)


def _one_hot_like_shape(attrs, in_shapes):
    like = known(in_shapes[1], "like")
    axis = normalize_axis(attrs["axis"], len(like))
    index = fill(in_shapes[0], like[:axis] + like[axis + 1 :], "index")
    return [index, like], [like]


def _one_hot_like_forward(attrs, inputs, ctx):
    index, like = inputs
    axis = attrs["axis"] % like.ndim
    indices = np.expand_dims(as_indices(index, like.shape[axis], "one_hot_like"), axis)
    out = np.zeros(like.shape, dtype=like.dtype)
    np.put_along_axis(out, indices, 1, axis=axis)
    return [out]


def _one_hot_like_operand_axes(attrs, out_ndim: int, position: int):
    if position != 0:
        return None
    axis = attrs["axis"] % out_ndim
    return tuple(dim for dim in range(out_ndim) if dim != axis)


register(
    OpDef(
        name="one_hot_like",
        inputs=("index", "like"),
        integer_inputs=("index",),
        attrs=(Attr("axis", "int", -1),),
        infer_shape=_one_hot_like_shape,
        infer_type=lambda attrs, dtypes: (dtypes, dtypes[1]),
        forward=_one_hot_like_forward,
        grad=lambda args: [None, None],
        # An elementwise op over the output: the index is read at the output's position
        # with ``axis`` left out, so a loss gradient (probabilities minus one-hot) fuses into
        # one loop instead of a zero fill and a scatter. ``one_hot_at`` (the backends'
        # scalar helper) raises on an index that is not an integer in range, as the
        # reference does.
        expr="one_hot_at({0}, {index}, {extent})",
        shape_only=("like",),
        operand_axes=_one_hot_like_operand_axes,
        doc="1 where the position along axis equals index, else 0, in the shape and dtype of"
        " like (index has like's shape without axis).",
    )
)


def one_hot_like(index, like, axis: int = -1):
    """1 where position ``index`` along ``axis`` of ``like``'s shape, else 0."""
    return apply_op("one_hot_like", [index, like], {"axis": axis})


Embedding = make_constructor(get_op("Embedding"))
one_hot = make_constructor(get_op("one_hot"))
pick = make_constructor(get_op("pick"))

__all__ = ["Embedding", "one_hot", "one_hot_like", "pick"]
