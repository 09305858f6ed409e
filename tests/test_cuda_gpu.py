"""The CUDA backend at the sizes it is for: large GEMMs, LeNet at batch 100 and the seed
models trained for hundreds of steps, each against the CPU backend. On a GPU
(``make test-gpu``) they run at full size; under the simulator (``make test``) the same
code runs at tiny sizes, so that what a GPU session runs is known to work."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import graphc as gc
from graphc.codegen_cuda.target import SIMULATED

pytestmark = pytest.mark.cuda

GEMM = (33, 17, 9) if SIMULATED else (1031, 769, 515)
"""(rows, depth, cols): odd, so that every edge tile is exercised."""
STEPS = 2 if SIMULATED else 300
FULL_LENET = pytest.mark.skipif(
    SIMULATED,
    reason="LeNet's full widths (20 and 50 filters, 500 hidden) take many minutes under the"
    " simulator; tests/test_cuda_runtime.py's small LeNet runs every layer there",
)


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
def test_a_large_float32_gemm(trans_a, trans_b):
    from cuda_helpers import call_cuda_kernel

    from graphc.backend.lowering import NodeSpec

    rows, depth, cols = GEMM
    rng = np.random.default_rng(0)
    a = rng.standard_normal((depth, rows) if trans_a else (rows, depth), dtype=np.float32)
    b = rng.standard_normal((cols, depth) if trans_b else (depth, cols), dtype=np.float32)
    f32 = np.dtype(np.float32)
    attrs = {"transpose_a": trans_a, "transpose_b": trans_b}
    spec = NodeSpec("dot", "dot", attrs, (a.shape, b.shape), (f32, f32), ((rows, cols),), (f32,))
    (got,) = call_cuda_kernel(spec, [a, b])
    want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
    # float32 sums over ``depth`` terms: a bound that grows with its square root.
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.sqrt(depth) * 8)


@FULL_LENET
def test_lenet_forward_and_backward_at_full_size():
    net = gc.models.lenet()
    shape = (100, 1, 28, 28)
    cpu = net.simple_bind(gc.cpu(), data=shape)
    gpu = net.simple_bind(gc.gpu(), data=shape)
    rng = np.random.default_rng(1)
    values = {}
    for name, array in cpu.arg_dict.items():
        if name == "softmax_label":
            values[name] = rng.integers(0, 10, array.shape).astype(np.float32)
        else:
            values[name] = (rng.standard_normal(array.shape) * 0.1).astype(np.float32)
    for executor in (cpu, gpu):
        executor.copy_params_from(values)
        executor.forward(is_train=True)
        executor.backward()
    np.testing.assert_allclose(gc.asnumpy(gpu.outputs[0]), cpu.outputs[0], rtol=1e-4, atol=1e-6)
    for name, gradient in cpu.grad_dict.items():
        scale = float(np.abs(gradient).max()) or 1.0
        np.testing.assert_allclose(
            gc.asnumpy(gpu.grad_dict[name]), gradient, rtol=0, atol=2e-4 * scale, err_msg=name
        )


@pytest.mark.parametrize("name", ["linreg", "mlp", pytest.param("lenet", marks=FULL_LENET)])
def test_a_seed_model_trains_as_on_the_cpu(name):
    """``STEPS`` SGD steps with momentum in float64: the parameters stay the CPU's to
    rounding (float64, so that hundreds of steps cannot amplify float32 rounding into a
    difference the test would have to allow)."""
    rng = np.random.default_rng(2)
    batch = 4 if SIMULATED else 50
    if name == "linreg":
        symbol, x = gc.models.linreg(dtype="float64"), rng.standard_normal((batch * 2, 13))
        y = x @ rng.standard_normal(13)
    elif name == "mlp":
        symbol = gc.models.mlp(hidden=(8,) if SIMULATED else (64,), dtype="float64")
        x, y = rng.standard_normal((batch * 2, 20)), rng.integers(0, 10, batch * 2)
    else:
        symbol = gc.models.lenet(dtype="float64")
        x, y = rng.standard_normal((batch * 2, 1, 28, 28)), rng.integers(0, 10, batch * 2)
    epochs = max(1, STEPS // 2)
    results = []
    for ctx in (gc.cpu(), gc.gpu()):
        model = gc.Model(symbol, ctx=ctx)
        data = gc.io.NDArrayIter(x, y.astype(np.float64), batch_size=batch)
        params = {"learning_rate": 0.01, "momentum": 0.9}
        with _maybe_step_by_step(ctx):
            model.fit(data, optimizer_params=params, num_epoch=epochs, quiet=True)
        results.append(model.get_params()[0])
    for param, value in results[0].items():
        np.testing.assert_allclose(results[1][param], value, rtol=1e-7, atol=1e-9, err_msg=param)


def _maybe_step_by_step(ctx):
    if ctx.device_type == "gpu":  # no compiled training loop on the GPU yet
        return pytest.warns(gc.StepByStepWarning)
    return contextlib.nullcontext()
