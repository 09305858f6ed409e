"""Run one node's CPU kernel as the runtime would, beside the NumPy reference executor.

``run_kernel`` evaluates a symbol with the reference, builds the :class:`NodeSpec` of one
node from the reference's arrays, lowers it, calls ``kernel.fn(*inputs, *outputs,
*workspace[, step])`` and returns the kernel's outputs with the reference's. Outputs and
float workspace start as NaN (integer ones as their dtype's maximum), so a kernel that
leaves an element unwritten or reads scratch it never wrote is caught.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import graphc.codegen_cpu  # noqa: F401 - registers the lowerings
from graphc.backend.lowering import Kernel, NodeSpec, lower
from graphc.ir.evaluate import evaluate_entries
from graphc.ir.node import Node, NodeOutput
from graphc.ir.registry import get_op


def find_node(symbol, node_name_or_op: str) -> Node:
    """The node of ``symbol``'s graph with that name, else the one node with that op."""
    nodes = [node for node in symbol.graph.nodes if not node.is_variable]
    named = [node for node in nodes if node.name == node_name_or_op]
    if named:
        return named[0]
    with_op = [node for node in nodes if node.op == node_name_or_op]
    if len(with_op) != 1:
        found = [node.name for node in with_op]
        raise LookupError(
            f"{node_name_or_op!r}: expected one node of that name or op, found {found}"
        )
    return with_op[0]


def node_spec(node: Node, values: Mapping[NodeOutput, np.ndarray], options=None) -> NodeSpec:
    """The NodeSpec of ``node`` with shapes and dtypes taken from evaluated ``values``."""
    inputs = [values[entry] for entry in node.inputs]
    count = get_op(node.op).num_outputs(node.attrs)
    outputs = [values[NodeOutput(node, index)] for index in range(count)]
    return NodeSpec(
        op=node.op,
        name=node.name,
        attrs=node.attrs,
        in_shapes=tuple(array.shape for array in inputs),
        in_dtypes=tuple(array.dtype for array in inputs),
        out_shapes=tuple(array.shape for array in outputs),
        out_dtypes=tuple(array.dtype for array in outputs),
        options=dict(options or {}),
    )


def poisoned(shape, dtype) -> np.ndarray:
    """A C-contiguous array that no correct kernel result can be confused with."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.full(shape, np.nan, dtype=dtype)
    return np.full(shape, np.iinfo(dtype).max if dtype.kind in "iu" else True, dtype=dtype)


def kernel_arguments(kernel: Kernel, spec: NodeSpec, inputs, step: int, outputs=None) -> list:
    """The runtime's argument list: inputs, fresh poisoned outputs (unless given) and
    workspace as the kernel prepares them, and the Dropout counter and the training flag
    when the kernel asks for them (``step`` < 0: inference, as the reference's step)."""
    if outputs is None:
        outputs = [poisoned(shape, dtype) for shape, dtype in zip(spec.out_shapes, spec.out_dtypes)]
    workspace = [poisoned(shape, dtype) for shape, dtype in kernel.workspace]
    args = list(kernel.arguments(tuple(inputs), tuple(outputs), tuple(workspace)))
    if kernel.needs_counter:
        args += [step, step >= 0]
    return args


def call_kernel(kernel: Kernel, spec: NodeSpec, inputs, step: int) -> list[np.ndarray]:
    """Call ``kernel`` on ``inputs`` over fresh poisoned outputs and workspace; the outputs."""
    outputs = [poisoned(shape, dtype) for shape, dtype in zip(spec.out_shapes, spec.out_dtypes)]
    if kernel.view_of is not None:  # the runtime binds a view and runs nothing
        np.copyto(outputs[0], np.asarray(inputs[kernel.view_of]).reshape(spec.out_shapes[0]))
        return outputs
    kernel.fn(*kernel_arguments(kernel, spec, inputs, step, outputs))
    return outputs


def run_kernel(
    symbol,
    node_name_or_op: str,
    inputs: Mapping[str, Any],
    is_train: bool = False,
    step: int = 0,
    dtype=np.float64,
    options=None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(kernel outputs, reference outputs) of one node of ``symbol``.

    Inputs are cast to ``dtype`` (None keeps them); an ndarray that already has it is
    passed as is, strides included, so tests can feed kernels non-contiguous views. The
    kernel gets the runtime's step argument: ``step`` in training, -1 at inference, and
    the reference is evaluated at that same step.

    >>> import graphc as gc
    >>> got, want = run_kernel(gc.sum(gc.Variable("a"), axis=0), "sum", {"a": [[1.0, 2.0]]})
    >>> got[0].tolist(), want[0].tolist()
    ([1.0, 2.0], [1.0, 2.0])
    """
    arrays = {}
    for name, value in inputs.items():
        array = np.asarray(value)
        arrays[name] = array if dtype is None else array.astype(dtype, copy=False)
    kernel_step = step if is_train else -1
    values = evaluate_entries(symbol, arrays, is_train=is_train, step=kernel_step)
    node = find_node(symbol, node_name_or_op)
    spec = node_spec(node, values, options)
    kernel = lower(spec)
    outputs = call_kernel(kernel, spec, [values[entry] for entry in node.inputs], kernel_step)
    references = [values[NodeOutput(node, index)] for index in range(len(spec.out_shapes))]
    return outputs, references
