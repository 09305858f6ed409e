"""Elementwise ops: unary math and broadcasting binary arithmetic.

Each op is a row: NumPy reference, gradient rule (built from these same ops, so gradients
of gradients work) and the scalar expression the backends' fused kernels are generated
from (``{0}``, ``{1}`` are the operands; ``math`` is Python's math module).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from graphc.ir.node import user_source
from graphc.ir.ops.broadcast import broadcast_shape
from graphc.ir.registry import Attr, GradArgs, OpDef, get_op, known, register, require
from graphc.ir.symbol import Symbol, make_constructor, scalar


def _same_shape(attrs, in_shapes):
    return in_shapes, [known(in_shapes[0])]


def _broadcast_shapes(attrs, in_shapes):
    left, right = known(in_shapes[0]), known(in_shapes[1])
    return in_shapes, [broadcast_shape(left, right)]


def _unary(name: str, reference: Callable, vjp: Callable | None, expr: str, doc: str) -> None:
    """Register a unary op; ``vjp(x, y, dy)`` returns the gradient with respect to ``x``."""

    def grad(args: GradArgs) -> list:
        return [vjp(args.inputs[0], args.outputs[0], args.out_grads[0])]

    register(
        OpDef(
            name=name,
            infer_shape=_same_shape,
            forward=lambda attrs, inputs, ctx: [reference(inputs[0])],
            grad=grad if vjp is not None else None,
            expr=expr,
            doc=doc,
        )
    )


def _equal_shapes(attrs, in_shapes):
    left, right = known(in_shapes[0]), known(in_shapes[1])
    require(
        tuple(left) == tuple(right),
        f"lhs {tuple(left)} and rhs {tuple(right)} differ; elemwise ops take equal shapes"
        " (the broadcast_* ops and the operators broadcast)",
    )
    return in_shapes, [tuple(left)]


def _binary(
    name: str,
    reference: Callable,
    vjp: Callable | None,
    expr: str,
    doc: str,
    broadcasting: bool = True,
) -> None:
    """Register a binary op, broadcasting (NumPy's rules) or taking equal shapes only;
    ``vjp(a, b, y, dy, wants)`` gives (da, db)."""

    def grad(args: GradArgs) -> list:
        left, right = args.inputs
        return list(vjp(left, right, args.outputs[0], args.out_grads[0], args.wants))

    register(
        OpDef(
            name=name,
            inputs=("lhs", "rhs"),
            infer_shape=_broadcast_shapes if broadcasting else _equal_shapes,
            forward=lambda attrs, inputs, ctx: [reference(inputs[0], inputs[1])],
            grad=grad if vjp is not None else None,
            broadcasting=broadcasting,
            expr=expr,
            doc=doc,
        )
    )


def _no_grads(a, b, y, dy, wants):
    return None, None


def _softrelu(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


# Unary math: name, reference, gradient, scalar expression, doc.
_unary("exp", np.exp, lambda x, y, dy: dy * y, "math.exp({0})", "e to the power x.")
_unary("log", np.log, lambda x, y, dy: dy / x, "math.log({0})", "Natural logarithm.")
_unary("sqrt", np.sqrt, lambda x, y, dy: dy / (y * 2.0), "math.sqrt({0})", "Square root.")
_unary("square", np.square, lambda x, y, dy: dy * x * 2.0, "({0} * {0})", "x squared.")
_unary("abs", np.abs, lambda x, y, dy: dy * sign(x), "abs({0})", "Absolute value.")
_unary(
    "sign",
    np.sign,
    lambda x, y, dy: None,
    "math.copysign(1.0, {0}) if {0} != 0.0 else 0.0",
    "Sign of x (-1, 0 or 1); its gradient is zero.",
)
_unary("negative", np.negative, lambda x, y, dy: -dy, "(-{0})", "Negation.")
_unary(
    "tanh", np.tanh, lambda x, y, dy: dy * (1.0 - y * y), "math.tanh({0})", "Hyperbolic tangent."
)
_unary(
    "sigmoid",
    _sigmoid,
    lambda x, y, dy: dy * y * (1.0 - y),
    "(1.0 / (1.0 + math.exp(-{0})))",
    "Logistic sigmoid 1 / (1 + exp(-x)).",
)
_unary(
    "relu",
    lambda x: np.maximum(x, 0),
    # y > 0 exactly where x > 0; reading the output lets x die right after the forward
    # (or never be stored at all when relu is fused into the layer that produces x).
    lambda x, y, dy: dy * greater(y, 0.0),
    # NaN stays NaN, as np.maximum(x, 0) keeps it: a NaN must reach the loss, not vanish.
    "(0.0 if {0} <= 0.0 else {0})",
    "max(x, 0).",
)
_unary(
    "softrelu",
    _softrelu,
    lambda x, y, dy: dy * sigmoid(x),
    "(max({0}, 0.0) + math.log1p(math.exp(-abs({0}))))",
    "log(1 + exp(x)) (softplus).",
)


def _add_vjp(a, b, y, dy, wants):
    return dy, dy


def _subtract_vjp(a, b, y, dy, wants):
    return dy, -dy


def _multiply_vjp(a, b, y, dy, wants):
    return (dy * b if wants[0] else None), (dy * a if wants[1] else None)


def _divide_vjp(a, b, y, dy, wants):
    return (dy / b if wants[0] else None), (-(dy * y) / b if wants[1] else None)


def _power_vjp(a, b, y, dy, wants):
    da = dy * b * power(a, b - 1.0) if wants[0] else None
    db = dy * y * log(a) if wants[1] else None
    return da, db


def _maximum_vjp(a, b, y, dy, wants):
    mask = greater_equal(a, b)
    return (dy * mask if wants[0] else None), (dy * (1.0 - mask) if wants[1] else None)


def _minimum_vjp(a, b, y, dy, wants):
    mask = lesser_equal(a, b)
    return (dy * mask if wants[0] else None), (dy * (1.0 - mask) if wants[1] else None)


def _compare(fn: Callable) -> Callable:
    return lambda a, b: fn(a, b).astype(np.result_type(a, b))


_binary("add", np.add, _add_vjp, "({0} + {1})", "a + b with broadcasting.")
_binary("subtract", np.subtract, _subtract_vjp, "({0} - {1})", "a - b with broadcasting.")
_binary("multiply", np.multiply, _multiply_vjp, "({0} * {1})", "a * b with broadcasting.")
_binary("divide", np.divide, _divide_vjp, "({0} / {1})", "a / b with broadcasting.")
_binary("power", np.power, _power_vjp, "({0} ** {1})", "a ** b with broadcasting.")
# MXNet's elemwise_* take equal shapes only (an unintended broadcast is a shape error there).
for _name, _reference, _vjp, _expr in (
    ("elemwise_add", np.add, _add_vjp, "({0} + {1})"),
    ("elemwise_sub", np.subtract, _subtract_vjp, "({0} - {1})"),
    ("elemwise_mul", np.multiply, _multiply_vjp, "({0} * {1})"),
    ("elemwise_div", np.divide, _divide_vjp, "({0} / {1})"),
):
    _binary(_name, _reference, _vjp, _expr, f"{_expr[1:-1]} of equal shapes.", broadcasting=False)
_binary(
    "maximum",
    np.maximum,
    _maximum_vjp,
    "max({0}, {1})",
    "Elementwise maximum; a tie sends the gradient to a.",
)
_binary(
    "minimum",
    np.minimum,
    _minimum_vjp,
    "min({0}, {1})",
    "Elementwise minimum; a tie sends the gradient to a.",
)
_binary(
    "greater",
    _compare(np.greater),
    _no_grads,
    "(1.0 if {0} > {1} else 0.0)",
    "1 where a > b, else 0.",
)
_binary(
    "greater_equal",
    _compare(np.greater_equal),
    _no_grads,
    "(1.0 if {0} >= {1} else 0.0)",
    "1 where a >= b, else 0.",
)
_binary(
    "lesser", _compare(np.less), _no_grads, "(1.0 if {0} < {1} else 0.0)", "1 where a < b, else 0."
)
_binary(
    "lesser_equal",
    _compare(np.less_equal),
    _no_grads,
    "(1.0 if {0} <= {1} else 0.0)",
    "1 where a <= b, else 0.",
)
_binary(
    "equal",
    _compare(np.equal),
    _no_grads,
    "(1.0 if {0} == {1} else 0.0)",
    "1 where a == b, else 0.",
)
_binary(
    "not_equal",
    _compare(np.not_equal),
    _no_grads,
    "(1.0 if {0} != {1} else 0.0)",
    "1 where a != b, else 0.",
)


def _leaky_relu(x: np.ndarray, attrs) -> np.ndarray:
    slope = attrs["slope"]
    if attrs["act_type"] == "leaky":
        return np.where(x > 0, x, slope * x)
    return np.where(x > 0, x, slope * np.expm1(np.minimum(x, 0)))


def _leaky_relu_expr(attrs) -> str:
    if attrs["act_type"] == "leaky":
        return "({0} if {0} > 0.0 else {slope} * {0})"
    return "({0} if {0} > 0.0 else {slope} * math.expm1({0}))"


def _leaky_relu_grad(args: GradArgs) -> list:
    x, y, dy = args.inputs[0], args.outputs[0], args.out_grads[0]
    slope = args.attrs["slope"]
    positive = greater(x, 0.0)
    if args.attrs["act_type"] == "leaky":
        return [dy * (positive * (1.0 - slope) + slope)]
    return [dy * (positive + (1.0 - positive) * (y + slope))]


register(
    OpDef(
        name="LeakyReLU",
        attrs=(
            Attr("act_type", "str", "leaky", choices=("leaky", "elu")),
            Attr("slope", "float", 0.25),
        ),
        infer_shape=_same_shape,
        forward=lambda attrs, inputs, ctx: [_leaky_relu(inputs[0], attrs)],
        grad=_leaky_relu_grad,
        expr=_leaky_relu_expr,
        doc="Leaky ReLU (x if x > 0 else slope * x) or ELU (slope * (exp(x) - 1) for x <= 0).",
    )
)

exp = make_constructor(get_op("exp"))
log = make_constructor(get_op("log"))
sqrt = make_constructor(get_op("sqrt"))
square = make_constructor(get_op("square"))
abs = make_constructor(get_op("abs"))  # noqa: A001 - MXNet's name
sign = make_constructor(get_op("sign"))
negative = make_constructor(get_op("negative"))
tanh = make_constructor(get_op("tanh"))
sigmoid = make_constructor(get_op("sigmoid"))
relu = make_constructor(get_op("relu"))
softrelu = make_constructor(get_op("softrelu"))
add = make_constructor(get_op("add"))
subtract = make_constructor(get_op("subtract"))
multiply = make_constructor(get_op("multiply"))
divide = make_constructor(get_op("divide"))
maximum = make_constructor(get_op("maximum"))
minimum = make_constructor(get_op("minimum"))
greater = make_constructor(get_op("greater"))
greater_equal = make_constructor(get_op("greater_equal"))
lesser = make_constructor(get_op("lesser"))
lesser_equal = make_constructor(get_op("lesser_equal"))
equal = make_constructor(get_op("equal"))
not_equal = make_constructor(get_op("not_equal"))
elemwise_add = make_constructor(get_op("elemwise_add"))
elemwise_sub = make_constructor(get_op("elemwise_sub"))
elemwise_mul = make_constructor(get_op("elemwise_mul"))
elemwise_div = make_constructor(get_op("elemwise_div"))
LeakyReLU = make_constructor(get_op("LeakyReLU"))


def power(base, exponent, name: str | None = None) -> Symbol:
    """base ** exponent with broadcasting; either may be a Python number."""
    from graphc.ir.symbol import apply_op, as_symbol

    return apply_op("power", [as_symbol(base), as_symbol(exponent)], {}, name=name)


_ACTIVATIONS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softrelu": "softrelu"}


def Activation(data: Symbol, act_type: str, name: str | None = None) -> Symbol:
    """MXNet's Activation: ``act_type`` one of relu, sigmoid, tanh, softrelu.

    It builds the matching elementwise node (named ``name``), so fusion sees one op kind.

    >>> import graphc as gc
    >>> gc.Activation(gc.Variable("x"), act_type="tanh", name="t1").node.op
    'tanh'
    """
    from graphc.ir.node import NAMES
    from graphc.ir.symbol import apply_op

    name = name or NAMES.next_name("activation")  # MXNet's default name
    if act_type not in _ACTIVATIONS:
        allowed = ", ".join(repr(kind) for kind in _ACTIVATIONS)
        where = f"{name} (Activation) at {user_source()}"
        raise ValueError(
            f"{where}: attribute act_type={act_type!r} is not allowed; allowed: {allowed}"
        )
    return apply_op(_ACTIVATIONS[act_type], [data], {}, name=name)


__all__ = [
    "Activation",
    "LeakyReLU",
    "abs",
    "add",
    "divide",
    "equal",
    "exp",
    "greater",
    "greater_equal",
    "lesser",
    "lesser_equal",
    "log",
    "maximum",
    "minimum",
    "multiply",
    "negative",
    "not_equal",
    "power",
    "relu",
    "sigmoid",
    "sign",
    "softrelu",
    "sqrt",
    "square",
    "subtract",
    "tanh",
    "scalar",
]
