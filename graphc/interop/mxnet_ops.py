"""MXNet 1.x ops in graphc: one table from MXNet's op names to the graphc ops that mean the
same, with what each MXNet attribute becomes.

Every MXNet attribute of a node is accounted for: passed on to the graphc op (whose schema
validates it), dropped because it only tunes how MXNet runs (``workspace``,
``cudnn_tune``), or held to the value graphc implements (``dilate`` of 1, ``num_group`` of
1); anything else is an :class:`~graphc.ir.errors.ImportFormatError` naming the node, the op
and the attribute, never a silent skip. Attributes whose name starts with ``__`` are
MXNet's annotations of the node (``__layout__``, ``__profiler_scope__``), not the op's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import graphc.ir.ops as ops
from graphc.ir.symbol import Symbol, apply_op, scalar

Builder = Callable[[Sequence[Symbol], dict, str], "Symbol | list[Symbol]"]
"""``build(inputs, attrs, name)``: the graphc symbol (or one symbol per output)."""


class Unsupported(ValueError):
    """What the mapping of one node cannot take; the reader adds the file and node."""


@dataclass(frozen=True)
class OpMapping:
    build: Builder
    passed: tuple[str, ...] = ()
    """Attributes handed to ``build`` (and on to graphc's op, which validates them)."""
    ignored: tuple[str, ...] = ()
    """Attributes that only tune MXNet's execution."""
    held: Mapping[str, tuple] = field(default_factory=dict)
    """Attributes graphc implements at these values only (MXNet's defaults)."""
    none_is_default: tuple[str, ...] = ()
    """Passed attributes whose None is MXNet's default, which is graphc's (an optional
    MXNet parameter written out unset); elsewhere None goes to graphc, which checks it."""

    def attrs_for(self, attrs: Mapping[str, Any]) -> dict:
        passed = {}
        for key, value in attrs.items():
            if key.startswith("__") or key in self.ignored:
                continue
            if key in self.held:
                if value not in self.held[key]:
                    raise Unsupported(
                        f"attribute {key}={value!r} is not supported (graphc implements"
                        f" {' or '.join(repr(v) for v in self.held[key] if v is not None)})"
                    )
                continue
            if key not in self.passed:
                raise Unsupported(f"attribute {key}={value!r} is not one graphc knows for it")
            if value is None and key in self.none_is_default:
                continue
            passed[key] = value
        return passed


def _op(graphc_op: str, **renamed: str) -> Builder:
    """The graphc op of that name over the node's inputs, attributes renamed as given."""

    def build(inputs, attrs, name):
        return apply_op(
            graphc_op, list(inputs), {renamed.get(k, k): v for k, v in attrs.items()}, name
        )

    return build


def _call(function: Callable) -> Builder:
    """A graphc constructor taking the inputs positionally and the attributes by name."""

    def build(inputs, attrs, name):
        return function(*inputs, **attrs, name=name)

    return build


def _scalar_op(graphc_op: str, reverse: bool = False) -> Builder:
    """MXNet's ``_<op>_scalar``: ``x <op> scalar`` (``_r<op>_scalar``: ``scalar <op> x``)."""

    def build(inputs, attrs, name):
        if "scalar" not in attrs:
            raise Unsupported("it has no 'scalar' attribute")
        constant = scalar(float(attrs["scalar"]))
        operands = [constant, inputs[0]] if reverse else [inputs[0], constant]
        return apply_op(graphc_op, operands, {}, name)

    return build


def _identity(inputs, attrs, name):
    return inputs[0]  # _copy: graphc's arrays are values; no node is needed


def _full(value: float | None) -> Builder:
    def build(inputs, attrs, name):
        fill = float(attrs.get("value", 0.0)) if value is None else value
        shape = attrs.get("shape", ())
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return ops.full(shape, fill, attrs.get("dtype") or "float32", name=name)

    return build


def _activation(inputs, attrs, name):
    return ops.Activation(inputs[0], attrs["act_type"], name=name)


def _reduce(function: Callable) -> Builder:
    def build(inputs, attrs, name):
        axis = attrs.get("axis")
        if axis == ():
            axis = None  # MXNet's empty axis: every axis
        keepdims = bool(attrs.get("keepdims", False))
        if axis is not None or keepdims:
            return function(inputs[0], axis=axis, keepdims=keepdims, name=name)
        # MXNet 1.x has no 0-d arrays: a reduction over every axis is (1,), graphc's ().
        total = function(inputs[0], name=f"{name}_value")
        return ops.Reshape(total, shape=(1,), name=name)

    return build


def _softmax(function: Callable) -> Builder:
    def build(inputs, attrs, name):
        return function(
            inputs[0], axis=attrs.get("axis", -1), temperature=attrs.get("temperature"), name=name
        )

    return build


def _rnn(inputs, attrs, name):
    """MXNet's fused RNN in LSTM mode, one layer, one direction, as graphc's LSTM.

    The packed ``parameters`` input becomes the LSTM's four parameters, named
    ``{name}_i2h_weight`` and so on; ``graphc.interop.mxnet`` splits the checkpoint's
    vector the same way (``unpack_rnn_parameters``). MXNet's states are (layers, N, H),
    graphc's (N, H): a state input is reshaped (a zero constant is left out: graphc's LSTM
    starts from zeros without one), and the final states gain the layer axis back."""
    if attrs.get("mode") != "lstm":
        raise Unsupported(f"mode={attrs.get('mode')!r}; graphc has the LSTM (mode='lstm') only")
    layers, bidirectional = int(attrs.get("num_layers", 1)), attrs.get("bidirectional", False)
    if layers != 1 or bidirectional:
        raise Unsupported(
            f"num_layers={layers}, bidirectional={bidirectional}; graphc's LSTM is one"
            " unidirectional layer"
        )
    data, parameters, state, state_cell = inputs[:4]
    if not parameters.node.is_variable:
        raise Unsupported("its parameters input is computed, not a stored parameter vector")
    hidden = int(attrs["state_size"])
    given = []
    for value in (state, state_cell):
        node = value.node
        if node.op == "_full" and node.attrs["value"] == 0.0:
            given.append(None)
        else:
            given.append(ops.Reshape(value, shape=(-3, -2), name=f"{node.name}_as_nh"))
    lstm = ops.LSTM(data, hidden, state=given[0], state_cell=given[1], name=name)
    outputs = [lstm[0]]
    if attrs.get("state_outputs", False):
        outputs += [
            ops.expand_dims(lstm[i], axis=0, name=f"{name}_{what}")
            for i, what in ((1, "state"), (2, "state_cell"))
        ]
    return outputs


_CONV_HELD = {"dilate": ((), (1, 1), None), "num_group": (1,), "layout": (None, "NCHW")}
_BINARY = {
    # MXNet's elemwise ops and their old names take equal shapes only, as graphc's do.
    "elemwise_add": ("elemwise_add", "_plus", "_Plus", "_add"),
    "elemwise_sub": ("elemwise_sub", "_minus", "_Minus", "_sub"),
    "elemwise_mul": ("elemwise_mul", "_mul", "_Mul"),
    "elemwise_div": ("elemwise_div", "_div", "_Div"),
    # MXNet's _maximum, _power, _equal and the like also take equal shapes; graphc's ops
    # broadcast, which agrees wherever MXNet's run.
    "add": ("broadcast_add", "broadcast_plus"),
    "subtract": ("broadcast_sub", "broadcast_minus"),
    "multiply": ("broadcast_mul",),
    "divide": ("broadcast_div",),
    "power": ("_power", "_Power", "broadcast_power"),
    "maximum": ("_maximum", "_Maximum", "broadcast_maximum"),
    "minimum": ("_minimum", "_Minimum", "broadcast_minimum"),
    "equal": ("_equal", "broadcast_equal"),
    "not_equal": ("_not_equal", "broadcast_not_equal"),
    "greater": ("_greater", "broadcast_greater"),
    "greater_equal": ("_greater_equal", "broadcast_greater_equal"),
    "lesser": ("_lesser", "broadcast_lesser"),
    "lesser_equal": ("_lesser_equal", "broadcast_lesser_equal"),
}
_SCALAR = {
    "add": ("_plus_scalar", None),
    "subtract": ("_minus_scalar", "_rminus_scalar"),
    "multiply": ("_mul_scalar", None),
    "divide": ("_div_scalar", "_rdiv_scalar"),
    "power": ("_power_scalar", "_rpower_scalar"),
    "maximum": ("_maximum_scalar", None),
    "minimum": ("_minimum_scalar", None),
    "equal": ("_equal_scalar", None),
    "not_equal": ("_not_equal_scalar", None),
    "greater": ("_greater_scalar", None),
    "greater_equal": ("_greater_equal_scalar", None),
    "lesser": ("_lesser_scalar", None),
    "lesser_equal": ("_lesser_equal_scalar", None),
}
# MXNet before 1.0 spelled the scalar ops in CamelCase.
_OLD_SCALAR_NAMES = {
    "_PlusScalar": "_plus_scalar",
    "_MinusScalar": "_minus_scalar",
    "_RMinusScalar": "_rminus_scalar",
    "_MulScalar": "_mul_scalar",
    "_DivScalar": "_div_scalar",
    "_RDivScalar": "_rdiv_scalar",
    "_PowerScalar": "_power_scalar",
    "_RPowerScalar": "_rpower_scalar",
    "_MaximumScalar": "_maximum_scalar",
    "_MinimumScalar": "_minimum_scalar",
}
_UNARY = ("exp", "log", "sqrt", "square", "abs", "sign", "negative", "relu", "sigmoid", "tanh")


def _table() -> dict[str, OpMapping]:
    table = {
        "FullyConnected": OpMapping(_op("FullyConnected"), ("num_hidden", "no_bias", "flatten")),
        "Convolution": OpMapping(
            _op("Convolution"),
            ("kernel", "stride", "pad", "num_filter", "no_bias"),
            ignored=("workspace", "cudnn_tune", "cudnn_off"),
            held=_CONV_HELD,
        ),
        "Pooling": OpMapping(
            _op("Pooling"),
            (
                "kernel",
                "pool_type",
                "stride",
                "pad",
                "global_pool",
                "count_include_pad",
                "pooling_convention",
            ),
            ignored=("cudnn_off", "p_value"),
            held={"layout": (None, "NCHW")},
            none_is_default=("count_include_pad", "stride", "pad"),
        ),
        "Activation": OpMapping(_activation, ("act_type",)),
        "LeakyReLU": OpMapping(
            _op("LeakyReLU"), ("act_type", "slope"), ignored=("lower_bound", "upper_bound")
        ),
        "Dropout": OpMapping(
            _op("Dropout"), ("p", "mode"), ignored=("cudnn_off",), held={"axes": ((), None)}
        ),
        "Flatten": OpMapping(_call(ops.Flatten)),
        "Reshape": OpMapping(
            _op("Reshape"),
            ("shape", "reverse"),
            held={"target_shape": ((), None, (0,)), "keep_highest": (False,)},
        ),
        "SliceChannel": OpMapping(
            lambda inputs, attrs, name: list(apply_op("SliceChannel", inputs, attrs, name)),
            ("num_outputs", "axis", "squeeze_axis"),
        ),
        "Concat": OpMapping(_op("Concat"), ("num_args", "dim")),
        "Embedding": OpMapping(
            _op("Embedding"),
            ("input_dim", "output_dim"),
            ignored=("sparse_grad",),
            held={"dtype": ("float32", None)},
        ),
        "SoftmaxOutput": OpMapping(
            _op("SoftmaxOutput"),
            (
                "grad_scale",
                "ignore_label",
                "use_ignore",
                "multi_output",
                "preserve_shape",
                "normalization",
            ),
            held={"out_grad": (False,), "smooth_alpha": (0.0, 0)},
        ),
        "LinearRegressionOutput": OpMapping(_op("LinearRegressionOutput"), ("grad_scale",)),
        "LogisticRegressionOutput": OpMapping(_op("LogisticRegressionOutput"), ("grad_scale",)),
        "MakeLoss": OpMapping(_op("MakeLoss"), ("grad_scale", "valid_thresh", "normalization")),
        "BlockGrad": OpMapping(_op("BlockGrad")),
        "_copy": OpMapping(_identity),
        "expand_dims": OpMapping(_op("expand_dims"), ("axis",)),
        "_zeros": OpMapping(_full(0.0), ("shape", "dtype"), ignored=("ctx",)),
        "_ones": OpMapping(_full(1.0), ("shape", "dtype"), ignored=("ctx",)),
        "_full": OpMapping(_full(None), ("shape", "dtype", "value"), ignored=("ctx",)),
        "zeros_like": OpMapping(_op("zeros_like")),
        "ones_like": OpMapping(_op("ones_like")),
        "transpose": OpMapping(_op("transpose"), ("axes",)),
        "sum": OpMapping(_reduce(ops.sum), ("axis", "keepdims"), held={"exclude": (False,)}),
        "mean": OpMapping(_reduce(ops.mean), ("axis", "keepdims"), held={"exclude": (False,)}),
        "max": OpMapping(_reduce(ops.max), ("axis", "keepdims"), held={"exclude": (False,)}),
        "min": OpMapping(_reduce(ops.min), ("axis", "keepdims"), held={"exclude": (False,)}),
        "dot": OpMapping(
            _op("dot"), ("transpose_a", "transpose_b"), held={"forward_stype": (None,)}
        ),
        "batch_dot": OpMapping(
            _op("batch_dot"), ("transpose_a", "transpose_b"), held={"forward_stype": (None,)}
        ),
        "softmax": OpMapping(
            _softmax(ops.softmax),
            ("axis", "temperature"),
            held={"use_length": (False,), "dtype": (None,)},
        ),
        "log_softmax": OpMapping(
            _softmax(ops.log_softmax),
            ("axis", "temperature"),
            held={"use_length": (False,), "dtype": (None,)},
        ),
        "one_hot": OpMapping(_op("one_hot"), ("depth", "on_value", "off_value", "dtype")),
        "pick": OpMapping(_op("pick"), ("axis", "keepdims"), held={"mode": ("clip",)}),
        "slice_axis": OpMapping(_op("slice_axis"), ("axis", "begin", "end")),
        "reshape_like": OpMapping(_op("reshape_like")),
        "broadcast_like": OpMapping(
            _op("broadcast_like"), held={"lhs_axes": (None,), "rhs_axes": (None,)}
        ),
        "add_n": OpMapping(_op("add_n"), ("num_args",)),
        "softmax_cross_entropy": OpMapping(_call(ops.softmax_cross_entropy)),
        "RNN": OpMapping(
            _rnn,
            ("state_size", "num_layers", "mode", "bidirectional", "state_outputs"),
            ignored=("p",),  # dropout between layers: there is one layer
            held={
                "projection_size": (None,),
                "lstm_state_clip_min": (None,),
                "lstm_state_clip_max": (None,),
                "lstm_state_clip_nan": (False,),
                "use_sequence_length": (False,),
            },
        ),
    }
    aliases = {
        "Softmax": "SoftmaxOutput",
        "flatten": "Flatten",
        "reshape": "Reshape",
        "split": "SliceChannel",
        "concat": "Concat",
        "stop_gradient": "BlockGrad",
        "make_loss": "MakeLoss",
        "identity": "_copy",
        "sum_axis": "sum",
        "max_axis": "max",
        "min_axis": "min",
        "ElementWiseSum": "add_n",
    }
    for alias, name in aliases.items():
        table[alias] = table[name]
    for graphc_op, names in _BINARY.items():
        for name in names:
            table[name] = OpMapping(_op(graphc_op))
    for graphc_op, (plain, reverse) in _SCALAR.items():
        table[plain] = OpMapping(_scalar_op(graphc_op), ("scalar",), ignored=("is_int",))
        if reverse is not None:
            table[reverse] = OpMapping(
                _scalar_op(graphc_op, reverse=True), ("scalar",), ignored=("is_int",)
            )
    for old, name in _OLD_SCALAR_NAMES.items():
        table[old] = table[name]
    for name in _UNARY:
        table[name] = OpMapping(_op(name))
    return table


MXNET_OPS: dict[str, OpMapping] = _table()
"""MXNet op name -> how graphc builds it."""
