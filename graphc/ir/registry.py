"""The op registry: every op is defined once, here-registered with its whole meaning.

An :class:`OpDef` holds the attribute schema, the input and output names, the shape rule,
the dtype rule, the NumPy reference forward and the gradient rule of one op. Backends and
passes look ops up by name and never re-derive what an op means.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.ir.errors import RuleViolation, ShapeUnknown

REQUIRED = object()

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Attr:
    """One attribute of an op: its kind, default and what values are allowed.

    ``kind`` is one of ``int``, ``float``, ``bool``, ``str``, ``ints`` (a tuple of ints; an
    int is repeated ``length`` times), ``axis`` (None, an int or a tuple of ints), ``shape``
    (a tuple of ints that may hold MXNet's special codes), ``dtype`` and ``records`` (a tuple
    of frozen records a pass builds, such as a fused node's members; never set by users).
    """

    name: str
    kind: str
    default: Any = REQUIRED
    choices: tuple | None = None
    low: float | None = None
    below: float | None = None
    length: int | None = None
    doc: str = ""

    def parse(self, value: Any, where: str) -> Any:
        """Validate and normalize ``value``; raise ValueError naming attribute and value."""
        try:
            parsed = _PARSERS[self.kind](value, self)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{where}: attribute {self.name}={value!r} is not a valid {self.kind}"
                f" ({exc}){self._allowed()}"
            ) from None
        if self.choices is not None and parsed not in self.choices:
            raise ValueError(
                f"{where}: attribute {self.name}={value!r} is not allowed{self._allowed()}"
            )
        values = parsed if isinstance(parsed, tuple) else (parsed,)
        if self.low is not None or self.below is not None:
            low = -math.inf if self.low is None else self.low
            below = math.inf if self.below is None else self.below
            if any(item is not None and not low <= item < below for item in values):
                raise ValueError(
                    f"{where}: attribute {self.name}={value!r} is not allowed{self._allowed()}"
                )
        return parsed

    def _allowed(self) -> str:
        if self.choices is not None:
            return "; allowed: " + ", ".join(repr(choice) for choice in self.choices)
        what = "values" if self.kind in ("ints", "shape") else "a value"
        bounds = []
        if self.low is not None:
            bounds.append(f">= {_number(self.low)}")
        if self.below is not None:
            bounds.append(f"< {_number(self.below)}")
        return f"; allowed: {what} {' and '.join(bounds)}" if bounds else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _parse_int(value: Any, attr: Attr) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError("expected an integer")
    return int(value)


def _parse_float(value: Any, attr: Attr) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError("expected a number")
    return float(value)


def _parse_bool(value: Any, attr: Attr) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value in (0, 1):
        return bool(value)
    raise TypeError("expected True or False")


def _parse_str(value: Any, attr: Attr) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _parse_ints(value: Any, attr: Attr) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if attr.length is None:
            return (int(value),)
        return (int(value),) * attr.length
    items = tuple(_parse_int(item, attr) for item in value)
    if attr.length is not None and len(items) != attr.length:
        raise ValueError(f"expected {attr.length} values, got {len(items)}")
    return items


def _parse_axis(value: Any, attr: Attr) -> int | tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return tuple(_parse_int(item, attr) for item in value)


def _parse_optional_int(value: Any, attr: Attr) -> int | None:
    return None if value is None else _parse_int(value, attr)


def _parse_record(value: Any, attr: Attr) -> tuple:
    if not isinstance(value, tuple):
        raise TypeError("expected a tuple of records (compiler-internal attribute)")
    return value


def _parse_dtype(value: Any, attr: Attr) -> str | None:
    if value is None:
        return None
    return np.dtype(value).name


_PARSERS: dict[str, Callable[[Any, Attr], Any]] = {
    "int": _parse_int,
    "float": _parse_float,
    "bool": _parse_bool,
    "str": _parse_str,
    "ints": _parse_ints,
    "shape": _parse_ints,
    "axis": _parse_axis,
    "optional_int": _parse_optional_int,
    "dtype": _parse_dtype,
    "records": _parse_record,
}


def _no_grad(args: GradArgs) -> list:
    return [None] * len(args.inputs)


@dataclass(frozen=True)
class GradArgs:
    """What a gradient rule sees: Symbols for the node's inputs, all its outputs (hidden ones
    included) and the gradients arriving at its visible outputs (zeros where none arrive)."""

    attrs: Mapping[str, Any]
    inputs: Sequence[Any]
    outputs: Sequence[Any]
    out_grads: Sequence[Any]
    wants: Sequence[bool]
    name: str


@dataclass(frozen=True)
class EvalContext:
    """Run-time facts the reference forward of some ops needs (Dropout)."""

    is_train: bool = False
    step: int = 0


HEAD_OUTPUTS = ("class_probabilities", "predictions", "loss")
"""What a loss head's output is to a metric (``HeadDef.output``)."""


@dataclass(frozen=True)
class HeadDef:
    """What training reads of a loss head beside its gradient: the one definition that
    ``Model``, the step-by-step loop and the compiled loop derive theirs from.

    output: what the output is to a metric, one of :data:`HEAD_OUTPUTS`:
        ``class_probabilities`` (probabilities over classes; the label holds class
        indices), ``predictions`` (values the label should equal, in the output's layout)
        or ``loss`` (the loss itself; the head takes no label).
    batch_loss(attrs, output, label, samples) -> float: the training loss of a batch from
        its output and its label (in ``label_shape``), in NumPy: the mean per sample
        (``samples`` counts them where the head has no per-sample layout of its own), before
        ``grad_scale``.
    label_shape(attrs, output_shape) -> the label's shape (the shape rule's): a bound label
        of the same size is read in it.
    bad_label(attrs, output_shape, label) -> the flat position (C order) of the first label
        value the head cannot take, or None; ``label_rule(attrs, output_shape)`` says in
        words what a label must be.
    probability_floor: the floor a probability takes before a log in the loss, or None.
    default_metric: ``Model.fit``'s metric for the head; ``stream_metric`` its metric when
        the labels are a token stream (a ``BPTTIter``).
    loop_statistic: the compiled training loop's statistic for the loss (a name of
        ``backend.loop_plan.HEAD_STATISTICS``), or None when the loop has none;
        ``loop_unsupported(attrs, output_shape)``: why the loop cannot take this head as
        configured, or None.
    """

    output: str
    batch_loss: Callable
    label_shape: Callable | None = None
    bad_label: Callable | None = None
    label_rule: Callable | None = None
    probability_floor: float | None = None
    default_metric: str | None = None
    stream_metric: str | None = None
    loop_statistic: str | None = None
    loop_unsupported: Callable | None = None

    def __post_init__(self) -> None:
        if self.output not in HEAD_OUTPUTS:
            raise ValueError(f"HeadDef: output {self.output!r} is not one of {HEAD_OUTPUTS}")


@dataclass(frozen=True)
class OpDef:
    """Everything graphc knows about one op.

    infer_shape(attrs, in_shapes) -> (in_shapes, out_shapes): may fill in unknown input
        shapes (parameters, labels) and raises RuleViolation when shapes cannot meet.
    infer_type(attrs, in_dtypes) -> (in_dtypes, out_dtypes): likewise for dtypes.
    forward(attrs, inputs, ctx) -> outputs: the NumPy reference, hidden outputs included.
    grad(GradArgs) -> one Symbol or None per input: a vector-Jacobian product as graph nodes.
        ``None`` as the rule itself means the op has no gradient (an error if one is asked).
    loss(attrs, inputs, outputs) -> float: marks a loss head, whose gradient rule ignores the
        incoming gradient; this is the loss that gradient belongs to (gradcheck uses it).
    head: a loss head's :class:`HeadDef` (its training loss, label and metrics).
    labels, integer_inputs: inputs that hold class labels or indices; they get no gradient.
    expr: for an elementwise op, its scalar expression (``{0}``, ``{1}`` the operands,
        ``{name}`` an attribute, ``{index}`` the output position along the ``axis``
        attribute; Python's ``math`` module), or a function of the attributes returning one.
        Backends generate their elementwise kernels, fused or not, from it.
    shape_only: inputs whose values the op never reads, only their shape (``ones_like``).
    operand_axes(attrs, out_ndim, position) -> the output axes input ``position`` of an
        elementwise op is indexed by, or None for NumPy's trailing alignment (the default).
    """

    name: str
    infer_shape: Callable
    forward: Callable
    grad: Callable | None = _no_grad
    inputs: tuple[str, ...] | Callable[[Mapping], tuple[str, ...]] = ("data",)
    outputs: tuple[str, ...] | Callable[[Mapping], tuple[str, ...]] = ("output",)
    hidden_outputs: tuple[str, ...] | Callable[[Mapping], tuple[str, ...]] = ()
    attrs: tuple[Attr, ...] = ()
    infer_type: Callable | None = None
    params: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    integer_inputs: tuple[str, ...] = ()
    aux: tuple[str, ...] = ()
    variadic: bool = False
    broadcasting: bool = False
    loss: Callable | None = None
    head: HeadDef | None = None
    expr: str | Callable[[Mapping], str] | None = None
    shape_only: tuple[str, ...] = ()
    operand_axes: Callable | None = None
    doc: str = ""
    schema: Mapping[str, Attr] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", {attr.name: attr for attr in self.attrs})
        if (self.loss is None) != (self.head is None):
            raise ValueError(f"op {self.name!r}: a loss head needs both loss and head")

    def input_names(self, attrs: Mapping) -> tuple[str, ...]:
        return self.inputs(attrs) if callable(self.inputs) else self.inputs

    def output_names(self, attrs: Mapping) -> tuple[str, ...]:
        return self.outputs(attrs) if callable(self.outputs) else self.outputs

    def hidden_output_names(self, attrs: Mapping) -> tuple[str, ...]:
        hidden = self.hidden_outputs
        return hidden(attrs) if callable(hidden) else hidden

    def num_outputs(self, attrs: Mapping) -> int:
        """Visible plus hidden outputs."""
        return len(self.output_names(attrs)) + len(self.hidden_output_names(attrs))

    def num_visible_outputs(self, attrs: Mapping) -> int:
        return len(self.output_names(attrs))

    @property
    def is_loss_head(self) -> bool:
        return self.loss is not None

    def parse_attrs(self, given: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Validate user attributes against the schema and fill in defaults."""
        unknown = sorted(set(given) - set(self.schema))
        if unknown:
            allowed = ", ".join(self.schema) or "none"
            raise ValueError(
                f"{where}: unknown attribute(s) {unknown}; {self.name} takes: {allowed}"
            )
        parsed = {}
        for attr in self.attrs:
            if attr.name in given:
                parsed[attr.name] = attr.parse(given[attr.name], where)
            elif attr.default is REQUIRED:
                raise ValueError(f"{where}: attribute {attr.name} is required for {self.name}")
            else:
                parsed[attr.name] = attr.default
        return parsed


REGISTRY: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    """Add an op to the registry; each name may be defined once."""
    if opdef.name in REGISTRY:
        raise ValueError(f"op {opdef.name!r} is registered twice")
    REGISTRY[opdef.name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}") from None


# Helpers shared by shape rules.


def known(shape: Shape | None, what: str = "input") -> Shape:
    """The shape, or ShapeUnknown if it has not been inferred yet."""
    if shape is None:
        raise ShapeUnknown(what)
    return shape


def require(condition: bool, reason: str) -> None:
    """Raise RuleViolation(reason) unless condition holds."""
    if not condition:
        raise RuleViolation(reason)


def fill(shape: Shape | None, expected: Shape, what: str) -> Shape:
    """An input shape that is either unknown (then it becomes ``expected``) or must equal it."""
    if shape is None:
        return tuple(expected)
    require(
        tuple(shape) == tuple(expected),
        f"{what} has shape {shape} but {tuple(expected)} is expected",
    )
    return tuple(shape)


def normalize_axis(axis: int, ndim: int, what: str = "axis") -> int:
    require(-ndim <= axis < max(ndim, 1), f"{what} {axis} is out of range for {ndim} dimensions")
    return axis % ndim if ndim else 0


def size_of(shape: Shape) -> int:
    return math.prod(shape)


def same_dtype_rule(attrs: Mapping, in_dtypes: list) -> tuple[list, list]:
    """Default dtype rule: all known float inputs share one dtype, which the outputs take.

    Untyped inputs (scalar constants, not-yet-typed variables) take the common dtype."""
    present = [dtype for dtype in in_dtypes if dtype is not None]
    if not present:
        return in_dtypes, None
    common = present[0]
    for dtype in present[1:]:
        require(dtype == common, f"inputs have different dtypes {[str(d) for d in in_dtypes]}")
    return [common if dtype is None else dtype for dtype in in_dtypes], common
