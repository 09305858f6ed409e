"""Twenty training steps through the compiled loop equal twenty steps of the step-by-step
path and of a NumPy reference of the same updates: the MLP, LeNet and the stateful LSTM
language model, SGD with momentum and weight decay and Adam, float64 and float32, with
shuffled batches in chunks that span epochs.

The reference computes each batch's gradients with the NumPy reference executor
(``gc.evaluate`` of ``gc.grad``, in float64 whatever the model's dtype), carries the LSTM
state from window to window as ``Model(state_names=...)`` does, and applies the optimizer
formulas written out here in NumPy, so it shares nothing with the compiled kernels. The
compiled loop must equal the step path element by element (relative 1e-10 in float64,
1e-5 in float32) and the reference in norm (relative error of each parameter).
Unshuffled batches, which the compiled loop reads in place, are covered in test_step.py."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.data.io import BPTTIter, NDArrayIter
from graphc.models import CHARLM_STATE_NAMES

BATCH, EPOCHS = 20, 2  # 200 samples: 10 batches per epoch, 20 steps
VOCAB, EMBED, HIDDEN, SEQ_LEN, STREAMS = 7, 5, 6, 4, 3
# Each stream holds 40 tokens and a last label: 10 windows of 4 per epoch.
TOKENS = np.random.default_rng(4).integers(0, VOCAB, size=STREAMS * (10 * SEQ_LEN + 1))

OPTIMIZERS = {
    "sgd-momentum": ("sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-3}),
    "adam": ("adam", {"learning_rate": 0.01, "wd": 1e-3}),
}
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
# LeNet in float32 drifts from the float64 reference more than 1e-5 whoever computes it:
# the same NumPy reference run in float32 differs from it by up to 1.9e-4 (SGD, fc2_weight)
# and 1.6e-4 (Adam), and the compiled loop by 9.3e-5 (SGD) and 1.1e-3 (Adam, fc1_weight).
# At lr 0.1 with momentum 0.9 on batches of 20, rounding grows over the 20 steps; Adam's
# step is about the learning rate whatever a gradient's size, so gradients near zero (conv1
# over the images' blank border) move by a sign that rounding decides. The compiled loop
# still equals the step path to 1e-5 there.
FLOAT32_REFERENCE = {("lenet", "sgd-momentum"): 3e-4, ("lenet", "adam"): 3e-3}


@pytest.fixture(scope="module")
def fashion():
    x, y, _, _ = gc.datasets.fashion_mnist(bundled=True)
    return x[: 10 * BATCH].copy(), y[: 10 * BATCH].copy()


def _symbol(model: str, dtype: str):
    if model == "mlp":
        return gc.models.mlp(hidden=(16,), dtype=dtype)
    if model == "lenet":
        return gc.models.lenet(dtype=dtype)
    return gc.models.charlm(VOCAB, EMBED, HIDDEN, stateful=True, dtype=dtype)


def _data(model: str, fashion, dtype: str):
    if model == "charlm":
        return BPTTIter(TOKENS, STREAMS, SEQ_LEN, layout="TN")
    x, y = fashion
    if model == "mlp":
        x = x.reshape(len(x), -1)
    return NDArrayIter(x.astype(dtype), y, batch_size=BATCH, shuffle=True, seed=7)


def _initial_params(symbol, data, dtype: str) -> dict[str, np.ndarray]:
    shapes = {desc.name: desc.shape for desc in data.provide_data}
    names = symbol.list_arguments()
    rng = np.random.default_rng(0)
    skip = {"data", "softmax_label", *CHARLM_STATE_NAMES}
    # Scaled by fan-in, so no tanh saturates: there float32's 1 - tanh^2 cancels and the
    # comparison would measure that, not the training loop.
    return {
        name: (
            rng.normal(size=shape) / np.sqrt(np.prod(shape[1:]) if len(shape) > 1 else 10)
        ).astype(dtype)
        for name, shape in zip(names, symbol.infer_shape(**shapes)[0], strict=True)
        if name not in skip
    }


def _fit(model: str, fashion, dtype: str, optimizer: str, compiled: bool):
    symbol = _symbol(model, dtype)
    data = _data(model, fashion, dtype)
    state_names = CHARLM_STATE_NAMES if model == "charlm" else None
    trained = gc.Model(symbol, state_names=state_names)
    params = _initial_params(symbol, data, dtype)
    trained.set_params(params)
    kind, settings = OPTIMIZERS[optimizer]
    trained.fit(
        data,
        eval_metric="perplexity" if model == "charlm" else "acc",
        optimizer=kind,
        optimizer_params=dict(settings),
        num_epoch=EPOCHS,
        batch_end_callback=None if compiled else (lambda param: None),
        verbose=False,
    )
    expected = "compiled" if compiled else "step by step"
    assert trained.fit_path.startswith(expected), trained.fit_path
    assert trained._optimizer.num_update == EPOCHS * 10
    return trained, params


def _reference(model: str, fashion, dtype: str, optimizer: str, params, rescale: float):
    """The parameters after the same 20 updates, computed in float64 with NumPy."""
    symbol = _symbol(model, "float64")
    names = list(params)
    gradients = gc.Group(gc.grad(symbol, names))
    params = {name: value.astype(np.float64) for name, value in params.items()}
    kind, settings = OPTIMIZERS[optimizer]
    lr, wd = settings["learning_rate"], settings["wd"]
    first = {name: np.zeros_like(value) for name, value in params.items()}
    second = {name: np.zeros_like(value) for name, value in params.items()}
    data = _data(model, fashion, dtype)
    step = 0
    for _ in range(EPOCHS):
        state = np.zeros((STREAMS, HIDDEN)), np.zeros((STREAMS, HIDDEN))
        for batch in data:
            inputs = {**params, "data": batch.data[0].astype(np.float64)}
            inputs["softmax_label"] = batch.label[0].astype(np.float64).reshape(-1)
            if model == "charlm":
                inputs["lstm_state"], inputs["lstm_state_cell"] = state
                outputs = gc.evaluate(symbol, inputs)
                state = outputs[1], outputs[2]
            step += 1
            for name, grad in zip(names, gc.evaluate(gradients, inputs), strict=True):
                weight = params[name]
                if kind == "sgd":  # MXNet's SGD: the momentum state holds the step
                    first[name] = settings["momentum"] * first[name] - lr * (
                        rescale * grad + wd * weight
                    )
                    params[name] = weight + first[name]
                else:  # MXNet's Adam: bias correction folded into the rate
                    g = rescale * grad + wd * weight
                    first[name] = 0.9 * first[name] + 0.1 * g
                    second[name] = 0.999 * second[name] + 0.001 * g * g
                    rate = lr * np.sqrt(1 - 0.999**step) / (1 - 0.9**step)
                    params[name] = weight - rate * first[name] / (np.sqrt(second[name]) + 1e-8)
        data.reset()
    return params


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("model", ["mlp", "lenet", "charlm"])
def test_twenty_compiled_steps_equal_the_step_path_and_a_numpy_reference(
    fashion, model, optimizer, dtype
):
    fast, initial = _fit(model, fashion, dtype, optimizer, compiled=True)
    slow, _ = _fit(model, fashion, dtype, optimizer, compiled=False)
    reference = _reference(model, fashion, dtype, optimizer, initial, fast._optimizer.rescale_grad)
    tolerance = TOLERANCE[dtype]
    against_reference = tolerance
    if dtype == "float32":
        against_reference = FLOAT32_REFERENCE.get((model, optimizer), tolerance)
    for name, expected in reference.items():
        got = fast.get_params()[0][name]
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, slow.get_params()[0][name], rtol=tolerance, err_msg=name)
        error = np.linalg.norm(got - expected) / np.linalg.norm(expected)
        assert error <= against_reference, f"{name}: relative error {error:.2e} (reference)"
