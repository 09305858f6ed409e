"""The NumPy reference executor: the oracle every compiled backend is tested against.

Written for clarity, not speed: each node's reference forward runs on NumPy arrays in
topological order, and every result is checked against the inferred shape and dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from graphc.ir.errors import DTypeError, MissingInputError
from graphc.ir.infer import describe, infer_dtypes, infer_shapes
from graphc.ir.node import NodeOutput
from graphc.ir.registry import EvalContext, get_op
from graphc.ir.symbol import Symbol
from graphc.ir.unknown_dims import resolve_unknown_dims


def evaluate(
    symbol: Symbol,
    inputs: Mapping[str, Any],
    is_train: bool = False,
    step: int = 0,
) -> list[np.ndarray]:
    """Evaluate every output of ``symbol`` from NumPy inputs keyed by argument name.

    ``is_train`` switches Dropout to its seeded training mask; ``step`` selects the mask.

    >>> import graphc as gc
    >>> x = gc.Variable("x")
    >>> [round(float(v), 3) for v in gc.evaluate(gc.exp(x) * 2, {"x": [0.0, 1.0]})[0]]
    [2.0, 5.437]
    """
    shapes = {name: np.shape(value) for name, value in inputs.items()}
    settled = resolve_unknown_dims(symbol, shapes)  # MXNet's 0 sizes (graphc.ir.unknown_dims)
    values = evaluate_entries(settled, inputs, is_train, step)
    return [values[entry] for entry in settled.entries]


def evaluate_entries(
    symbol: Symbol, inputs: Mapping[str, Any], is_train: bool = False, step: int = 0
) -> dict[NodeOutput, np.ndarray]:
    """Evaluate and return the value of every node output of the graph."""
    graph = symbol.graph
    arrays = _prepare_inputs(graph, inputs)
    shapes = infer_shapes(graph, {name: array.shape for name, array in arrays.items()})
    dtypes = infer_dtypes(graph, {name: array.dtype for name, array in arrays.items()})
    ctx = EvalContext(is_train=is_train, step=step)
    values: dict[NodeOutput, np.ndarray] = {}
    for node in graph.nodes:
        if node.is_variable:
            values[NodeOutput(node, 0)] = arrays[node.name]
            continue
        opdef = get_op(node.op)
        args = [values[entry] for entry in node.inputs]
        results = opdef.forward(node.attrs, args, ctx)
        if len(results) != opdef.num_outputs(node.attrs):
            raise AssertionError(f"{describe(node)}: reference returned {len(results)} outputs")
        for index, result in enumerate(results):
            entry = NodeOutput(node, index)
            result = np.asarray(result)
            expected = shapes[entry]
            if result.shape != expected:
                raise AssertionError(
                    f"{describe(node)}: reference output {index} has shape {result.shape},"
                    f" the shape rule says {expected}"
                )
            values[entry] = result.astype(dtypes[entry], copy=False)
    return values


def _prepare_inputs(graph, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    names = [node.name for node in graph.variables]
    missing = [name for name in names if name not in inputs]
    if missing:
        raise MissingInputError(f"evaluate: no value given for {missing}")
    extra = sorted(set(inputs) - set(names))
    if extra:
        raise MissingInputError(f"evaluate: {extra} are not arguments of the graph; it has {names}")
    arrays = {}
    for node in graph.variables:
        value = inputs[node.name]
        declared = node.attrs.get("dtype")
        if isinstance(value, np.ndarray):
            array = value
        else:
            array = np.asarray(value, dtype=declared or np.float32)
        if declared is not None and array.dtype != np.dtype(declared):
            raise DTypeError(
                f"evaluate: {node.name} is declared {declared} but given {array.dtype}"
            )
        arrays[node.name] = array
    return arrays
