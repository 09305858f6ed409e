"""ONNX graphs read into graphc Symbols: one reader per ONNX op (``READERS``).

Initializers become parameters (Variables with their values in ``params``); graph inputs
that are not initializers become data Variables; nodes are read in the file's order (ONNX
requires topological order) through the ops' constructors, so the graph means what the
registry says. Besides what ``gc.onnx.export`` writes, the equivalents other exporters
write are read: ``MatMul`` (+ ``Add``), ``Gemm`` in any transposition, ``Flatten``,
``Reshape`` with a constant shape, ``Squeeze``/``Unsqueeze``, ``Cast`` between float
types and to the integer indices ``Gather`` takes (graphc's indices are floats), ``Constant``.
An op or attribute graphc cannot express is an ImportFormatError naming the node, the op
and the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import graphc.ir.ops as ops
from graphc.interop.onnx_export import (
    BINARY,
    BLOCK_GRAD_KEY,
    COMPARE,
    HEADS_KEY,
    MIN_OPSET,
    ONNX_GATES,
    UNARY,
    reorder_gates,
)
from graphc.ir.errors import GraphcError, ImportFormatError
from graphc.ir.node import source_as
from graphc.ir.symbol import Group, Symbol, Variable, apply_op, scalar


class Unsupported(ValueError):
    """What one node's reader cannot take; the reader adds the file and the node."""


@dataclass
class Reader:
    onnx: Any
    values: dict = field(default_factory=dict)  # ONNX name -> Symbol
    constants: dict = field(default_factory=dict)  # ONNX name -> np.ndarray (initializers)
    params: dict = field(default_factory=dict)  # graphc parameter name -> np.ndarray
    ranks: dict = field(default_factory=dict)  # ONNX name -> rank (ONNX's shape inference)
    dims: dict = field(default_factory=dict)  # ONNX name -> sizes (None where symbolic)
    consumers: dict = field(default_factory=dict)  # ONNX name -> [(op type, outputs)] reading it
    booleans: set = field(default_factory=set)  # comparison results (graphc's are floats)
    block_grads: set = field(default_factory=set)  # Identity nodes that were BlockGrad
    node_name: str = ""

    def symbol(self, name: str) -> Symbol:
        """The Symbol of an ONNX value; an initializer read as a tensor becomes a parameter."""
        if name in self.values:
            return self.values[name]
        if name in self.constants:
            value = self.constants[name]
            if value.ndim == 0:
                symbol = scalar(float(value))
            else:
                symbol = Variable(name)
                self.params[name] = value
            self.values[name] = symbol
            return symbol
        raise Unsupported(f"input {name!r} is neither a graph input, an initializer nor computed")

    def constant(self, name: str, what: str) -> np.ndarray:
        """An input that must be a constant (a shape, axes, a Reshape's target)."""
        if name not in self.constants:
            raise Unsupported(f"its {what} ({name!r}) is computed; graphc needs a constant")
        return self.constants[name]


Read = Callable[[Reader, Any, dict, list[str]], "Symbol | list[Symbol]"]
READERS: dict[str, Read] = {}


def reads(*ops_: str):
    def register(function: Read) -> Read:
        for op in ops_:
            READERS[op] = function
        return function

    return register


def _attrs(onnx, node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _only(attrs: dict, allowed: dict) -> None:
    """Attributes must be absent or at the value graphc implements."""
    for key, value in attrs.items():
        if key not in allowed:
            raise Unsupported(f"attribute {key}={value!r} is not one graphc reads")
        if allowed[key] is not None and value not in allowed[key]:
            raise Unsupported(f"attribute {key}={value!r} is not supported")


def _name(reader: Reader, suffix: str = "") -> str:
    return reader.node_name + suffix


def read_model(onnx, model, where: str) -> tuple[Symbol, dict[str, np.ndarray]]:
    graph = model.graph
    domains = {o.domain for o in model.opset_import}
    if domains - {"", "ai.onnx"}:
        raise ImportFormatError(
            f"{where}: operator sets {sorted(domains - {'', 'ai.onnx'})}"
            " are not ONNX's own; graphc reads the standard ops only"
        )
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:
        # Before 13, Softmax flattened its input and Slice, Split, Squeeze took attributes.
        raise ImportFormatError(
            f"{where}: opset {opset}; graphc reads opset {MIN_OPSET} and newer (convert the"
            " file with onnx.version_converter)"
        )
    try:  # a malformed file is refused whole, before any node is read
        onnx.checker.check_model(model)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    except Exception as exc:  # noqa: BLE001 - onnx raises several kinds
        raise ImportFormatError(f"{where}: not a valid ONNX model: {exc}") from None
    reader = Reader(onnx)
    for value in [*inferred.input, *inferred.value_info, *inferred.output]:
        if value.type.tensor_type.HasField("shape"):
            dims = value.type.tensor_type.shape.dim
            reader.ranks[value.name] = len(dims)
            reader.dims[value.name] = [
                d.dim_value if d.HasField("dim_value") else None for d in dims
            ]
    for node in graph.node:
        for name in node.input:
            reader.consumers.setdefault(name, []).append((node.op_type, list(node.output)))
        if node.op_type in _COMPARISONS:
            reader.booleans.update(node.output)
    props = {p.key: p.value for p in model.metadata_props}
    reader.block_grads = set(json.loads(props.get(BLOCK_GRAD_KEY, "[]")))
    for tensor in graph.initializer:
        reader.constants[tensor.name] = onnx.numpy_helper.to_array(tensor)
    for value in graph.input:
        if value.name in reader.constants:
            continue
        dims = value.type.tensor_type.shape.dim
        shape = tuple(d.dim_value for d in dims) if all(d.dim_value > 0 for d in dims) else None
        with source_as(f"{where} input {value.name!r}"):
            reader.values[value.name] = Variable(value.name, shape=shape)
    for index, node in enumerate(graph.node):
        place = f"{where} node {index} ({node.name or node.output[0]!r}, {node.op_type})"
        read = READERS.get(node.op_type)
        if node.domain not in ("", "ai.onnx") or read is None:
            raise ImportFormatError(f"{place}: graphc has no op for ONNX's {node.op_type!r}")
        reader.node_name = node.name or node.output[0]
        try:
            with source_as(place):
                built = read(reader, node, _attrs(onnx, node), list(node.input))
        except (Unsupported, GraphcError, ValueError) as exc:
            raise ImportFormatError(f"{place}: {exc}") from None
        except (LookupError, TypeError) as exc:  # an attribute or input the op needs is missing
            raise ImportFormatError(f"{place}: {type(exc).__name__} {exc}") from None
        outputs = built if isinstance(built, list) else [built]
        for name, symbol in zip(node.output, outputs):
            if name:
                reader.values[name] = symbol
    restored = _loss_heads(model, reader, where)
    heads = []
    for value in graph.output:
        if value.name not in reader.values:
            raise ImportFormatError(f"{where}: output {value.name!r} is not computed")
        heads.append(restored.get(value.name, reader.values[value.name]))
    symbol = heads[0] if len(heads) == 1 else Group(heads)
    return symbol, reader.params


def _loss_heads(model, reader: Reader, where: str) -> dict[str, Symbol]:
    """The loss heads a graphc export wrote as their predictions, rebuilt over the values
    they read, by output name: the imported symbol trains as the exported one did."""
    props = {p.key: p.value for p in model.metadata_props}
    if HEADS_KEY not in props:
        return {}
    try:
        records = json.loads(props[HEADS_KEY])
        restored = {}
        for record in records:
            operands = [reader.values[record["data"]]]
            if record["label"]:
                operands.append(Variable(record["label"]))
            name = record["name"]
            with source_as(f"{where} loss head {name!r}"):
                restored[record["output"]] = apply_op(record["op"], operands, record["attrs"], name)
        return restored
    except (LookupError, TypeError, ValueError, GraphcError) as exc:
        raise ImportFormatError(f"{where}: the property {HEADS_KEY!r} is damaged ({exc})") from None


# -- elementwise ---------------------------------------------------------------------------------

# The ONNX names of graphc's ops are the exporter's tables, read the other way.
_UNARY = {onnx_op: op for op, onnx_op in UNARY.items()}
_BINARY = {
    onnx_op: op
    for op, onnx_op in {**BINARY, **COMPARE}.items()
    if not op.startswith("elemwise_")  # the broadcasting ops read any ONNX operands
}


@reads(*_UNARY)
def _unary(r: Reader, node, attrs, inputs):
    _only(attrs, {})
    return apply_op(_UNARY[node.op_type], [r.symbol(inputs[0])], {}, _name(r))


@reads(*_BINARY)
def _binary(r: Reader, node, attrs, inputs):
    _only(attrs, {})
    operands = [r.symbol(name) for name in inputs]
    return apply_op(_BINARY[node.op_type], operands, {}, _name(r))


@reads("Max", "Min", "Sum")
def _variadic(r: Reader, node, attrs, inputs):
    _only(attrs, {})
    operands = [r.symbol(name) for name in inputs]
    if node.op_type == "Sum":
        return ops.add_n(*operands, name=_name(r)) if len(operands) > 1 else operands[0]
    op = "maximum" if node.op_type == "Max" else "minimum"
    result = operands[0]
    for index, operand in enumerate(operands[1:]):
        result = apply_op(
            op, [result, operand], {}, _name(r, "" if index == len(operands) - 2 else f"_{index}")
        )
    return result


@reads("Not")
def _not(r: Reader, node, attrs, inputs):
    return apply_op("subtract", [scalar(1.0), r.symbol(inputs[0])], {}, _name(r))


@reads("LeakyRelu", "Elu")
def _leaky(r: Reader, node, attrs, inputs):
    _only(attrs, {"alpha": None})
    act = "leaky" if node.op_type == "LeakyRelu" else "elu"
    slope = attrs.get("alpha", 0.01 if act == "leaky" else 1.0)
    return ops.LeakyReLU(r.symbol(inputs[0]), act_type=act, slope=slope, name=_name(r))


@reads("Identity", "Dropout")
def _identity(r: Reader, node, attrs, inputs):
    # Dropout in an inference graph: its ratio does nothing there, nor its mask output.
    _only(attrs, {"seed": None})
    if node.op_type == "Dropout" and len(inputs) > 2 and inputs[2]:
        raise Unsupported("a Dropout with a training_mode input; graphc reads inference graphs")
    if node.op_type == "Identity" and node.name in r.block_grads:
        return ops.BlockGrad(r.symbol(inputs[0]), name=node.name)  # graphc's export wrote it
    return r.symbol(inputs[0])


_COMPARISONS = ("Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal", "Not")
_INDEX_READERS = ("Gather", "GatherElements", "OneHot", "Cast")
_SHAPE_ONLY = ("Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity")


def _only_indices(r: Reader, name: str) -> bool:
    """Whether every use of ``name`` is as indices, through shape-only ops."""
    uses = r.consumers.get(name, [])
    return bool(uses) and all(
        op in _INDEX_READERS or op in _SHAPE_ONLY and all(_only_indices(r, out) for out in outputs)
        for op, outputs in uses
    )


@reads("Cast")
def _cast(r: Reader, node, attrs, inputs):
    """graphc computes in the data's float dtype and holds indices and comparison results
    as floats of it, so a cast between those is no op; a cast to another float type is
    refused (graphc keeps one float dtype per graph)."""
    _only(attrs, {"to": None, "saturate": None, "round_mode": None})
    to = np.dtype(r.onnx.helper.tensor_dtype_to_np_dtype(attrs["to"]))
    if to.kind == "f":
        if to not in (np.float32, np.float64):
            raise Unsupported(f"a cast to {to}")
        return r.symbol(inputs[0])
    # To integers: no op where the result is an index (graphc's are floats) or the input a
    # comparison's 0/1; elsewhere it would round, which graphc does not.
    if inputs[0] in r.booleans or _only_indices(r, node.output[0]):
        return r.symbol(inputs[0])
    raise Unsupported(f"a cast to {to} whose result is not used as indices")


@reads("Constant")
def _constant(r: Reader, node, attrs, inputs):
    if "value" not in attrs:
        raise Unsupported(f"a Constant given as {sorted(attrs)}; graphc reads 'value' tensors")
    value = r.onnx.numpy_helper.to_array(attrs["value"])
    r.constants[node.output[0]] = value
    return r.symbol(node.output[0])


# -- products, shapes, reductions ----------------------------------------------------------------


@reads("Gemm")
def _gemm(r: Reader, node, attrs, inputs):
    _only(attrs, {"alpha": None, "beta": None, "transA": None, "transB": None})
    a, b = r.symbol(inputs[0]), inputs[1]
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    bias = r.symbol(inputs[2]) if len(inputs) > 2 and inputs[2] else None
    plain = attrs.get("transB", 0) and not attrs.get("transA", 0) and alpha == 1.0 and beta == 1.0
    vector_bias = bias is None or (inputs[2] in r.constants and r.constants[inputs[2]].ndim == 1)
    if plain and vector_bias:
        # graphc's layer: y = x W^T + b, with W (num_hidden, in) as ONNX's transposed B.
        weight = r.symbol(b)
        hidden = r.constants[b].shape[0] if b in r.constants else None
        if hidden is not None:
            return ops.FullyConnected(
                a,
                weight=weight,
                bias=bias,
                num_hidden=hidden,
                no_bias=bias is None,
                flatten=False,
                name=_name(r),
            )
    product = ops.dot(
        a,
        r.symbol(b),
        transpose_a=bool(attrs.get("transA", 0)),
        transpose_b=bool(attrs.get("transB", 0)),
        name=_name(r, "_product"),
    )
    if alpha != 1.0:
        product = product * alpha
    if bias is None:
        return product
    return apply_op("add", [product, bias * beta if beta != 1.0 else bias], {}, _name(r))


@reads("MatMul")
def _matmul(r: Reader, node, attrs, inputs):
    left, right = (r.symbol(n) for n in inputs)
    ranks = [_rank(r, n) for n in inputs]
    if ranks[1] == 2 and ranks[0] is not None and ranks[0] >= 2:
        return ops.dot(left, right, name=_name(r))  # graphc's dot: an N-D left, a matrix
    if ranks == [3, 3]:
        return ops.batch_dot(left, right, name=_name(r))
    raise Unsupported(
        f"MatMul of operands of rank {ranks}; graphc reads an N-D left with a matrix, and 3-D"
        " batches"
    )


def _rank(r: Reader, name: str) -> int | None:
    return r.constants[name].ndim if name in r.constants else r.ranks.get(name)


@reads("Flatten")
def _flatten(r: Reader, node, attrs, inputs):
    _only(attrs, {"axis": None})
    axis = attrs.get("axis", 1)
    if axis == 1:
        return ops.Flatten(r.symbol(inputs[0]), name=_name(r))
    if axis == 0:
        return ops.Reshape(r.symbol(inputs[0]), shape=(1, -1), name=_name(r))
    raise Unsupported(f"Flatten at axis {axis}; graphc reads axis 0 and 1")


@reads("Reshape")
def _reshape(r: Reader, node, attrs, inputs):
    # ONNX's 0 (copy the input's size) and -1 (infer) are MXNet's, which graphc's are.
    _only(attrs, {"allowzero": (0,)})
    shape = tuple(int(d) for d in r.constant(inputs[1], "target shape"))
    return ops.Reshape(r.symbol(inputs[0]), shape=shape, name=_name(r))


@reads("Transpose")
def _transpose(r: Reader, node, attrs, inputs):
    _only(attrs, {"perm": None})
    perm = attrs.get("perm")
    return ops.transpose(r.symbol(inputs[0]), axes=tuple(perm) if perm else None, name=_name(r))


def _axes_input(r: Reader, inputs, attrs, what="axes") -> list[int] | None:
    if len(inputs) > 1 and inputs[1]:
        return [int(a) for a in r.constant(inputs[1], what)]
    return list(attrs["axes"]) if "axes" in attrs else None


@reads("Unsqueeze")
def _unsqueeze(r: Reader, node, attrs, inputs):
    _only(attrs, {"axes": None})
    axes = _axes_input(r, inputs, attrs)
    if not axes or len(axes) != 1:
        raise Unsupported(f"Unsqueeze of axes {axes}; graphc reads one axis")
    return ops.expand_dims(r.symbol(inputs[0]), axis=axes[0], name=_name(r))


@reads("Squeeze")
def _squeeze(r: Reader, node, attrs, inputs):
    """One axis of size 1, merged into its neighbour with Reshape's -3 (graphc has no
    squeeze of its own)."""
    _only(attrs, {"axes": None})
    axes = _axes_input(r, inputs, attrs)
    rank = _rank(r, inputs[0])
    if not axes or len(axes) != 1 or rank is None:
        raise Unsupported(f"Squeeze of axes {axes}; graphc reads one axis of a known rank")
    axis = axes[0] % rank
    if rank == 1:
        return ops.Reshape(r.symbol(inputs[0]), shape=(), name=_name(r))
    before = axis if axis < rank - 1 else axis - 1  # merge with the next (the last: previous)
    shape = (0,) * before + (-3,) + (-2,)
    return ops.Reshape(r.symbol(inputs[0]), shape=shape, name=_name(r))


@reads("Concat")
def _concat(r: Reader, node, attrs, inputs):
    _only(attrs, {"axis": None})
    operands = [r.symbol(n) for n in inputs]
    return ops.Concat(*operands, dim=attrs["axis"], name=_name(r))


@reads("Split")
def _split(r: Reader, node, attrs, inputs):
    _only(attrs, {"axis": None, "num_outputs": None, "split": None})
    count = len(node.output)
    sizes = _axes_input(r, inputs, {"axes": attrs["split"]} if "split" in attrs else {}, "split")
    if sizes is not None and len(set(sizes)) != 1:
        raise Unsupported(f"Split into sizes {sizes}; graphc's SliceChannel splits evenly")
    parts = ops.SliceChannel(
        r.symbol(inputs[0]), num_outputs=count, axis=attrs.get("axis", 0), name=_name(r)
    )
    return [parts[i] for i in range(count)]


@reads("Slice")
def _slice(r: Reader, node, attrs, inputs):
    starts = r.constant(inputs[1], "starts")
    ends = r.constant(inputs[2], "ends")
    axes = r.constant(inputs[3], "axes") if len(inputs) > 3 and inputs[3] else range(len(starts))
    steps = r.constant(inputs[4], "steps") if len(inputs) > 4 and inputs[4] else [1] * len(starts)
    if len(starts) != 1 or int(steps[0]) != 1:
        raise Unsupported("a Slice of several axes or with steps; graphc reads one axis, step 1")
    axis = int(list(axes)[0])
    size = (r.dims.get(inputs[0]) or [None] * (axis + 1))[axis]
    if size is None:
        raise Unsupported("a Slice of an axis of unknown size")
    # ONNX clamps begin and end into the axis; graphc's slice_axis takes them in range.
    begin = min(max(int(starts[0]) + (size if int(starts[0]) < 0 else 0), 0), size)
    end = min(max(int(ends[0]) + (size if int(ends[0]) < 0 else 0), 0), size)
    return ops.slice_axis(r.symbol(inputs[0]), axis=axis, begin=begin, end=end, name=_name(r))


@reads("ReduceSum", "ReduceMax", "ReduceMin", "ReduceMean")
def _reduce(r: Reader, node, attrs, inputs):
    _only(attrs, {"axes": None, "keepdims": None, "noop_with_empty_axes": (0,)})
    function = {
        "ReduceSum": ops.sum,
        "ReduceMax": ops.max,
        "ReduceMin": ops.min,
        "ReduceMean": ops.mean,
    }[node.op_type]
    axes = _axes_input(r, inputs, attrs)
    axis = None if not axes else (axes[0] if len(axes) == 1 else tuple(axes))
    return function(
        r.symbol(inputs[0]), axis=axis, keepdims=bool(attrs.get("keepdims", 1)), name=_name(r)
    )


@reads("Softmax", "LogSoftmax")
def _softmax(r: Reader, node, attrs, inputs):
    _only(attrs, {"axis": None})
    function = ops.softmax if node.op_type == "Softmax" else ops.log_softmax
    return function(r.symbol(inputs[0]), axis=attrs.get("axis", -1), name=_name(r))


# -- indexing --------------------------------------------------------------------------------------


@reads("Gather")
def _gather(r: Reader, node, attrs, inputs):
    """A table lookup (axis 0 of a parameter) is graphc's Embedding."""
    _only(attrs, {"axis": (0,)})
    table = inputs[0]
    if table not in r.constants or r.constants[table].ndim != 2:
        raise Unsupported("a Gather from a computed or non-2-D table; graphc reads Embedding")
    rows, width = r.constants[table].shape
    return ops.Embedding(
        r.symbol(inputs[1]), weight=r.symbol(table), input_dim=rows, output_dim=width, name=_name(r)
    )


@reads("GatherElements")
def _gather_elements(r: Reader, node, attrs, inputs):
    _only(attrs, {"axis": None})
    return ops.pick(
        r.symbol(inputs[0]),
        r.symbol(inputs[1]),
        axis=attrs.get("axis", 0),
        keepdims=True,
        name=_name(r),
    )


@reads("OneHot")
def _one_hot(r: Reader, node, attrs, inputs):
    _only(attrs, {"axis": None})
    depth = int(np.asarray(r.constant(inputs[1], "depth")).reshape(-1)[0])
    off, on = (float(v) for v in r.constant(inputs[2], "values"))
    axis = attrs.get("axis", -1)
    rank = _rank(r, inputs[0])
    if rank is None:
        raise Unsupported("OneHot of indices of unknown rank")
    hot = ops.one_hot(
        r.symbol(inputs[0]),
        depth=depth,
        on_value=on,
        off_value=off,
        name=_name(r, "" if axis % (rank + 1) == rank else "_last"),
    )
    axis %= rank + 1
    if axis == rank:
        return hot  # graphc's one_hot adds the last axis
    perm = list(range(rank))
    perm.insert(axis, rank)
    return ops.transpose(hot, axes=tuple(perm), name=_name(r))


# -- layers ------------------------------------------------------------------------------------------


def _pads(attrs) -> tuple[int, int]:
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4 or pads[:2] != pads[2:]:
        raise Unsupported(f"pads {pads}; graphc pads both sides of H and W alike")
    return pads[0], pads[1]


@reads("Conv")
def _conv(r: Reader, node, attrs, inputs):
    _only(
        attrs,
        {
            "kernel_shape": None,
            "strides": None,
            "pads": None,
            "group": (1,),
            "dilations": ([1, 1],),
            "auto_pad": (b"NOTSET", "NOTSET"),
        },
    )
    weight = inputs[1]
    if weight not in r.constants:
        raise Unsupported("a computed convolution weight; graphc reads a parameter")
    filters, _, kh, kw = r.constants[weight].shape
    bias = r.symbol(inputs[2]) if len(inputs) > 2 and inputs[2] else None
    return ops.Convolution(
        r.symbol(inputs[0]),
        weight=r.symbol(weight),
        bias=bias,
        kernel=(kh, kw),
        stride=tuple(attrs.get("strides", (1, 1))),
        pad=_pads(attrs),
        num_filter=filters,
        no_bias=bias is None,
        name=_name(r),
    )


@reads("MaxPool", "AveragePool")
def _pool(r: Reader, node, attrs, inputs):
    _only(
        attrs,
        {
            "kernel_shape": None,
            "strides": None,
            "pads": None,
            "ceil_mode": None,
            "count_include_pad": None,
            "dilations": ([1, 1],),
            "storage_order": (0,),
            "auto_pad": (b"NOTSET", "NOTSET"),
        },
    )
    if len(node.output) > 1 and node.output[1]:
        raise Unsupported("MaxPool's indices output")
    return ops.Pooling(
        r.symbol(inputs[0]),
        kernel=tuple(attrs["kernel_shape"]),
        pool_type="max" if node.op_type == "MaxPool" else "avg",
        stride=tuple(attrs.get("strides", (1, 1))),
        pad=_pads(attrs),
        pooling_convention="full" if attrs.get("ceil_mode", 0) else "valid",
        count_include_pad=bool(attrs.get("count_include_pad", 0)),
        name=_name(r),
    )


@reads("GlobalMaxPool", "GlobalAveragePool")
def _global_pool(r: Reader, node, attrs, inputs):
    pool = "max" if node.op_type == "GlobalMaxPool" else "avg"
    return ops.Pooling(
        r.symbol(inputs[0]), kernel=(1, 1), global_pool=True, pool_type=pool, name=_name(r)
    )


_GRAPHC_GATES = tuple(int(i) for i in np.argsort(ONNX_GATES))  # the exporter's, reversed


def _gates(array: np.ndarray) -> np.ndarray:
    return reorder_gates(array, _GRAPHC_GATES)


@reads("LSTM")
def _lstm(r: Reader, node, attrs, inputs):
    _only(attrs, {"hidden_size": None, "direction": (b"forward", "forward"), "layout": (0,)})
    hidden = attrs["hidden_size"]
    inputs = inputs + [""] * (8 - len(inputs))
    if inputs[4] or inputs[7]:
        raise Unsupported("sequence lengths or peepholes; graphc's LSTM has neither")
    w, rec = r.constant(inputs[1], "W"), r.constant(inputs[2], "R")
    bias = r.constant(inputs[3], "B") if inputs[3] else np.zeros((1, 8 * hidden), w.dtype)
    name = _name(r)
    values = {
        "i2h_weight": _gates(w[0]),
        "h2h_weight": _gates(rec[0]),
        "i2h_bias": _gates(bias[0, : 4 * hidden]),
        "h2h_bias": _gates(bias[0, 4 * hidden :]),
    }
    variables = {}
    for key, value in values.items():
        r.params[f"{name}_{key}"] = value
        variables[key] = Variable(f"{name}_{key}")
    states = []
    for index in (5, 6):  # (1, N, H) -> graphc's (N, H)
        states.append(
            ops.Reshape(r.symbol(inputs[index]), shape=(-3, -2), name=f"{name}_s{index}")
            if inputs[index]
            else None
        )
    lstm = ops.LSTM(
        r.symbol(inputs[0]), hidden, state=states[0], state_cell=states[1], name=name, **variables
    )
    return [
        ops.expand_dims(lstm[0], axis=1, name=f"{name}_Y"),
        ops.expand_dims(lstm[1], axis=0, name=f"{name}_Y_h"),
        ops.expand_dims(lstm[2], axis=0, name=f"{name}_Y_c"),
    ]
