"""The CUDA backend's kernels against the NumPy reference, node by node, under Numba's CUDA
simulator (tests/conftest.py sets NUMBA_ENABLE_CUDASIM=1 unless told otherwise; with a GPU
and NUMBA_ENABLE_CUDASIM=0 the same tests run on the device).

Every node of every op case (tests/optable.py) whose op the CUDA backend lowers is run,
in the forward graph and in its gradient graph, in float32 and float64: so each kernel is
checked forward and backward, on the table's odd shapes. The GEMM's edge tiles and
transpositions and the sums' layouts get shapes of their own.
"""

from __future__ import annotations

import numpy as np
import pytest
from cpu_helpers import node_spec
from cuda_helpers import call_cuda_kernel, has_cuda_lowering
from optable import CASES

import graphc as gc
from graphc.backend.lowering import NodeSpec
from graphc.ir.evaluate import evaluate_entries
from graphc.ir.gradcheck import non_differentiable_arguments
from graphc.ir.node import NodeOutput
from graphc.ir.registry import get_op
from graphc.ir.unknown_dims import resolve_unknown_dims

pytestmark = [
    pytest.mark.cuda,
    # Under the simulator, Dropout's hash runs its wrapping uint64 arithmetic in NumPy
    # scalars, which warn on the wrap that the hash relies on.
    pytest.mark.filterwarnings("ignore:overflow encountered in scalar:RuntimeWarning"),
]

TOLERANCE = {np.float64: 1e-10, np.float32: 2e-5}


def _training_graph(case):
    """The case's symbol with its gradients (head gradients as inputs), and the inputs."""
    rng = np.random.default_rng(0)
    values = {name: make(rng) for name, make in case.inputs.items()}
    # Node by node: MXNet's 0 sizes settled first, as binding does.
    symbol = resolve_unknown_dims(case.build(), {k: np.shape(v) for k, v in values.items()})
    if not case.differentiable:
        return symbol, values
    wrt = [
        name
        for name in symbol.list_arguments()
        if name in values and name not in non_differentiable_arguments(symbol)
    ]
    heads = []
    for index, entry in enumerate(symbol.entries):
        is_loss = not entry.node.is_variable and get_op(entry.node.op).is_loss_head
        heads.append(None if is_loss else gc.Variable(f"_head{index}"))
    if not wrt:
        return symbol, values
    grads = gc.grad(symbol, wrt, head_grads=heads)
    _, out_shapes, _ = symbol.infer_shape(**{k: np.shape(v) for k, v in values.items()})
    for index, head in enumerate(heads):
        if head is not None:
            values[head.name] = rng.standard_normal(out_shapes[index])
    return gc.Group([symbol, *grads]), values


def _lowered_nodes(symbol):
    return [
        node for node in symbol.graph.nodes if not node.is_variable and has_cuda_lowering(node.op)
    ]


CUDA_CASES = [case for case in CASES if _lowered_nodes(_training_graph(case)[0])]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CUDA_CASES, ids=repr)
def test_every_lowered_node_matches_the_reference(case, dtype):
    symbol, values = _training_graph(case)
    arrays = {name: np.asarray(value).astype(dtype) for name, value in values.items()}
    entries = evaluate_entries(
        symbol, arrays, is_train=case.is_train, step=0 if case.is_train else -1
    )
    for node in _lowered_nodes(symbol):
        spec = node_spec(node, entries)
        dtypes = (*spec.in_dtypes, *spec.out_dtypes)
        floats = {np.dtype(d) for d in dtypes if np.dtype(d).kind == "f"}
        if floats - {np.dtype(dtype)}:
            continue  # a float64 index or label array of a float32 case
        got = call_cuda_kernel(
            spec,
            [entries[entry] for entry in node.inputs],
            training=case.is_train,
            counter=0 if case.is_train else -1,
        )
        for index, array in enumerate(got):
            want = entries[NodeOutput(node, index)]
            if np.asarray(want).dtype.kind in "iu":  # max pooling's argmax: exactly
                np.testing.assert_array_equal(array, want, err_msg=f"{node.name} argmax")
                continue
            np.testing.assert_allclose(
                array,
                want,
                rtol=TOLERANCE[dtype],
                atol=TOLERANCE[dtype],
                err_msg=f"{node.name} ({node.op}) output {index}",
            )


def _spec(op, attrs, in_shapes, out_shape, dtype=np.float64):
    dtype = np.dtype(dtype)
    return NodeSpec(
        op, op, attrs, tuple(in_shapes), (dtype,) * len(in_shapes), (out_shape,), (dtype,)
    )


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("rows, inner, cols", [(1, 1, 1), (65, 9, 70), (3, 17, 129)])
def test_dot_edge_tiles_and_transpositions(rows, inner, cols, trans_a, trans_b):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((inner, rows) if trans_a else (rows, inner))
    b = rng.standard_normal((cols, inner) if trans_b else (inner, cols))
    attrs = {"transpose_a": trans_a, "transpose_b": trans_b}
    (got,) = call_cuda_kernel(_spec("dot", attrs, [a.shape, b.shape], (rows, cols)), [a, b])
    want = (a.T if trans_a else a) @ (b.T if trans_b else b)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_the_gpu_tiles_compute_the_same_under_the_simulator():
    """The simulator's tests use smaller tiles; the GPU's 64 x 64 ones, once, on edge tiles."""
    from graphc.codegen_cuda.device import cuda_module
    from graphc.codegen_cuda.gemm import GPU_TILES, gemm_launch

    cuda = cuda_module()
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((65, 9)), rng.standard_normal((70, 9))
    out = cuda.device_array((65, 70))
    gemm_launch(np.float64, False, True, False, 65, 70, GPU_TILES)(
        cuda.to_device(a), cuda.to_device(b), out
    )
    np.testing.assert_allclose(out.copy_to_host(), a @ b.T, rtol=1e-12, atol=1e-12)


def test_fully_connected_over_the_last_axis_with_and_without_bias():
    rng = np.random.default_rng(2)
    x, w, bias = rng.standard_normal((2, 3, 5)), rng.standard_normal((7, 5)), rng.standard_normal(7)
    attrs = {"num_hidden": 7, "no_bias": False, "flatten": False}
    spec = _spec("FullyConnected", attrs, [x.shape, w.shape, bias.shape], (2, 3, 7))
    (got,) = call_cuda_kernel(spec, [x, w, bias])
    np.testing.assert_allclose(got, x @ w.T + bias, rtol=1e-12, atol=1e-12)
    flat_w = rng.standard_normal((7, 15))
    attrs = {"num_hidden": 7, "no_bias": True, "flatten": True}
    spec = _spec("FullyConnected", attrs, [x.shape, flat_w.shape], (2, 7))
    (got,) = call_cuda_kernel(spec, [x, flat_w])
    np.testing.assert_allclose(got, x.reshape(2, 15) @ flat_w.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "shape, axis",
    [((300, 7), 0), ((4, 1, 5, 6), (1, 2)), ((5,), None), ((3, 600), 1), ((2, 3, 5, 4), (0, 2))],
)
def test_sums_are_deterministic(shape, axis):
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    want = np.sum(x.astype(np.float64), axis=axis)
    spec = _spec("sum", {"axis": axis, "keepdims": False}, [shape], np.shape(want), np.float32)
    first = call_cuda_kernel(spec, [x])[0]
    np.testing.assert_allclose(first, want, rtol=1e-6, atol=1e-6)
    assert call_cuda_kernel(spec, [x])[0].tobytes() == first.tobytes()
