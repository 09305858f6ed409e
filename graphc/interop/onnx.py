"""ONNX files from graphc models and back: ``gc.onnx.export`` and ``gc.onnx.load``.

The ``onnx`` package is imported only when one of these is called (``pip install
graphc[onnx]``): a plain install never loads it.

>>> import graphc as gc
>>> gc.onnx.default_opset()  # 28 with onnx 1.23
28

Export writes the inference graph (``graphc.interop.onnx_export``: loss heads become their
predictions, labels are not inputs) with the parameters as initializers, and checks the
model with ``onnx.checker`` (``full_check``, which runs ONNX's shape inference) before the
file is written, to a temporary name and then renamed. Import (``graphc.interop.onnx_import``)
maps the same ops back, and the equivalents other exporters write.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from graphc.interop.onnx_export import (
    BLOCK_GRAD_KEY,
    HEADS_KEY,
    MIN_OPSET,
    Builder,
    ExportError,
    emit,
)
from graphc.ir.infer import infer_dtypes, infer_shapes
from graphc.ir.node import NodeOutput
from graphc.ir.ops.loss import label_variable
from graphc.ir.registry import get_op
from graphc.ir.symbol import Symbol
from graphc.ir.unknown_dims import resolve_unknown_dims

NEWEST_CHECKED_OPSET = 28
"""The newest opset every op's mapping was checked at against ONNX Runtime (1.32.0, with
onnx 1.23.2, whose newest it is)."""


def default_opset() -> int:
    """The opset written unless ``opset=`` says otherwise: the newest that the installed
    onnx defines, up to :data:`NEWEST_CHECKED_OPSET`."""
    return min(_onnx().defs.onnx_opset_version(), NEWEST_CHECKED_OPSET)


def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - the test extra installs it
        raise ImportError("gc.onnx needs the onnx package: pip install 'graphc[onnx]'") from None
    return onnx


def export(
    symbol: Symbol,
    params: Mapping[str, np.ndarray],
    input_shapes: Mapping[str, tuple],
    path: str | Path,
    opset: int | None = None,
):
    """Write ``symbol``'s inference graph to the ONNX file ``path`` and return the model.

    ``params`` holds the parameters (written as initializers); ``input_shapes`` the shapes
    of the data inputs, from which every shape is inferred (a Reshape's codes become its
    concrete shape). Labels of loss heads are not inputs: a head becomes its prediction.
    ``opset`` (default :func:`default_opset`) may be older, down to :data:`MIN_OPSET`.
    """
    onnx = _onnx()
    opset = default_opset() if opset is None else int(opset)
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"onnx export: opset {opset} is not in [{MIN_OPSET}, {newest}] (the mapping needs"
            f" {MIN_OPSET}; the installed onnx defines up to {newest})"
        )
    model = _build(onnx, symbol, dict(params), dict(input_shapes), opset)
    onnx.checker.check_model(model, full_check=True)
    _write_atomic(Path(path), model.SerializeToString())
    return model


def _build(onnx, symbol: Symbol, params: dict, input_shapes: dict, opset: int):
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    arguments = symbol.list_arguments()
    unknown = sorted(set(input_shapes) - set(arguments))
    if unknown:
        raise ExportError(f"onnx export: {unknown} are not arguments of the symbol {arguments}")
    labels = _label_inputs(symbol)
    data_names = [a for a in arguments if a not in params and a not in labels]
    # Inputs whose shape the others decide (an LSTM's initial states, from the data's batch).
    given = {**{n: np.shape(v) for n, v in params.items() if n in arguments}, **input_shapes}
    partial = dict(zip(arguments, symbol.infer_shape_partial(**given)[0]))
    input_shapes = {
        **{a: partial[a] for a in data_names if partial.get(a) is not None},
        **input_shapes,
    }
    missing = [a for a in data_names if a not in input_shapes]
    if missing:
        raise ExportError(
            f"onnx export: no shape for the inputs {missing}; give input_shapes (and params for"
            " every parameter)"
        )
    shapes = {**{n: np.shape(v) for n, v in params.items()}, **input_shapes}
    shapes = {n: tuple(s) for n, s in shapes.items() if n in arguments}
    symbol = resolve_unknown_dims(symbol, shapes)
    graph = symbol.graph
    inferred = infer_shapes(graph, shapes, partial=True)
    dtypes_given = {n: np.asarray(v).dtype for n, v in params.items() if n in arguments}
    dtypes = infer_dtypes(graph, dtypes_given)
    float_dtype = next(iter(dtypes_given.values()), np.dtype(np.float32))
    if np.dtype(float_dtype) != np.float32:
        # A valid file that the runtimes cannot run: ONNX Runtime has no double kernels for
        # Conv, pooling or LSTM.
        raise ExportError(
            f"onnx export: the parameters are {np.dtype(float_dtype)}; export writes float32"
            " graphs (ONNX Runtime has no float64 Conv, pooling or LSTM): cast them first"
        )
    builder = Builder(helper, numpy_helper, inferred, dtypes, np.dtype(float_dtype), opset)
    builder.parameter_values = {n: np.asarray(v) for n, v in params.items()}
    inputs, needed, heads = [], _reachable_without_labels(symbol, labels), {}
    for node in graph.nodes:
        if node not in needed:
            continue
        if node.is_variable:
            builder.names[NodeOutput(node, 0)] = node.name
            if node.name in data_names:
                dtype = helper.np_dtype_to_tensor_dtype(dtypes[NodeOutput(node, 0)] or float_dtype)
                inputs.append(
                    helper.make_tensor_value_info(node.name, dtype, list(shapes[node.name]))
                )
            continue
        is_head = get_op(node.op).is_loss_head
        reads = node.inputs[:1] if is_head else node.inputs  # a head's label is not read
        names = emit(builder, node, [builder.names[entry] for entry in reads])
        if is_head:
            heads[node.name] = {
                "op": node.op,
                "name": node.name,
                "attrs": {k: list(v) if isinstance(v, tuple) else v for k, v in node.attrs.items()},
                "data": builder.names[node.inputs[0]],
                "label": label_variable(node),
            }
        for index, name in enumerate(names):
            builder.names[NodeOutput(node, index)] = name
    outputs, head_outputs = [], []
    for out_name, entry in zip(symbol.list_outputs(), symbol.entries):
        if entry.node.name in heads and entry.index == 0:
            head_outputs.append({"output": out_name, **heads[entry.node.name]})
        source = builder.names[entry]
        builder.current = out_name
        builder.node("Identity", [source], [out_name])  # the outputs keep graphc's names
        dtype = helper.np_dtype_to_tensor_dtype(dtypes[entry] or float_dtype)
        outputs.append(helper.make_tensor_value_info(out_name, dtype, list(inferred[entry])))
    used = {name for node in builder.nodes for name in node.input}
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(value), name)
        for name, value in params.items()
        if name in used
    ] + builder.initializers
    onnx_graph = helper.make_graph(builder.nodes, "graphc", inputs, outputs, initializers)
    model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="graphc",
    )
    # What load needs to give back the graph that trains: the heads and the stop-gradients.
    props = {HEADS_KEY: json.dumps(head_outputs)} if head_outputs else {}
    if builder.block_grads:
        props[BLOCK_GRAD_KEY] = json.dumps(builder.block_grads)
    if props:
        helper.set_model_props(model, props)
    # The oldest IR version that carries this opset: a runtime that knows the opset reads it.
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    return model


def _label_inputs(symbol: Symbol) -> set[str]:
    """The variables loss heads read as labels: not inputs at inference."""
    heads = [n for n in symbol.graph.nodes if not n.is_variable and get_op(n.op).is_loss_head]
    return {name for name in map(label_variable, heads) if name is not None}


def _reachable_without_labels(symbol: Symbol, labels: set[str]) -> set:
    """The nodes the outputs need when a loss head does not read its label."""
    needed, stack = set(), [entry.node for entry in symbol.entries]
    while stack:
        node = stack.pop()
        if node in needed:
            continue
        needed.add(node)
        inputs = node.inputs
        if not node.is_variable and get_op(node.op).is_loss_head:
            inputs = inputs[:1]
        stack.extend(entry.node for entry in inputs)
    return needed


def _write_atomic(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent or ".", prefix=".tmp-", suffix=".onnx")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def load(path: str | Path) -> tuple[Symbol, dict[str, np.ndarray]]:
    """``(symbol, params)`` of the ONNX file ``path``: its initializers become parameters."""
    from graphc.interop.onnx_import import read_model

    onnx = _onnx()
    model = onnx.load(str(path))
    return read_model(onnx, model, str(path))
