"""The compiled CPU backend against the NumPy reference, op by op and model by model:
forward and backward, grad_req write and add, float64 to 1e-10 and float32 to 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.array_utils import byte_bounds
from optable import CASES

import graphc as gc
from graphc.ir.gradcheck import non_differentiable_arguments
from graphc.ir.registry import get_op

pytestmark = pytest.mark.cpu

TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


def _inputs(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {name: make(rng).astype(dtype) for name, make in case.inputs.items()}


def _reference(symbol, values, wrt, head_values, is_train, step):
    heads = []
    for index, entry in enumerate(symbol.entries):
        is_loss = not entry.node.is_variable and get_op(entry.node.op).is_loss_head
        heads.append(None if is_loss else gc.Variable(f"_ref_head{index}"))
    forward = gc.evaluate(symbol, values, is_train=is_train, step=step)
    if not wrt:
        return forward, []
    grads = gc.grad(symbol, wrt, head_grads=heads)
    feeds = dict(values)
    for var, value in zip(heads, head_values):
        if var is not None:
            feeds[var.name] = value
    group = gc.Group(grads)
    needed = set(group.list_inputs())
    return forward, gc.evaluate(
        group, {k: v for k, v in feeds.items() if k in needed}, is_train=is_train, step=step
    )


def assert_close(got, want, dtype, what):
    tolerance = TOLERANCE[dtype]
    scale = max(float(np.max(np.abs(want))), 1.0) if want.size else 1.0
    error = float(np.max(np.abs(got - want))) / scale if want.size else 0.0
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert error <= tolerance, f"{what}: relative error {error:.3g} > {tolerance:g}"


def check_against_reference(
    symbol, values, dtype, grad_req="write", is_train=False, seed=1, options=None
):
    rng = np.random.default_rng(seed)
    skip = non_differentiable_arguments(symbol)
    wrt = [name for name in symbol.list_arguments() if name not in skip]
    exe = symbol.simple_bind(
        gc.cpu(),
        grad_req=grad_req if wrt else "null",
        options=options,
        type_dict={n: v.dtype for n, v in values.items()},
        **{n: v.shape for n, v in values.items()},
    )
    for name, value in values.items():
        exe.arg_dict[name][:] = value
    initial = {
        name: rng.standard_normal(g.shape).astype(g.dtype) for name, g in exe.grad_dict.items()
    }
    for name, value in initial.items():
        exe.grad_dict[name][:] = value
    outputs = [out.copy() for out in exe.forward(is_train=is_train)]
    head_values = [rng.standard_normal(out.shape).astype(out.dtype) for out in outputs]
    ref_outputs, ref_grads = _reference(symbol, values, wrt, head_values, is_train, step=0)
    for index, (got, want) in enumerate(zip(outputs, ref_outputs)):
        assert_close(got, want, dtype, f"output {index}")
    if not wrt:
        return exe
    exe.backward(out_grads=head_values)
    for name, want in zip(wrt, ref_grads):
        expected = want + initial[name] if grad_req == "add" else want
        assert_close(
            exe.grad_dict[name], expected.astype(dtype), dtype, f"gradient of {name} ({grad_req})"
        )
    return exe


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_op_matches_reference(case, dtype):
    check_against_reference(case.build(), _inputs(case, dtype), dtype, is_train=case.is_train)


# The ops whose kernels split their work between threads (codegen_cpu/threads.py).
SPLIT_OPS = {"FullyConnected", "dot", "batch_dot", "Convolution", "Pooling", "LSTM"}
SPLIT_CASES = [c for c in CASES if SPLIT_OPS & {node.op for node in c.build().graph.nodes}]


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("case", SPLIT_CASES, ids=repr)
def test_op_matches_reference_split_between_threads(case, threads):
    """Forward and backward with every splitting kernel in 2 and 3 parts, small as the
    shapes are (split_small), against the reference."""
    options = {"num_threads": threads, "split_small": True}
    values = _inputs(case, np.float64)
    check_against_reference(
        case.build(), values, np.float64, is_train=case.is_train, options=options
    )


@pytest.mark.parametrize("case", [c for c in CASES if c.differentiable], ids=repr)
def test_op_gradient_accumulates_with_grad_req_add(case):
    check_against_reference(
        case.build(), _inputs(case, np.float64), np.float64, grad_req="add", is_train=case.is_train
    )


def _model_inputs(symbol, shapes, dtype, label_high, seed=0):
    rng = np.random.default_rng(seed)
    arg_shapes, _, _ = symbol.infer_shape(**shapes)
    values = {}
    for name, shape in zip(symbol.list_arguments(), arg_shapes):
        values[name] = (rng.standard_normal(shape) * 0.3).astype(dtype)
    for name in non_differentiable_arguments(symbol):
        values[name] = rng.integers(0, label_high, values[name].shape).astype(dtype)
    return values


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    "model, shapes, label_high",
    [
        (lambda: gc.models.mlp(), {"data": (5, 1, 4, 7)}, 10),
        (lambda: gc.models.lenet(), {"data": (3, 1, 28, 28)}, 10),
        (lambda: gc.models.charlm(vocab_size=11, embed=6, hidden=7), {"data": (5, 3)}, 11),
        (lambda: gc.models.linreg(), {"data": (7, 13)}, 1),
    ],
    ids=["mlp", "lenet", "charlm", "linreg"],
)
def test_models_end_to_end(model, shapes, label_high, dtype):
    symbol = model()
    values = _model_inputs(symbol, shapes, dtype, label_high)
    if "lro_label" in values:
        values["lro_label"] = (
            np.random.default_rng(2).standard_normal(values["lro_label"].shape).astype(dtype)
        )
    check_against_reference(symbol, values, dtype)


def test_wrong_input_shape_or_dtype_is_an_error_naming_the_argument():
    exe = gc.models.mlp().simple_bind(gc.cpu(), data=(4, 6))
    with pytest.raises(
        gc.ShapeError, match=r"argument 'data' expects shape \(4, 6\), given \(4, 7\)"
    ):
        exe.forward(data=np.zeros((4, 7), dtype=np.float32))
    with pytest.raises(gc.ShapeError, match=r"expects shape \(4, 6\), given \(6,\)"):
        exe.forward(data=np.zeros(6, dtype=np.float32))
    with pytest.raises(
        gc.DTypeError, match=r"argument 'data' expects dtype float32, given float64"
    ):
        exe.forward(data=np.zeros((4, 6)))


def test_arrays_are_shared_in_place_and_reshape_keeps_parameters():
    net = gc.models.mlp(hidden=(3,))
    exe = net.simple_bind(gc.cpu(), data=(2, 5))
    rng = np.random.default_rng(0)
    for array in exe.arg_dict.values():
        array[:] = rng.standard_normal(array.shape)
    first = exe.forward()[0].copy()
    exe.arg_dict["fc2_bias"][:] += 1.0  # a softmax is invariant to a shared shift
    np.testing.assert_allclose(exe.forward()[0], first, rtol=1e-5)
    exe.arg_dict["fc2_bias"][0] += 5.0
    assert not np.allclose(exe.forward()[0], first)
    bigger = exe.reshape(data=(6, 5))
    assert bigger.arg_dict["data"].shape == (6, 5)
    assert bigger.arg_dict["softmax_label"].shape == (6,)
    assert bigger.arg_dict["fc1_weight"] is exe.arg_dict["fc1_weight"], "parameters are shared"
    assert bigger.grad_dict["fc1_weight"] is exe.grad_dict["fc1_weight"]
    bigger.arg_dict["data"][:2] = exe.arg_dict["data"]
    np.testing.assert_allclose(bigger.forward()[0][:2], exe.forward()[0], rtol=1e-6)


def test_memory_plan_reuses_buffers_and_reports_peak():
    exe = gc.models.lenet().simple_bind(gc.cpu(), data=(2, 1, 28, 28))
    stats = exe.stats()
    assert 0 < arena_span_bytes(exe) <= stats["planned_peak_bytes"]
    requested = exe.memory_plan.requested_bytes
    assert stats["planned_peak_bytes"] < 0.7 * requested, "liveness-based reuse shares memory"
    assert stats["kernels_per_step"] > 0 and stats["nodes"] >= stats["kernels_per_step"]
    assert "planned peak" in exe.debug_str()


def arena_span_bytes(executor) -> int:
    """Bytes from the lowest to the highest address of the executor's outputs and gradients:
    views of its one arena, so at most the planned peak."""
    bounds = [byte_bounds(array) for array in [*executor.outputs, *executor.grad_dict.values()]]
    return max(high for _, high in bounds) - min(low for low, _ in bounds)


def test_no_allocation_in_steady_state():
    """After a warm-up, no kernel of a training step allocates: Numba's allocation counter
    grows by exactly one per array argument, nested ones in a fused kernel's anchor
    arguments included (the wrapper it makes to pass a NumPy array in from Python, which a
    compiled step function will not need) and by nothing else."""
    from numba.core.runtime import rtsys

    from graphc.runtime.launch import call_launch

    exe = gc.models.lenet().simple_bind(gc.cpu(), data=(2, 1, 28, 28))
    exe.forward(is_train=True)
    exe.backward()
    # NUMBA_NRT_STATS (conftest) takes effect when Numba's runtime starts by compiling; a
    # process whose kernels all came from the cache starts it without, so ask directly.
    nrt = pytest.importorskip("numba.core.runtime._nrt_python")
    nrt.memsys_enable_stats()
    offenders = []
    for step in exe._forward_launches + exe._backward_launches:
        arrays = _count_arrays(step.args)
        before = rtsys.get_allocation_stats().alloc
        call_launch(exe.target, step, 0, True)
        extra = rtsys.get_allocation_stats().alloc - before - arrays
        if extra:
            offenders.append(f"{step.node.name} ({step.node.op}): {extra}")
    assert not offenders, offenders


def _count_arrays(value) -> int:
    if isinstance(value, np.ndarray):
        return 1
    if isinstance(value, tuple):
        return sum(_count_arrays(item) for item in value)
    return 0


def test_options_reach_code_generation():
    """fastmath is off by default and on when asked; the im2col bound reaches the kernel."""
    x = gc.Variable("x")
    net = gc.Convolution(gc.exp(x) * 2.0, kernel=3, num_filter=2, name="conv")
    plain = net.simple_bind(gc.cpu(), grad_req="null", x=(2, 1, 6, 6))
    fast = net.simple_bind(
        gc.cpu(), grad_req="null", options={"fastmath": True, "im2col_bytes": 4096}, x=(2, 1, 6, 6)
    )
    sources = {step.node.op: step.kernel.source for step in plain._forward_launches}
    assert "fastmath=False" in sources["_fused"], "exp and the product are fused"
    assert "fastmath=True" in {s.node.op: s.kernel.source for s in fast._forward_launches}["_fused"]
    workspace = [
        size
        for key, size in fast.memory_plan.sizes.items()
        if isinstance(key, tuple) and key[0] == "ws"
    ]
    assert workspace and sum(workspace) <= 4096, "the convolution's im2col scratch is bounded"
    values = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    for exe in (plain, fast):
        exe.arg_dict["conv_weight"][:] = 0.5
    np.testing.assert_allclose(fast.forward(x=values)[0], plain.forward(x=values)[0], rtol=1e-5)


@pytest.mark.parametrize(
    "model, shapes, label_high",
    [
        (lambda: gc.models.mlp(), {"data": (5, 7)}, 10),
        pytest.param(
            lambda: gc.models.lenet(),
            {"data": (2, 1, 28, 28)},
            10,
            marks=pytest.mark.slow,  # LeNet at three levels: 18 s on a cold cache
        ),
        (lambda: gc.models.charlm(vocab_size=11, embed=6, hidden=7), {"data": (5, 3)}, 11),
    ],
    ids=["mlp", "lenet", "charlm"],
)
def test_opt_levels_give_the_same_step(model, shapes, label_high, monkeypatch):
    """The training step at -O0, -O1 and -O2 computes the same loss and gradients; -O2 runs
    no more nodes than -O0. GRAPHC_OPT_LEVEL picks the level when none is given."""
    symbol = model()
    values = _model_inputs(symbol, shapes, np.float64, label_high)
    results = {}
    for level in (0, 1, 2):
        monkeypatch.setenv("GRAPHC_OPT_LEVEL", str(level))
        exe = symbol.simple_bind(
            gc.cpu(), type_dict={n: v.dtype for n, v in values.items()}, **shapes
        )
        assert exe.stats()["opt_level"] == level
        exe.copy_params_from(values)
        outputs = [out.copy() for out in exe.forward(is_train=True)]
        exe.backward()
        results[level] = (outputs, {n: g.copy() for n, g in exe.grad_dict.items()}, exe.stats())
    for level in (1, 2):
        for got, want in zip(results[level][0], results[0][0]):
            assert_close(got, want, np.float64, f"output at -O{level}")
        for name, want in results[0][1].items():
            assert_close(
                results[level][1][name], want, np.float64, f"gradient of {name} at -O{level}"
            )
    assert results[2][2]["nodes"] <= results[0][2]["nodes"]
    with pytest.raises(ValueError, match="opt_level=5 is not a level"):
        symbol.simple_bind(gc.cpu(), opt_level=5, **shapes)
