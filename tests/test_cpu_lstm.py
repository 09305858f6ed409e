"""CPU kernels of LSTM and _lstm_backward against the NumPy reference executor.

Each case builds an LSTM and the gradients of all its inputs under random head gradients,
and evaluates the whole graph with the reference. The LSTM and _lstm_backward nodes are then
lowered and their kernels run on the reference's values of their inputs, into NaN-filled
outputs and workspace, so an output the kernel does not overwrite fails the comparison."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from cpu_helpers import node_spec

import graphc as gc
from graphc.backend.lowering import NodeSpec, lower
from graphc.ir.errors import BackendError
from graphc.ir.evaluate import evaluate_entries
from graphc.ir.node import NodeOutput
from graphc.ir.registry import get_op

I = 5
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
STATE_CASES = [(), ("state",), ("state_cell",), ("state", "state_cell")]
HEADS = ("head_output", "head_state", "head_state_cell")
LSTM_OPS = ("LSTM", "_lstm_backward")


def _lstm_gradient_graph(H: int, states: tuple[str, ...]) -> gc.Symbol:
    """The LSTM's outputs and the gradients of all its arguments under the head gradients
    named in HEADS, as one group."""
    given = {state: gc.Variable(state) for state in states}
    rnn = gc.LSTM(gc.Variable("data"), num_hidden=H, name="rnn", **given)
    head_grads = [gc.Variable(head) for head in HEADS]
    return gc.Group([rnn, *gc.grad(rnn, rnn.list_arguments(), head_grads=head_grads)])


def _random_inputs(symbol: gc.Symbol, T: int, N: int, H: int, dtype, seed: int) -> dict:
    """Random values for every argument of ``symbol``, with shapes from infer_shape."""
    rng = np.random.default_rng(seed)
    arg_shapes, _, _ = symbol.infer_shape(
        data=(T, N, I), head_output=(T, N, H), head_state=(N, H), head_state_cell=(N, H)
    )
    names = symbol.list_arguments()
    return {
        name: (rng.standard_normal(shape) * 0.7).astype(dtype)
        for name, shape in zip(names, arg_shapes, strict=True)
    }


def _reference_outputs(node, values: dict) -> list[np.ndarray]:
    """Every output of ``node``, hidden ones included, as the reference computed them."""
    count = get_op(node.op).num_outputs(node.attrs)
    return [values[NodeOutput(node, index)] for index in range(count)]


def _run_kernel(spec: NodeSpec, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Lower ``spec`` and run its kernel into NaN-filled outputs and workspace."""
    kernel = lower(spec)
    outputs = [
        np.full(shape, np.nan, dtype) for shape, dtype in zip(spec.out_shapes, spec.out_dtypes)
    ]
    workspace = [np.full(shape, np.nan, dtype) for shape, dtype in kernel.workspace]
    kernel.fn(*kernel.arguments(tuple(inputs), tuple(outputs), tuple(workspace)))
    return outputs


def _assert_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Equal to a relative tolerance by dtype, taken relative to the largest entry for those
    near zero (a sum of many terms that cancels has only that much absolute accuracy)."""
    assert actual.dtype == expected.dtype, what
    assert np.all(np.isfinite(actual)), f"{what}: not fully overwritten or not finite"
    rtol = RTOL[expected.dtype]
    atol = rtol * float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def _lstm_nodes(symbol: gc.Symbol) -> list:
    return [node for node in symbol.graph.nodes if node.op in LSTM_OPS]


def _evaluated_case(T: int, N: int, H: int, states: tuple[str, ...], dtype, seed: int = 0):
    """The gradient graph's LSTM and _lstm_backward nodes and the reference's values."""
    symbol = _lstm_gradient_graph(H, states)
    values = evaluate_entries(symbol, _random_inputs(symbol, T, N, H, dtype, seed))
    return _lstm_nodes(symbol), values


def _output_names(node) -> tuple[str, ...]:
    opdef = get_op(node.op)
    return opdef.output_names(node.attrs) + opdef.hidden_output_names(node.attrs)


def _assert_kernel_matches(node, values: dict, inputs: list[np.ndarray], options=None) -> None:
    """The kernel of ``node`` on ``inputs`` gives the reference's outputs in ``values``."""
    actual = _run_kernel(node_spec(node, values, options), inputs)
    expected = _reference_outputs(node, values)
    for name, got, want in zip(_output_names(node), actual, expected, strict=True):
        _assert_close(got, want, f"{node.op} {name}")


# The kernels split the batch into one part per thread (codegen_cpu/threads.py);
# split_small makes them split these small shapes too: 2 and 3 parts of batches of 1 and 5.
THREADS = [
    pytest.param({"num_threads": 1}, id="1-thread"),
    pytest.param({"num_threads": 2, "split_small": True}, id="2-threads"),
    pytest.param({"num_threads": 3, "split_small": True}, id="3-threads"),
]


@pytest.mark.parametrize("options", THREADS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("states", STATE_CASES)
@pytest.mark.parametrize("H", [2, 4])
@pytest.mark.parametrize("N", [1, 5])
@pytest.mark.parametrize("T", [1, 7, 200])
def test_kernels_match_reference(T, N, H, states, dtype, options):
    nodes, values = _evaluated_case(T, N, H, states, dtype, seed=T * 100 + N * 10 + H)
    assert sorted(node.op for node in nodes) == sorted(LSTM_OPS)
    for node in nodes:
        inputs = [values[entry] for entry in node.inputs]
        _assert_kernel_matches(node, values, inputs, options)


def _kernel_after_a_call(op: str, T: int):
    """The compiled function of op's kernel for sequence length T, called once."""
    nodes, values = _evaluated_case(T, N=3, H=2, states=(), dtype=np.float64)
    (node,) = [node for node in nodes if node.op == op]
    spec = node_spec(node, values)
    _run_kernel(spec, [values[entry] for entry in node.inputs])
    return lower(spec).fn


@pytest.mark.parametrize("op", LSTM_OPS)
def test_sequence_length_does_not_compile_new_code(op):
    """One compiled specialisation serves every T: the loop over time is not unrolled."""
    short = _kernel_after_a_call(op, T=1)
    compiled = len(short.signatures)
    long = _kernel_after_a_call(op, T=200)
    assert long is short
    assert len(long.signatures) == compiled


def _strided(array: np.ndarray) -> np.ndarray:
    """A view with the same values and no contiguous axis."""
    padded = np.zeros((*array.shape, 2), dtype=array.dtype)
    padded[..., 0] = array
    return padded[..., 0]


def test_inputs_of_any_strides():
    symbol = _lstm_gradient_graph(4, ("state", "state_cell"))
    inputs = _random_inputs(symbol, 7, 3, 4, np.float64, seed=3)
    # A head gradient that is a broadcast view: zero strides, read-only.
    inputs["head_state"] = np.broadcast_to(inputs["head_state"][0], (3, 4))
    values = evaluate_entries(symbol, inputs)
    for node in _lstm_nodes(symbol):
        given = [values[entry] for entry in node.inputs]
        strided = [value if 0 in value.strides else _strided(value) for value in given]
        assert not any(value.flags.c_contiguous for value in strided)
        if node.op == "_lstm_backward":
            assert any(0 in value.strides for value in strided)
        _assert_kernel_matches(node, values, strided)


@numba.njit
def _call_repeatedly(kernel, arrays, times):
    """Call ``kernel(*arrays)`` from compiled code, as a generated step function does."""
    for _ in range(times):
        kernel(*arrays)


def _allocations(kernel, arrays: tuple, times: int) -> int:
    """How many buffers Numba's runtime allocates in ``times`` calls of ``kernel``."""
    nrt = pytest.importorskip("numba.core.runtime._nrt_python")
    was_enabled = nrt.memsys_stats_enabled()
    nrt.memsys_enable_stats()
    try:
        before = nrt.memsys_get_stats_alloc()
        _call_repeatedly(kernel, arrays, times)
        return nrt.memsys_get_stats_alloc() - before
    finally:
        if not was_enabled:  # leave the counters as the other tests expect them
            nrt.memsys_disable_stats()


@pytest.mark.parametrize("op", LSTM_OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_steady_state_call_allocates_nothing(op, dtype):
    nodes, values = _evaluated_case(50, 3, 4, ("state", "state_cell"), dtype)
    (node,) = [node for node in nodes if node.op == op]
    spec = node_spec(node, values)
    kernel = lower(spec)
    inputs = [values[entry] for entry in node.inputs]
    outputs = [np.empty(shape, dtype) for shape, dtype in zip(spec.out_shapes, spec.out_dtypes)]
    workspace = [np.empty(shape, dtype) for shape, dtype in kernel.workspace]
    arrays = kernel.arguments(tuple(inputs), tuple(outputs), tuple(workspace))
    _call_repeatedly(kernel.fn, arrays, 1)
    # Passing the arrays in from Python allocates their headers; only the difference between
    # one call and three counts what the kernel itself allocates.
    assert _allocations(kernel.fn, arrays, 3) - _allocations(kernel.fn, arrays, 1) == 0


def test_integer_lstm_is_a_backend_error_naming_the_node():
    spec = NodeSpec(
        op="LSTM",
        name="int_rnn",
        attrs={"num_hidden": 2, "has_state": False, "has_state_cell": False},
        in_shapes=((3, 1, 5), (8, 5), (8, 2), (8,), (8,)),
        in_dtypes=(np.dtype(np.int32),) * 5,
        out_shapes=((3, 1, 2), (1, 2), (1, 2), (3, 1, 8), (3, 1, 2)),
        out_dtypes=(np.dtype(np.int32),) * 5,
    )
    with pytest.raises(BackendError, match=r"int_rnn \(LSTM\).*int32"):
        lower(spec)
