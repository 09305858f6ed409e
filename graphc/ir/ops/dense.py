"""Matrix products: FullyConnected, dot and batch_dot."""

from __future__ import annotations

import numpy as np

from graphc.ir.ops.reduce import sum as reduce_sum
from graphc.ir.ops.shape_ops import Reshape, reshape_like
from graphc.ir.registry import Attr, OpDef, fill, get_op, known, register, require, size_of
from graphc.ir.symbol import Symbol, make_constructor


def _fc_inputs(attrs):
    return ("data", "weight") if attrs.get("no_bias") else ("data", "weight", "bias")


def _fc_shape(attrs, in_shapes):
    data = known(in_shapes[0], "data")
    hidden = attrs["num_hidden"]
    if attrs["flatten"]:
        require(len(data) >= 1, "data must have at least 1 dimension")
        rows, features = data[0], size_of(data[1:])
        out = (rows, hidden)
    else:
        require(len(data) >= 1, "data must have at least 1 dimension")
        features = data[-1]
        out = tuple(data[:-1]) + (hidden,)
    weight = in_shapes[1]
    if weight is not None:
        require(
            len(weight) == 2 and weight[0] == hidden,
            f"weight {tuple(weight)} must be (num_hidden={hidden}, {features})",
        )
        require(
            weight[1] == features,
            f"input {(rows, features) if attrs['flatten'] else data} but weight expects"
            f" {weight[1]} columns",
        )
    shapes = [data, fill(weight, (hidden, features), "weight")]
    if not attrs["no_bias"]:
        shapes.append(fill(in_shapes[2], (hidden,), "bias"))
    return shapes, [out]


def _fc_forward(attrs, inputs, ctx):
    data, weight = inputs[0], inputs[1]
    flat = data.reshape(data.shape[0], -1) if attrs["flatten"] else data
    out = flat @ weight.T
    if not attrs["no_bias"]:
        out = out + inputs[2]
    return [out]


def _as_rows(value: Symbol, flatten: bool) -> Symbol:
    """(N, features) view: Flatten for flatten=True, else merge all leading axes."""
    if flatten:
        return Reshape(value, shape=(0, -1))
    return Reshape(value, shape=(-1, 0), reverse=True)


def _fc_grad(args):
    data, weight = args.inputs[0], args.inputs[1]
    dy = args.out_grads[0]
    flatten = args.attrs["flatten"]
    rows = _as_rows(data, flatten)
    dy_rows = dy if flatten else _as_rows(dy, False)
    grads = [
        reshape_like(dot(dy_rows, weight), data) if args.wants[0] else None,
        dot(dy_rows, rows, transpose_a=True) if args.wants[1] else None,
    ]
    if not args.attrs["no_bias"]:
        grads.append(reduce_sum(dy_rows, axis=0) if args.wants[2] else None)
    return grads


register(
    OpDef(
        name="FullyConnected",
        inputs=_fc_inputs,
        params=("weight", "bias"),
        attrs=(
            Attr("num_hidden", "int", low=1),
            Attr("no_bias", "bool", False),
            Attr("flatten", "bool", True),
        ),
        infer_shape=_fc_shape,
        forward=_fc_forward,
        grad=_fc_grad,
        doc="y = x W^T + b. With flatten (the default) x is (N, ...) flattened to (N, K); "
        "otherwise W applies to the last axis. weight is (num_hidden, K), bias (num_hidden,).",
    )
)


def _dot_shape(attrs, in_shapes):
    left, right = known(in_shapes[0], "lhs"), known(in_shapes[1], "rhs")
    require(len(right) == 2, f"rhs must be 2-D, not {tuple(right)} (use batch_dot for batches)")
    if attrs["transpose_a"]:
        require(len(left) == 2, f"transpose_a needs a 2-D lhs, not {tuple(left)}")
        left = (left[1], left[0])
    require(len(left) >= 1, "lhs must have at least 1 dimension")
    right = (right[1], right[0]) if attrs["transpose_b"] else right
    require(
        left[-1] == right[0],
        f"lhs {tuple(in_shapes[0])} and rhs {tuple(in_shapes[1])} do not multiply"
        f" (contracting {left[-1]} with {right[0]})",
    )
    return in_shapes, [tuple(left[:-1]) + (right[1],)]


def _dot_forward(attrs, inputs, ctx):
    left, right = inputs
    if attrs["transpose_a"]:
        left = left.T
    if attrs["transpose_b"]:
        right = right.T
    return [np.matmul(left, right)]


def _dot_grad(args):
    a, b = args.inputs
    dy = args.out_grads[0]
    ta, tb = args.attrs["transpose_a"], args.attrs["transpose_b"]
    da = db = None
    if args.wants[0]:
        # y = A' B' with A' = op(a), B' = op(b): dA' = dy B'^T, dB' = A'^T dy.
        da = dot(b, dy, transpose_a=tb, transpose_b=True) if ta else dot(dy, b, transpose_b=not tb)
    if args.wants[1]:
        a_rows = a if ta else Reshape(a, shape=(-1, 0), reverse=True)
        dy_rows = Reshape(dy, shape=(-1, 0), reverse=True)
        if tb:
            db = dot(dy_rows, a_rows, transpose_a=True, transpose_b=ta)
        else:
            db = dot(a_rows, dy_rows, transpose_a=not ta)
    return [da, db]


register(
    OpDef(
        name="dot",
        inputs=("lhs", "rhs"),
        attrs=(Attr("transpose_a", "bool", False), Attr("transpose_b", "bool", False)),
        infer_shape=_dot_shape,
        forward=_dot_forward,
        grad=_dot_grad,
        doc="Matrix product. rhs is 2-D; lhs is 2-D, or N-D contracted on its last axis.",
    )
)


def _batch_dot_shape(attrs, in_shapes):
    left, right = known(in_shapes[0], "lhs"), known(in_shapes[1], "rhs")
    require(
        len(left) == 3 and len(right) == 3, f"batch_dot needs 3-D inputs, not {left} and {right}"
    )
    require(left[0] == right[0], f"batch sizes differ: {left[0]} vs {right[0]}")
    rows, inner = (left[2], left[1]) if attrs["transpose_a"] else (left[1], left[2])
    inner_b, cols = (right[2], right[1]) if attrs["transpose_b"] else (right[1], right[2])
    require(inner == inner_b, f"lhs {left} and rhs {right} do not multiply ({inner} vs {inner_b})")
    return in_shapes, [(left[0], rows, cols)]


def _batch_dot_forward(attrs, inputs, ctx):
    left, right = inputs
    if attrs["transpose_a"]:
        left = np.swapaxes(left, 1, 2)
    if attrs["transpose_b"]:
        right = np.swapaxes(right, 1, 2)
    return [np.matmul(left, right)]


def _batch_dot_grad(args):
    a, b = args.inputs
    dy = args.out_grads[0]
    ta, tb = args.attrs["transpose_a"], args.attrs["transpose_b"]
    da = db = None
    if args.wants[0]:
        da = (
            batch_dot(b, dy, transpose_a=tb, transpose_b=True)
            if ta
            else batch_dot(dy, b, transpose_b=not tb)
        )
    if args.wants[1]:
        db = (
            batch_dot(dy, a, transpose_a=True, transpose_b=ta)
            if tb
            else batch_dot(a, dy, transpose_a=not ta)
        )
    return [da, db]


register(
    OpDef(
        name="batch_dot",
        inputs=("lhs", "rhs"),
        attrs=(Attr("transpose_a", "bool", False), Attr("transpose_b", "bool", False)),
        infer_shape=_batch_dot_shape,
        forward=_batch_dot_forward,
        grad=_batch_dot_grad,
        doc="Batched matrix product of (B, M, K) and (B, K, N).",
    )
)

FullyConnected = make_constructor(get_op("FullyConnected"))
dot = make_constructor(get_op("dot"))
batch_dot = make_constructor(get_op("batch_dot"))

__all__ = ["FullyConnected", "batch_dot", "dot"]
