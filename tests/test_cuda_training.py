"""Training on ``gc.gpu()``: the optimizers' CUDA update kernels against the CPU's, and
``Model.fit``, ``score``, ``predict`` and checkpoints of a GPU model against the same on the
CPU, under Numba's CUDA simulator (tests/conftest.py; with a GPU and NUMBA_ENABLE_CUDASIM=0
on the device)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from test_cuda_runtime import small_lenet

import graphc as gc
from graphc.codegen_cpu.optimizer_updates import UPDATES
from graphc.codegen_cuda.device import cuda_module
from graphc.codegen_cuda.optimizer_updates import RULES, update_kernel

pytestmark = pytest.mark.cuda

HYPER = {"momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "eps": 1e-7}
HYPER.update({"rho": 0.9, "gamma1": 0.95, "gamma2": 0.9})


def test_every_cpu_update_has_a_cuda_kernel():
    assert sorted(RULES) == sorted(UPDATES)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_a_cuda_update_equals_the_cpu_kernel(name, dtype):
    """Two updates of 37 elements, with weight decay and clipping that bites, from the same
    values: the CUDA kernel gives the CPU kernel's weights and states."""
    cuda = cuda_module()
    rng = np.random.default_rng(5)
    rule = RULES[name]
    weight = rng.standard_normal(37).astype(dtype)
    grad = (rng.standard_normal(37) * 3).astype(dtype)
    # Non-negative states, the first (a mean of squares for RMSProp) above the square of
    # the others, so that no square root is taken of a negative number.
    states = [(np.abs(rng.standard_normal(37)) * 0.1).astype(dtype) for _ in rule.states]
    if states:
        states[0] += 1
    scalars = (0.1, 0.01, 0.5, 1.0, 0.8, *(HYPER[hyper] for hyper in rule.hyper))
    host = [weight.copy(), grad, *(state.copy() for state in states)]
    device = [cuda.to_device(array) for array in (weight, grad, *states)]
    for _ in range(2):
        UPDATES[name](*host, *scalars)
        update_kernel(name)(*device, *scalars)
    tolerance = 2e-6 if dtype == np.float32 else 1e-13
    for label, want, got in zip(["weight", "grad", *rule.states], host, device):
        np.testing.assert_allclose(
            got.copy_to_host(), want, rtol=tolerance, atol=tolerance, err_msg=label
        )


def _pairs(count=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((count, 1, 7, 7))
    labels = rng.integers(0, 4, count).astype(np.float64)
    return images, labels


def _fit(ctx, optimizer, **params):
    images, labels = _pairs()
    model = gc.Model(small_lenet(), ctx=ctx)
    train = gc.io.NDArrayIter(images, labels, batch_size=4)
    with (
        pytest.warns(gc.StepByStepWarning) if ctx.device_type == "gpu" else contextlib.nullcontext()
    ):
        model.fit(train, optimizer=optimizer, optimizer_params=params, num_epoch=2, quiet=True)
    return model


@pytest.mark.parametrize(
    "optimizer, params",
    [
        ("sgd", {"learning_rate": 0.5, "momentum": 0.9, "wd": 0.01}),
        ("adam", {"learning_rate": 0.05}),
    ],
)
def test_fit_on_the_gpu_follows_the_cpu(optimizer, params):
    cpu = _fit(gc.cpu(), optimizer, **params)
    gpu = _fit(gc.gpu(), optimizer, **params)
    assert gpu.fit_path.startswith("step by step")
    want, _ = cpu.get_params()
    got, _ = gpu.get_params()
    for name, value in want.items():
        assert isinstance(got[name], np.ndarray)
        np.testing.assert_allclose(got[name], value, rtol=1e-9, atol=1e-11, err_msg=name)
    for key in ("train_loss", "train_accuracy"):
        np.testing.assert_allclose(gpu.history[key], cpu.history[key], rtol=1e-9)
    images, labels = _pairs(6, seed=1)
    np.testing.assert_allclose(gpu.predict(images), cpu.predict(images), rtol=1e-9, atol=1e-12)
    scored = gc.io.NDArrayIter(images, labels, batch_size=3)
    assert gpu.score(scored) == cpu.score(scored)


def test_a_gpu_checkpoint_resumes_as_an_uninterrupted_run(tmp_path):
    """Two epochs on the GPU, saved, loaded on the CPU and on the GPU, and a third epoch from
    the checkpoint: both equal three uninterrupted epochs on the CPU (so the momentum came
    through the checkpoint, to the host and back onto the device)."""
    params = {"learning_rate": 0.5, "momentum": 0.9}
    images, labels = _pairs()

    def fit(model, begin, end):
        train = gc.io.NDArrayIter(images, labels, batch_size=4)
        step_by_step = model.ctx.device_type == "gpu"
        with pytest.warns(gc.StepByStepWarning) if step_by_step else contextlib.nullcontext():
            model.fit(
                train,
                optimizer="sgd",
                optimizer_params=params,
                begin_epoch=begin,
                num_epoch=end,
                quiet=True,
            )

    uninterrupted = gc.Model(small_lenet())
    fit(uninterrupted, 0, 3)
    gpu = gc.Model(small_lenet(), ctx=gc.gpu())
    fit(gpu, 0, 2)
    prefix = str(tmp_path / "small")
    gpu.save_checkpoint(prefix, 2)
    for ctx in (gc.cpu(), gc.gpu()):
        resumed = gc.Model.load(prefix, 2, ctx=ctx)
        fit(resumed, 2, 3)
        for name, value in uninterrupted.get_params()[0].items():
            np.testing.assert_allclose(
                resumed.get_params()[0][name], value, rtol=1e-9, atol=1e-12, err_msg=name
            )


def test_a_stateful_charlm_fits_on_the_gpu_as_on_the_cpu():
    """Truncated BPTT: the LSTM state carried from window to window on the device."""
    text = np.random.default_rng(3).integers(0, 5, 40)
    histories = []
    for ctx in (gc.cpu(), gc.gpu()):
        net = gc.models.charlm(5, embed=3, hidden=4, stateful=True, dtype="float64")
        model = gc.Model(net, ctx=ctx, state_names=gc.models.CHARLM_STATE_NAMES)
        data = gc.io.BPTTIter(text, 2, 4, layout="TN")
        with (
            pytest.warns(gc.StepByStepWarning)
            if ctx.device_type == "gpu"
            else contextlib.nullcontext()
        ):
            model.fit(data, optimizer="adam", num_epoch=2, quiet=True)
        histories.append((model.history["train_loss"], model.get_params()[0]))
    (cpu_loss, cpu_params), (gpu_loss, gpu_params) = histories
    np.testing.assert_allclose(gpu_loss, cpu_loss, rtol=1e-9)
    for name, value in cpu_params.items():
        np.testing.assert_allclose(gpu_params[name], value, rtol=1e-8, atol=1e-10, err_msg=name)


# The simulator computes sqrt's gradient at 0 in NumPy scalars, which warn as they divide.
@pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")
def test_a_nonfinite_gradient_stops_fit_on_both_backends():
    """sqrt at 0: the loss is finite, its gradient is not; fit stops before the update and
    names the parameter (the GPU checks the gradients on the device)."""
    data, weight = gc.Variable("data"), gc.Variable("w", shape=(3,))
    net = gc.MakeLoss(gc.sum(gc.sqrt(data * weight)), name="loss")
    images = np.ones((4, 3))
    for ctx in (gc.cpu(), gc.gpu()):
        model = gc.Model(net, ctx=ctx, label_names=())
        model.set_params({"w": np.zeros(3)})
        train = gc.io.NDArrayIter(images, batch_size=2)
        with (
            pytest.warns(gc.StepByStepWarning)
            if ctx.device_type == "gpu"
            else contextlib.nullcontext(),
            pytest.raises(gc.TrainingDivergedError, match=r"the gradient of w is not finite"),
        ):
            model.fit(train, num_epoch=1, quiet=True)
        assert model.get_params()[0]["w"].tolist() == [0.0, 0.0, 0.0]
