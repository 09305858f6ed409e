"""Loss heads, with MXNet's semantics: the forward is the prediction, and the gradient rule
supplies the loss's gradient itself, ignoring any incoming gradient (MXNet's backward).

Each head's gradient is a composition of primitives. Each head also carries, as ``loss``,
the loss function that gradient belongs to, so that gradcheck can verify it, and, as
``head`` (a :class:`~graphc.ir.registry.HeadDef`), what training reads of it: the loss of
a batch computed from the output (what ``Model.fit`` reports), the label's shape and the
values it may take, what its output is to a metric, its default metric and the compiled
training loop's statistic. ``Model``, the step-by-step loop and the compiled loop derive
theirs from here (``graphc.training.heads``).

>>> import numpy as np
>>> head = get_op("SoftmaxOutput").head
>>> head.output, head.default_metric, head.loop_statistic
('class_probabilities', 'accuracy', 'softmax')
>>> attrs = get_op("SoftmaxOutput").parse_attrs({}, "doc")
>>> head.bad_label(attrs, (3, 4), np.array([0.0, 3.0, 4.0])), head.label_rule(attrs, (3, 4))
(2, 'a class index in [0, 4)')
"""

from __future__ import annotations

import math

import numpy as np

from graphc.ir.ops.broadcast import ones_like
from graphc.ir.ops.elementwise import greater, maximum, not_equal
from graphc.ir.ops.indexing import as_indices, one_hot_like, pick
from graphc.ir.ops.probability import log_softmax
from graphc.ir.ops.reduce import size_array
from graphc.ir.ops.reduce import sum as reduce_sum
from graphc.ir.ops.shape_ops import Reshape, expand_dims, reshape_like
from graphc.ir.registry import (
    Attr,
    HeadDef,
    OpDef,
    fill,
    get_op,
    known,
    register,
    require,
    size_of,
)
from graphc.ir.symbol import Symbol, make_constructor

PROBABILITY_FLOOR = 1e-12
"""The floor a probability takes before a log in a head's training loss (``SoftmaxOutput``'s
-log p[label], ``LogisticRegressionOutput``'s binary cross-entropy, also clipped at
1 - floor), so that an underflowed probability gives a large finite loss; also
``CrossEntropy``'s default eps (MXNet's)."""

# -- SoftmaxOutput -----------------------------------------------------------------------------


def _softmax_axis(attrs) -> int:
    return 1 if attrs["multi_output"] else -1


def _softmax_label_shape(attrs, data: tuple) -> tuple:
    if attrs["multi_output"]:
        require(len(data) >= 2, f"multi_output needs (N, C, ...) data, not {data}")
        return (data[0],) + tuple(data[2:])
    if attrs["preserve_shape"]:
        return tuple(data[:-1])
    return (data[0],)


def _softmax_output_shape(attrs, in_shapes):
    data = known(in_shapes[0], "data")
    require(len(data) >= 1, "data must have at least 1 dimension")
    label = fill(in_shapes[1], _softmax_label_shape(attrs, data), "label")
    return [data, label], [data]


def _stable_softmax(values: np.ndarray, axis: int) -> np.ndarray:
    shifted = values - values.max(axis=axis, keepdims=True)
    exps = np.exp(shifted)
    return exps / exps.sum(axis=axis, keepdims=True)


def _as_classes(attrs, data: np.ndarray) -> np.ndarray:
    """The data viewed so that classes lie on the softmax axis."""
    if attrs["multi_output"] or attrs["preserve_shape"]:
        return data
    return data.reshape(data.shape[0], -1)


def softmax_geometry(attrs, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(outer, classes, inner) of SoftmaxOutput's data: classes on axis 1 with multi_output,
    on the last axis with preserve_shape, and otherwise everything after axis 0.

    >>> softmax_geometry({"multi_output": True, "preserve_shape": False}, (2, 3, 5, 7))
    (2, 3, 35)
    >>> softmax_geometry({"multi_output": False, "preserve_shape": False}, (2, 3, 5))
    (2, 15, 1)
    """
    if attrs["multi_output"]:
        return shape[0], shape[1], math.prod(shape[2:])
    if attrs["preserve_shape"]:
        return math.prod(shape[:-1]), shape[-1], 1
    return shape[0], math.prod(shape[1:]), 1


def _softmax_classes(attrs, data: tuple) -> int:
    """The number of classes of data of this shape."""
    if attrs["multi_output"]:
        return data[1]
    if attrs["preserve_shape"]:
        return data[-1]
    return size_of(data[1:])


def _softmax_bad_label(attrs, data: tuple, label: np.ndarray) -> int | None:
    """The flat position of the first label that is not a class index (nor, with
    use_ignore, ignore_label), NaN included; None when every label is one."""
    values = np.asarray(label).reshape(-1)
    with np.errstate(invalid="ignore"):
        good = (values >= 0) & (values < _softmax_classes(attrs, data))
        good &= values == np.floor(values)
        if attrs["use_ignore"]:
            good |= values == attrs["ignore_label"]
    bad = np.flatnonzero(~good)
    return int(bad[0]) if bad.size else None


def _label_rule(classes: int, use_ignore: bool, ignore_label: float) -> str:
    rule = f"a class index in [0, {classes})"
    if use_ignore:
        rule += f" or ignore_label {float(ignore_label)!r}"
    return rule


def _softmax_label_rule(attrs, data: tuple) -> str:
    return _label_rule(_softmax_classes(attrs, data), attrs["use_ignore"], attrs["ignore_label"])


class SoftmaxLabelError(ValueError):
    """A SoftmaxOutput label that is not a class index: the message names its flat position
    and value. The reference raises it and so do the backends' kernels, from numbers alone
    (a compiled kernel that formatted the message itself would take seconds more to
    compile: Numba's string formatting of floats, measured 1-3 s a cold start).

    >>> import pickle
    >>> str(pickle.loads(pickle.dumps(SoftmaxLabelError(3, -1.0, 4, False, -1.0))))
    'SoftmaxOutput: label element 3 is -1.0; it must be a class index in [0, 4)'
    """

    def __init__(self, position, value, classes, use_ignore, ignore_label) -> None:
        # The numbers are the arguments, so the error pickles and copies like any other.
        super().__init__(int(position), float(value), int(classes), bool(use_ignore),
                         float(ignore_label))  # fmt: skip

    def __str__(self) -> str:
        position, value, classes, use_ignore, ignore_label = self.args
        return (
            f"SoftmaxOutput: label element {position} is {value!r}; it must be "
            f"{_label_rule(classes, use_ignore, ignore_label)}"
        )


def _check_softmax_label(attrs, data: tuple, label: np.ndarray) -> None:
    """SoftmaxLabelError naming the first label element that is not a class index."""
    position = _softmax_bad_label(attrs, data, label)
    if position is not None:
        value = float(np.asarray(label).flat[position])
        classes = _softmax_classes(attrs, data)
        raise SoftmaxLabelError(
            position, value, classes, attrs["use_ignore"], attrs["ignore_label"]
        )


def _softmax_output_forward(attrs, inputs, ctx):
    data, label = inputs
    if ctx.is_train:  # inference ignores the label, as MXNet's does; the CPU kernel too
        _check_softmax_label(attrs, data.shape, label)
    return [_stable_softmax(_as_classes(attrs, data), _softmax_axis(attrs)).reshape(data.shape)]


def _valid_mask(attrs, label: np.ndarray) -> np.ndarray:
    if attrs["use_ignore"]:
        return label != attrs["ignore_label"]
    return np.ones(label.shape, dtype=bool)


def _normalizer(attrs, data: np.ndarray, valid: np.ndarray) -> float:
    """What the gradient is divided by, as MXNet's (softmax_output-inl.h): 'valid' the
    labels that count; 'batch' the rows (with preserve_shape every position but the
    classes', as MXNet flattens the data to 2-D); with multi_output, under 'null' and
    'batch', the positions per sample too. ``_softmax_output_grad`` builds the same."""
    if attrs["normalization"] == "valid":
        return float(max(valid.sum(), 1))
    divisor = 1.0
    if attrs["normalization"] == "batch":
        divisor = math.prod(data.shape[:-1]) if attrs["preserve_shape"] else data.shape[0]
    if attrs["multi_output"]:
        divisor *= math.prod(data.shape[2:])
    return float(divisor)


def _softmax_output_loss(attrs, inputs, outputs) -> float:
    """grad_scale / normalizer * sum over valid positions of -log p[label], with log p taken
    from the logits (log-sum-exp), so it stays finite where p underflows to 0."""
    data, label = inputs
    axis = _softmax_axis(attrs)
    logits = _as_classes(attrs, data)
    shifted = logits - logits.max(axis=axis, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    valid = _valid_mask(attrs, label)
    classes = log_probs.shape[axis]
    safe_label = np.where(valid, label, 0)
    indices = np.expand_dims(as_indices(safe_label, classes, "SoftmaxOutput label"), axis)
    picked = np.squeeze(np.take_along_axis(log_probs, indices, axis=axis), axis=axis)
    total = -np.sum(picked * valid)
    return attrs["grad_scale"] * total / _normalizer(attrs, data, valid)


def _softmax_batch_loss(attrs, probs: np.ndarray, label: np.ndarray, samples: int) -> float:
    """The mean of -log p[label] over the label positions that count (not ignore_label
    with use_ignore), from the probabilities floored at PROBABILITY_FLOOR."""
    _check_softmax_label(attrs, probs.shape, label)
    axis = _softmax_axis(attrs)
    probs = _as_classes(attrs, probs)
    valid = _valid_mask(attrs, label)
    indices = np.where(valid, label, 0).astype(np.int64)
    # Only the picked probabilities go to float64, not the whole (rows, classes) output.
    picked = np.take_along_axis(probs, np.expand_dims(indices, axis), axis=axis)
    picked = np.squeeze(picked, axis=axis).astype(np.float64)
    nll = -np.log(np.maximum(picked, PROBABILITY_FLOOR))
    return float(np.sum(nll * valid) / max(int(valid.sum()), 1))


def _softmax_loop_unsupported(attrs, data: tuple) -> str | None:
    if attrs["use_ignore"] or attrs["multi_output"] or attrs["preserve_shape"]:
        return "SoftmaxOutput with ignored labels or several outputs per sample"
    if len(data) != 2:
        return "SoftmaxOutput over more than two dimensions"
    return None


_SOFTMAX_HEAD = HeadDef(
    output="class_probabilities",
    batch_loss=_softmax_batch_loss,
    label_shape=_softmax_label_shape,
    bad_label=_softmax_bad_label,
    label_rule=_softmax_label_rule,
    probability_floor=PROBABILITY_FLOOR,
    default_metric="accuracy",
    stream_metric="perplexity",
    loop_statistic="softmax",
    loop_unsupported=_softmax_loop_unsupported,
)


def _softmax_output_grad(args):
    attrs = args.attrs
    data, label = args.inputs
    prob = args.outputs[0]
    axis = _softmax_axis(attrs)
    flat = not (attrs["multi_output"] or attrs["preserve_shape"])
    classes = Reshape(prob, shape=(0, -1)) if flat else prob
    diff = classes - one_hot_like(label, classes, axis=axis)
    if attrs["use_ignore"]:
        keep = not_equal(label, float(attrs["ignore_label"]))
        diff = diff * expand_dims(keep, axis=axis)
    else:
        keep = ones_like(label)
    # The divisor of _normalizer, as a graph.
    normalization = attrs["normalization"]
    if normalization == "valid":
        diff = diff / maximum(reduce_sum(keep), 1.0)
    else:
        if normalization == "batch" and attrs["preserve_shape"]:
            diff = diff / (size_array(data) / size_array(data, axis=-1))
        elif normalization == "batch":
            diff = diff / size_array(data, axis=0)
        if attrs["multi_output"]:
            diff = diff / (size_array(data) / size_array(data, axis=(0, 1)))
    if attrs["grad_scale"] != 1.0:
        diff = diff * attrs["grad_scale"]
    return [reshape_like(diff, data) if flat else diff, None]


register(
    OpDef(
        name="SoftmaxOutput",
        inputs=("data", "label"),
        labels=("label",),
        attrs=(
            Attr("grad_scale", "float", 1.0),
            Attr("ignore_label", "float", -1.0),
            Attr("use_ignore", "bool", False),
            Attr("multi_output", "bool", False),
            Attr("preserve_shape", "bool", False),
            Attr("normalization", "str", "null", choices=("null", "batch", "valid")),
        ),
        infer_shape=_softmax_output_shape,
        forward=_softmax_output_forward,
        grad=_softmax_output_grad,
        loss=_softmax_output_loss,
        head=_SOFTMAX_HEAD,
        doc="Softmax probabilities forward; backward (p - onehot(label)) * grad_scale, divided"
        " by the batch size ('batch'; the rows, with preserve_shape) or the number of"
        " non-ignored labels ('valid'), and with multi_output under 'null' and 'batch' by the"
        " positions per sample too, as MXNet does. Classes"
        " lie on axis 1 with multi_output, on the last axis with preserve_shape, and otherwise"
        " data is flattened to (N, classes) and label is (N,).",
    )
)


# -- Regression heads --------------------------------------------------------------------------


def _regression_label_shape(attrs, data: tuple) -> tuple:
    """MXNet's (regression_output-inl.h): the data's shape, except (N,) for data (N, 1)."""
    return (data[0],) if len(data) == 2 and data[1] == 1 else tuple(data)


def _regression_shape(attrs, in_shapes):
    data = known(in_shapes[0], "data")
    label = in_shapes[1]
    if label is None:
        label = _regression_label_shape(attrs, data)
    require(
        size_of(label) == size_of(data) and (not data or label[0] == data[0]),
        f"label {tuple(label)} does not match data {tuple(data)}",
    )
    return [data, tuple(label)], [data]


def _outputs_per_sample(data: np.ndarray) -> float:
    return float(data.size / data.shape[0]) if data.ndim else 1.0


def _regression_grad(args):
    data, label = args.inputs
    prediction = args.outputs[0]
    per_sample = size_array(label) / size_array(label, axis=0)
    diff = (prediction - reshape_like(label, prediction)) / per_sample
    if args.attrs["grad_scale"] != 1.0:
        diff = diff * args.attrs["grad_scale"]
    return [diff, None]


def _linear_loss(attrs, inputs, outputs) -> float:
    data, label = inputs
    residual = outputs[0] - label.reshape(outputs[0].shape)
    return attrs["grad_scale"] * 0.5 * float(np.sum(residual**2)) / _outputs_per_sample(data)


def _logistic_loss(attrs, inputs, outputs) -> float:
    data, label = inputs
    target = label.reshape(data.shape)
    # -[l log p + (1 - l) log(1 - p)] with p = sigmoid(x), written stably in x.
    per_element = np.logaddexp(0.0, data) - target * data
    return attrs["grad_scale"] * float(np.sum(per_element)) / _outputs_per_sample(data)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * values) + 1.0)


def _mean_per_output(per_element: np.ndarray) -> float:
    """Sum over each sample's outputs divided by their number, averaged over the samples:
    the mean over all elements."""
    return float(per_element.mean()) if per_element.size else 0.0


def _linear_batch_loss(attrs, output: np.ndarray, label: np.ndarray, samples: int) -> float:
    """Half the squared error summed over a sample's outputs and divided by their number
    (the op's loss), averaged over the samples."""
    # The label comes in the head's label shape, (N,) for an (N, 1) output (MXNet's).
    residual = output.astype(np.float64) - np.reshape(label, output.shape)
    return 0.5 * _mean_per_output(residual**2)


def _logistic_batch_loss(attrs, output: np.ndarray, label: np.ndarray, samples: int) -> float:
    """Binary cross-entropy from the probabilities, clipped to [PROBABILITY_FLOOR,
    1 - PROBABILITY_FLOOR], per output of a sample, averaged over the samples."""
    prob = np.clip(output.astype(np.float64), PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    label = np.reshape(label, output.shape)  # (N,) for an (N, 1) output (MXNet's)
    return _mean_per_output(-(label * np.log(prob) + (1.0 - label) * np.log1p(-prob)))


_LINEAR_HEAD = HeadDef(
    output="predictions",
    batch_loss=_linear_batch_loss,
    label_shape=_regression_label_shape,
    default_metric="mse",
    loop_statistic="regression",
)
_LOGISTIC_HEAD = HeadDef(
    output="predictions",
    batch_loss=_logistic_batch_loss,
    label_shape=_regression_label_shape,
    probability_floor=PROBABILITY_FLOOR,
    default_metric="mse",
    loop_statistic="logistic",
)


_REGRESSION_ATTRS = (Attr("grad_scale", "float", 1.0),)

register(
    OpDef(
        name="LinearRegressionOutput",
        inputs=("data", "label"),
        labels=("label",),
        attrs=_REGRESSION_ATTRS,
        infer_shape=_regression_shape,
        forward=lambda attrs, inputs, ctx: [inputs[0].copy()],
        grad=_regression_grad,
        loss=_linear_loss,
        head=_LINEAR_HEAD,
        doc="Identity forward; backward (out - label) * grad_scale / outputs per sample: the"
        " gradient of half the squared error.",
    )
)
register(
    OpDef(
        name="LogisticRegressionOutput",
        inputs=("data", "label"),
        labels=("label",),
        attrs=_REGRESSION_ATTRS,
        infer_shape=_regression_shape,
        forward=lambda attrs, inputs, ctx: [_sigmoid(inputs[0])],
        grad=_regression_grad,
        loss=_logistic_loss,
        head=_LOGISTIC_HEAD,
        doc="sigmoid(x) forward; backward (sigmoid(x) - label) * grad_scale / outputs per"
        " sample: the gradient of binary cross-entropy.",
    )
)


# -- MakeLoss ----------------------------------------------------------------------------------


def _make_loss_norm(attrs, data: np.ndarray) -> float:
    if attrs["normalization"] == "batch":
        return float(data.shape[0])
    if attrs["normalization"] == "valid":
        return float(max(np.sum(data > attrs["valid_thresh"]), 1))
    return 1.0


def _make_loss_batch_loss(attrs, values: np.ndarray, label, samples: int) -> float:
    """The sum of the values divided by the samples (by the count of values above
    valid_thresh with normalization 'valid')."""
    values = values.astype(np.float64)
    if attrs["normalization"] == "valid":
        count = int(np.sum(values > attrs["valid_thresh"]))
        return float(np.sum(values)) / max(count, 1)
    return float(np.sum(values)) / max(samples, 1)


def _make_loss_grad(args):
    data = args.inputs[0]
    grad = ones_like(data)
    if args.attrs["normalization"] == "batch":
        grad = grad / size_array(data, axis=0)
    elif args.attrs["normalization"] == "valid":
        grad = grad / maximum(reduce_sum(greater(data, args.attrs["valid_thresh"])), 1.0)
    if args.attrs["grad_scale"] != 1.0:
        grad = grad * args.attrs["grad_scale"]
    return [grad]


register(
    OpDef(
        name="MakeLoss",
        attrs=(
            Attr("grad_scale", "float", 1.0),
            Attr("valid_thresh", "float", 0.0),
            Attr("normalization", "str", "null", choices=("null", "batch", "valid")),
        ),
        infer_shape=lambda attrs, shapes: (shapes, [known(shapes[0])]),
        forward=lambda attrs, inputs, ctx: [inputs[0].copy()],
        grad=_make_loss_grad,
        loss=lambda attrs, inputs, outputs: (
            attrs["grad_scale"] * float(np.sum(inputs[0])) / _make_loss_norm(attrs, inputs[0])
        ),
        head=HeadDef(output="loss", batch_loss=_make_loss_batch_loss, default_metric="loss"),
        doc="Turn any symbol into a loss: identity forward, gradient grad_scale (divided by the"
        " batch size or the count of elements above valid_thresh under 'batch'/'valid').",
    )
)


def softmax_cross_entropy(data: Symbol, label: Symbol, name: str | None = None) -> Symbol:
    """Sum over the batch of -log softmax(data)[label], shape (1,) as in MXNet.

    >>> import graphc as gc
    >>> loss = gc.softmax_cross_entropy(gc.Variable("x"), gc.Variable("y"))
    >>> round(float(gc.evaluate(loss, {"x": [[0.0, 0.0]], "y": [1.0]})[0][0]), 4)
    0.6931
    """
    picked = pick(log_softmax(data, axis=-1), label, axis=-1)
    return Reshape(-reduce_sum(picked), shape=(1,), name=name)


SoftmaxOutput = make_constructor(get_op("SoftmaxOutput"))
LinearRegressionOutput = make_constructor(get_op("LinearRegressionOutput"))
LogisticRegressionOutput = make_constructor(get_op("LogisticRegressionOutput"))
MakeLoss = make_constructor(get_op("MakeLoss"))

__all__ = [
    "LinearRegressionOutput",
    "LogisticRegressionOutput",
    "MakeLoss",
    "SoftmaxOutput",
    "softmax_cross_entropy",
]


def label_variable(head) -> str | None:
    """The variable a loss head's label is, directly or through ``Reshape`` nodes (MXNet's
    models flatten a (T, N) label into the head's (T * N,): the same elements in the same
    order, which is how a head reads a bound label of its size anyway); None when other ops
    compute it or the head takes none."""
    if len(head.inputs) < 2:
        return None
    node = head.inputs[1].node
    while node.op == "Reshape" and not node.attrs.get("reverse"):
        node = node.inputs[0].node
    return node.name if node.is_variable else None
