"""graphc's inference graph as ONNX nodes: one emitter per op (``EMITTERS``).

The graph is walked once in topological order after its shapes and dtypes are inferred from
the input shapes, so every emitter knows the concrete shapes it works on: ``Reshape``'s
codes become a constant shape, constants become initializers. Loss heads become what they
compute at inference: ``SoftmaxOutput`` a ``Softmax`` over its class axis, the regression
heads their prediction (the logistic one through ``Sigmoid``), ``MakeLoss`` its input.
Known traps, each tested against ONNX Runtime: ``FullyConnected`` flattens a 4-D input
before its ``Gemm``; MXNet's 'full' pooling is ONNX's ``ceil_mode``; graphc's LSTM gates
(i, f, g, o, as MXNet's) are reordered to ONNX's (i, o, f, c), and its states carry ONNX's
direction axis. An op without a mapping is an error naming the node and the op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.ir.errors import GraphcError
from graphc.ir.infer import describe
from graphc.ir.node import Node, NodeOutput

MIN_OPSET = 13
"""The oldest opset written and read (``Split``, ``Squeeze``, ``Unsqueeze`` and
``ReduceSum`` with their sizes and axes as inputs, ``Softmax`` over one axis: opset 13)."""
HEADS_KEY = "graphc.loss_heads"
"""The model property that records each loss head written as its prediction (its op,
node name, attributes, the ONNX value it read and its label's name), so that load gives
back the trainable symbol; other runtimes ignore it."""
BLOCK_GRAD_KEY = "graphc.block_grad"
"""The model property naming the Identity nodes that were BlockGrad."""


class ExportError(GraphcError, ValueError):
    """A graph that cannot be written as ONNX: the message names the node and the op."""


@dataclass
class Builder:
    """What the emitters write into: ONNX nodes and initializers, and the names of graphc's
    entries in the ONNX graph."""

    helper: Any  # onnx.helper
    numpy_helper: Any  # onnx.numpy_helper
    shapes: Any  # graphc.ir.infer.Inferred
    dtypes: Any
    float_dtype: np.dtype
    opset: int = 18
    parameter_values: dict = field(default_factory=dict)  # name -> array, for the LSTM's
    block_grads: list = field(default_factory=list)  # BlockGrad nodes, recorded for load
    current: str = ""  # the graphc node being emitted: its ONNX nodes are named after it
    nodes: list = field(default_factory=list)
    _named: set = field(default_factory=set)
    initializers: list = field(default_factory=list)
    names: dict = field(default_factory=dict)  # NodeOutput -> ONNX value name
    _count: int = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}__{self._count}"

    def node(
        self, op: str, inputs: list[str], outputs: list[str] | None = None, **attrs
    ) -> list[str]:
        """An ONNX node, named after the graphc node it is part of (a runtime's errors then
        name the user's node; load takes an LSTM's and a BlockGrad's names back from it)."""
        outputs = outputs or [self.fresh(op.lower())]
        name = self.current if self.current not in self._named else self.fresh(self.current)
        self._named.add(name)
        self.nodes.append(self.helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs

    def one(self, op: str, inputs: list[str], **attrs) -> str:
        return self.node(op, inputs, **attrs)[0]

    def constant(self, value: np.ndarray, hint: str = "const") -> str:
        name = self.fresh(hint)
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def named_constant(self, value: np.ndarray, name: str) -> str:
        """An initializer under a name of its own (the LSTM's ``{name}_W``)."""
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, values, hint: str = "ints") -> str:
        return self.constant(np.asarray(values, dtype=np.int64), hint)

    def shape_of(self, entry: NodeOutput) -> tuple:
        return tuple(self.shapes[entry])

    def dtype_of(self, entry: NodeOutput) -> np.dtype:
        dtype = self.dtypes[entry]
        return self.float_dtype if dtype is None else np.dtype(dtype)


Emitter = Callable[[Builder, Node, list[str]], list[str]]
"""``emit(builder, node, input_names)``: the ONNX names of the node's outputs."""
EMITTERS: dict[str, Emitter] = {}


def emits(*ops: str):
    def register(function: Emitter) -> Emitter:
        for op in ops:
            EMITTERS[op] = function
        return function

    return register


def emit(builder: Builder, node: Node, inputs: list[str]) -> list[str]:
    emitter = EMITTERS.get(node.op)
    if emitter is None:
        raise ExportError(f"{describe(node)}: graphc has no ONNX mapping for op {node.op!r}")
    builder.current = node.name
    return emitter(builder, node, inputs)


def _out(node: Node, index: int = 0) -> NodeOutput:
    return NodeOutput(node, index)


def _in(node: Node, index: int) -> NodeOutput:
    return node.inputs[index]


# -- elementwise ----------------------------------------------------------------------------

UNARY = {
    "exp": "Exp",
    "log": "Log",
    "sqrt": "Sqrt",
    "abs": "Abs",
    "sign": "Sign",
    "negative": "Neg",
    "relu": "Relu",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "softrelu": "Softplus",
}
BINARY = {
    "add": "Add",
    "subtract": "Sub",
    "multiply": "Mul",
    "divide": "Div",
    "power": "Pow",
    "maximum": "Max",
    "minimum": "Min",
    "elemwise_add": "Add",
    "elemwise_sub": "Sub",
    "elemwise_mul": "Mul",
    "elemwise_div": "Div",
}
COMPARE = {
    "greater": "Greater",
    "greater_equal": "GreaterOrEqual",
    "lesser": "Less",
    "lesser_equal": "LessOrEqual",
    "equal": "Equal",
}


@emits(*UNARY)
def _unary(b: Builder, node: Node, inputs):
    return b.node(UNARY[node.op], inputs)


@emits("square")
def _square(b: Builder, node: Node, inputs):
    return b.node("Mul", [inputs[0], inputs[0]])


@emits(*BINARY)
def _binary(b: Builder, node: Node, inputs):
    return b.node(BINARY[node.op], inputs)


def _to_float(b: Builder, node: Node, boolean: str) -> list[str]:
    """graphc's comparisons give 1.0 and 0.0 in the data's dtype, ONNX's a bool."""
    to = b.helper.np_dtype_to_tensor_dtype(b.dtype_of(_out(node)))
    return b.node("Cast", [boolean], to=to)


@emits(*COMPARE)
def _compare(b: Builder, node: Node, inputs):
    return _to_float(b, node, b.one(COMPARE[node.op], inputs))


@emits("not_equal")
def _not_equal(b: Builder, node: Node, inputs):
    return _to_float(b, node, b.one("Not", [b.one("Equal", inputs)]))


@emits("LeakyReLU")
def _leaky(b: Builder, node: Node, inputs):
    op = "LeakyRelu" if node.attrs["act_type"] == "leaky" else "Elu"
    return b.node(op, inputs, alpha=float(node.attrs["slope"]))


@emits("_scalar")
def _scalar(b: Builder, node: Node, inputs):
    return [b.constant(np.array(node.attrs["value"], dtype=b.dtype_of(_out(node))), "scalar")]


@emits("_full")
def _full(b: Builder, node: Node, inputs):
    value = np.full(node.attrs["shape"], node.attrs["value"], dtype=b.dtype_of(_out(node)))
    return [b.constant(value, node.name)]


@emits("zeros_like", "ones_like")
def _like(b: Builder, node: Node, inputs):
    fill = 0.0 if node.op == "zeros_like" else 1.0
    value = np.full(b.shape_of(_out(node)), fill, dtype=b.dtype_of(_out(node)))
    return [b.constant(value, node.name)]


@emits("_size")
def _size(b: Builder, node: Node, inputs):
    shape = b.shape_of(_in(node, 0))
    axis = node.attrs["axis"]
    axes = range(len(shape)) if axis is None else ([axis] if isinstance(axis, int) else axis)
    count = int(np.prod([shape[a] for a in axes]))
    return [b.constant(np.array(count, dtype=b.dtype_of(_out(node))), "size")]


@emits("add_n")
def _add_n(b: Builder, node: Node, inputs):
    return b.node("Sum", inputs)


@emits("Dropout")
def _dropout(b: Builder, node: Node, inputs):
    if node.attrs["mode"] == "always":
        raise ExportError(
            f"{describe(node)}: Dropout with mode='always' drops at inference too, which an"
            " ONNX inference graph does not; use mode='training'"
        )
    return b.node("Identity", inputs[:1])  # the identity at inference


@emits("BlockGrad")
def _block_grad(b: Builder, node: Node, inputs):
    # The identity forward; recorded (BLOCK_GRAD_KEY) so that load stops gradients again.
    b.block_grads.append(node.name)
    return b.node("Identity", inputs[:1])


@emits("broadcast_like")
def _broadcast_like(b: Builder, node: Node, inputs):
    return b.node("Expand", [inputs[0], b.ints(b.shape_of(_out(node)), "shape")])


# -- reductions, products, shapes --------------------------------------------------------------


def _axes(node: Node, ndim: int) -> list[int] | None:
    axis = node.attrs["axis"]
    if axis is None:
        return None
    return [a % ndim for a in ((axis,) if isinstance(axis, int) else axis)]


@emits("sum", "max", "min")
def _reduce(b: Builder, node: Node, inputs):
    op = {"sum": "ReduceSum", "max": "ReduceMax", "min": "ReduceMin"}[node.op]
    axes = _axes(node, len(b.shape_of(_in(node, 0))))
    keepdims = int(node.attrs["keepdims"])
    if axes is None:
        return b.node(op, inputs[:1], keepdims=keepdims)
    if op != "ReduceSum" and b.opset < 18:  # ReduceMax/Min took axes as an attribute
        return b.node(op, inputs[:1], axes=axes, keepdims=keepdims)
    return b.node(op, [inputs[0], b.ints(axes, "axes")], keepdims=keepdims)


@emits("dot")
def _dot(b: Builder, node: Node, inputs):
    left, right = inputs
    ranks = len(b.shape_of(_in(node, 0))), len(b.shape_of(_in(node, 1)))
    # MatMul's meaning for an N-D left operand and a matrix; MXNet's dot of an N-D right
    # operand (a tensordot) and its transposes of N-D operands are other products.
    if ranks[1] != 2 or ranks[0] < 2 or (ranks[0] > 2 and node.attrs["transpose_a"]):
        raise ExportError(
            f"{describe(node)}: dot of operands of rank {ranks} has no ONNX mapping (MatMul"
            " takes an N-D left operand and a matrix)"
        )
    if node.attrs["transpose_a"]:
        left = b.one("Transpose", [left], perm=[1, 0])
    if node.attrs["transpose_b"]:
        right = b.one("Transpose", [right], perm=[1, 0])
    return b.node("MatMul", [left, right])


@emits("batch_dot")
def _batch_dot(b: Builder, node: Node, inputs):
    left, right = inputs
    if node.attrs["transpose_a"]:
        left = b.one("Transpose", [left], perm=[0, 2, 1])
    if node.attrs["transpose_b"]:
        right = b.one("Transpose", [right], perm=[0, 2, 1])
    return b.node("MatMul", [left, right])


@emits("Reshape", "reshape_like")
def _reshape(b: Builder, node: Node, inputs):
    # MXNet's codes (0, -1, -2, -3, -4, reverse) resolved: the shape graphc inferred.
    return b.node("Reshape", [inputs[0], b.ints(b.shape_of(_out(node)), "shape")])


@emits("transpose")
def _transpose(b: Builder, node: Node, inputs):
    ndim = len(b.shape_of(_in(node, 0)))
    axes = node.attrs["axes"]
    perm = list(reversed(range(ndim))) if not axes else [a % ndim for a in axes]
    return b.node("Transpose", inputs, perm=perm)


@emits("expand_dims")
def _expand_dims(b: Builder, node: Node, inputs):
    ndim = len(b.shape_of(_out(node)))
    return b.node("Unsqueeze", [inputs[0], b.ints([node.attrs["axis"] % ndim], "axes")])


@emits("Concat")
def _concat(b: Builder, node: Node, inputs):
    return b.node("Concat", inputs, axis=int(node.attrs["dim"]))


@emits("SliceChannel")
def _slice_channel(b: Builder, node: Node, inputs):
    shape = b.shape_of(_in(node, 0))
    axis = node.attrs["axis"] % len(shape)
    count = node.attrs["num_outputs"]
    parts = b.node(
        "Split",
        [inputs[0], b.ints([shape[axis] // count] * count, "split")],
        [b.fresh("split") for _ in range(count)],
        axis=axis,
    )
    if not node.attrs["squeeze_axis"]:
        return parts
    axes = b.ints([axis], "axes")
    return [b.one("Squeeze", [part, axes]) for part in parts]


@emits("slice_axis")
def _slice_axis(b: Builder, node: Node, inputs):
    shape = b.shape_of(_in(node, 0))
    axis = node.attrs["axis"] % len(shape)
    begin = node.attrs["begin"]
    end = shape[axis] if node.attrs["end"] is None else node.attrs["end"]
    begin, end = begin % shape[axis] if begin < 0 else begin, end % shape[axis] if end < 0 else end
    return b.node(
        "Slice",
        [inputs[0], b.ints([begin], "starts"), b.ints([end], "ends"), b.ints([axis], "axes")],
    )


# -- indexing -----------------------------------------------------------------------------------


def _as_indices(b: Builder, name: str) -> str:
    """graphc holds indices as floats; ONNX's Gather wants integers."""
    return b.one("Cast", [name], to=b.helper.np_dtype_to_tensor_dtype(np.dtype(np.int64)))


@emits("Embedding")
def _embedding(b: Builder, node: Node, inputs):
    indices, weight = inputs
    return b.node("Gather", [weight, _as_indices(b, indices)], axis=0)


@emits("one_hot")
def _one_hot(b: Builder, node: Node, inputs):
    dtype = b.dtype_of(_out(node))
    values = b.constant(np.array([node.attrs["off_value"], node.attrs["on_value"]], dtype=dtype))
    depth = b.ints([node.attrs["depth"]], "depth")
    return b.node("OneHot", [_as_indices(b, inputs[0]), depth, values], axis=-1)


@emits("one_hot_like")
def _one_hot_like(b: Builder, node: Node, inputs):
    shape = b.shape_of(_out(node))
    axis = node.attrs["axis"] % len(shape)
    values = b.constant(np.array([0.0, 1.0], dtype=b.dtype_of(_out(node))))
    depth = b.ints([shape[axis]], "depth")
    return b.node("OneHot", [_as_indices(b, inputs[0]), depth, values], axis=axis)


@emits("pick")
def _pick(b: Builder, node: Node, inputs):
    shape = b.shape_of(_in(node, 0))
    axis = node.attrs["axis"] % len(shape)
    index = _as_indices(b, inputs[1])
    if len(b.shape_of(_in(node, 1))) < len(shape):
        index = b.one("Unsqueeze", [index, b.ints([axis], "axes")])
    picked = b.one("GatherElements", [inputs[0], index], axis=axis)
    if node.attrs["keepdims"]:
        return [picked]
    return b.node("Squeeze", [picked, b.ints([axis], "axes")])


# -- layers ------------------------------------------------------------------------------------


@emits("FullyConnected")
def _fully_connected(b: Builder, node: Node, inputs):
    data_shape = b.shape_of(_in(node, 0))
    data, weight = inputs[0], inputs[1]
    bias = inputs[2:3]
    if node.attrs["flatten"] or len(data_shape) == 2:
        if len(data_shape) != 2:
            data = b.one("Flatten", [data], axis=1)
        return b.node("Gemm", [data, weight, *bias], transB=1)
    product = b.one("MatMul", [data, b.one("Transpose", [weight], perm=[1, 0])])
    return b.node("Add", [product, bias[0]]) if bias else [product]


@emits("Convolution")
def _convolution(b: Builder, node: Node, inputs):
    pad = list(node.attrs["pad"])
    return b.node(
        "Conv",
        inputs,
        kernel_shape=list(node.attrs["kernel"]),
        strides=list(node.attrs["stride"]),
        pads=pad + pad,
        group=1,
    )


@emits("Pooling")
def _pooling(b: Builder, node: Node, inputs):
    attrs = node.attrs
    if attrs["global_pool"]:
        return b.node(
            "GlobalMaxPool" if attrs["pool_type"] == "max" else "GlobalAveragePool", inputs
        )
    pad = list(attrs["pad"])
    options = {
        "kernel_shape": list(attrs["kernel"]),
        "strides": list(attrs["stride"]),
        "pads": pad + pad,
        "ceil_mode": int(attrs["pooling_convention"] == "full"),
    }
    if attrs["pool_type"] == "max":
        return b.node("MaxPool", inputs, **options)
    return b.node(
        "AveragePool", inputs, count_include_pad=int(attrs["count_include_pad"]), **options
    )


ONNX_GATES = (0, 3, 1, 2)
"""ONNX's gate order (input, output, forget, cell) as positions in graphc's and MXNet's
(input, forget, cell, output); ``np.argsort`` of it is the way back."""


def reorder_gates(array: np.ndarray, order) -> np.ndarray:
    """The four gate blocks of ``array`` (stacked on axis 0) in ``order``."""
    blocks = np.split(np.asarray(array), 4, axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


def _gates(array: np.ndarray) -> np.ndarray:
    return reorder_gates(array, ONNX_GATES)


@emits("LSTM")
def _lstm(b: Builder, node: Node, inputs):
    """ONNX's LSTM (one direction): W (1, 4H, I), R (1, 4H, H), B (1, 8H) = [Wb, Rb], gates
    in ONNX's order, states (1, N, H); Y (T, 1, N, H)."""
    params = b.parameter_values
    names = inputs[1:5]
    missing = [n for n in names if n not in params]
    if missing:
        raise ExportError(f"{describe(node)}: the LSTM's weights {missing} must be parameters")
    i2h_weight, h2h_weight, i2h_bias, h2h_bias = (np.asarray(params[n]) for n in names)
    hidden = node.attrs["num_hidden"]
    w = b.named_constant(_gates(i2h_weight)[None], f"{node.name}_W")
    r = b.named_constant(_gates(h2h_weight)[None], f"{node.name}_R")
    biases = np.concatenate([_gates(i2h_bias), _gates(h2h_bias)])[None]
    bias = b.named_constant(biases, f"{node.name}_B")
    operands = [inputs[0], w, r, bias, ""]
    states = list(inputs[5:])
    given = [node.attrs["has_state"], node.attrs["has_state_cell"]]
    axis0 = b.ints([0], "axes")
    for present in given:
        operands.append(b.one("Unsqueeze", [states.pop(0), axis0]) if present else "")
    while operands and operands[-1] == "":
        operands.pop()
    y, y_h, y_c = b.node(
        "LSTM", operands, [b.fresh("Y"), b.fresh("Y_h"), b.fresh("Y_c")], hidden_size=hidden
    )
    return [
        b.one("Squeeze", [y, b.ints([1], "axes")]),
        b.one("Squeeze", [y_h, axis0]),
        b.one("Squeeze", [y_c, axis0]),
    ]


# -- loss heads: their inference output ----------------------------------------------------------


@emits("SoftmaxOutput")
def _softmax_output(b: Builder, node: Node, inputs):
    shape = b.shape_of(_in(node, 0))
    if node.attrs["multi_output"]:
        return b.node("Softmax", inputs[:1], axis=1)
    if node.attrs["preserve_shape"] or len(shape) == 2:
        return b.node("Softmax", inputs[:1], axis=len(shape) - 1)
    flat = b.one("Flatten", inputs[:1], axis=1)
    return b.node("Reshape", [b.one("Softmax", [flat], axis=1), b.ints(shape, "shape")])


@emits("LinearRegressionOutput", "MakeLoss")
def _prediction(b: Builder, node: Node, inputs):
    return b.node("Identity", inputs[:1])


@emits("LogisticRegressionOutput")
def _logistic(b: Builder, node: Node, inputs):
    return b.node("Sigmoid", inputs[:1])
