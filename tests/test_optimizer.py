"""Optimizers against a plain-NumPy reference written here from MXNet's formulas, against
PyTorch where the two agree, and the contracts: checkpoints, errors, compiled kernels that
allocate nothing."""

from __future__ import annotations

import math
import tracemalloc

# graphc first: it points Numba's on-disk cache at graphc's, which Numba reads on import.
import graphc  # noqa: F401  # isort: skip
import numba
import numpy as np
import pytest
from numba.core.dispatcher import Dispatcher

from graphc.codegen_cpu.optimizer_updates import adam_update, global_norm_scale, sum_of_squares
from graphc.ir.errors import DTypeError, ShapeError
from graphc.training.lr_scheduler import FactorScheduler
from graphc.training.optimizer import (
    GRAD_SCALE_INDEX,
    SGD,
    AdaDelta,
    Adam,
    Optimizer,
    create,
)

SHAPES = {"conv_weight": (3, 5), "fc_bias": (7,), "embed": (2, 3, 4)}
STEPS = 10

# -- the reference: one function per optimizer, plain NumPy in float64 -----------------------


def clip(values, bound):
    return values if bound is None else np.clip(values, -bound, bound)


def reference_sgd(weight, grad, state, lr, t, p):
    grad = clip(grad, p.get("clip_gradient")) + p.get("wd", 0.0) * weight
    momentum = p.get("momentum", 0.0)
    if momentum == 0:
        return weight - lr * grad
    state["momentum"] = momentum * state["momentum"] - lr * grad
    if p.get("nesterov"):
        return weight + momentum * state["momentum"] - lr * grad
    return weight + state["momentum"]


def reference_adam(weight, grad, state, lr, t, p):
    beta1, beta2, epsilon = p.get("beta1", 0.9), p.get("beta2", 0.999), p.get("epsilon", 1e-8)
    grad = clip(grad + p.get("wd", 0.0) * weight, p.get("clip_gradient"))
    state["mean"] = beta1 * state["mean"] + (1 - beta1) * grad
    state["var"] = beta2 * state["var"] + (1 - beta2) * grad**2
    lr_t = lr * math.sqrt(1 - beta2**t) / (1 - beta1**t)
    return weight - lr_t * state["mean"] / (np.sqrt(state["var"]) + epsilon)


def reference_adagrad(weight, grad, state, lr, t, p):
    grad = clip(grad, p.get("clip_gradient"))
    state["history"] = state["history"] + grad**2
    adapted = grad / np.sqrt(state["history"] + p.get("eps", 1e-7))
    return weight - lr * (adapted + p.get("wd", 0.0) * weight)


def reference_adadelta(weight, grad, state, lr, t, p):
    rho, epsilon = p.get("rho", 0.9), p.get("epsilon", 1e-5)
    grad = clip(grad, p.get("clip_gradient"))
    state["acc_g"] = rho * state["acc_g"] + (1 - rho) * grad**2
    delta = np.sqrt(state["acc_delta"] + epsilon) / np.sqrt(state["acc_g"] + epsilon) * grad
    state["acc_delta"] = rho * state["acc_delta"] + (1 - rho) * delta**2
    return weight - (delta + p.get("wd", 0.0) * weight)


def reference_rmsprop(weight, grad, state, lr, t, p):
    gamma1, gamma2, epsilon = p.get("gamma1", 0.9), p.get("gamma2", 0.9), p.get("epsilon", 1e-8)
    grad = clip(grad + p.get("wd", 0.0) * weight, p.get("clip_gradient"))
    state["n"] = (1 - gamma1) * grad**2 + gamma1 * state["n"]
    if not p.get("centered"):
        return weight - lr * grad / np.sqrt(state["n"] + epsilon)
    state["mean_g"] = (1 - gamma1) * grad + gamma1 * state["mean_g"]
    variance = state["n"] - state["mean_g"] ** 2 + epsilon
    state["delta"] = gamma2 * state["delta"] - lr * grad / np.sqrt(variance)
    return weight + state["delta"]


REFERENCES = {
    "sgd": reference_sgd,
    "nag": reference_sgd,
    "adam": reference_adam,
    "adagrad": reference_adagrad,
    "adadelta": reference_adadelta,
    "rmsprop": reference_rmsprop,
}
STATE_NAMES = {
    "sgd": ("momentum",),
    "adam": ("mean", "var"),
    "adagrad": ("history",),
    "adadelta": ("acc_g", "acc_delta"),
    "rmsprop": ("n", "mean_g", "delta"),
}


def reference_schedule(n):
    """FactorScheduler(step=3, factor=0.5) from base 0.05, by hand: 0.05 * 0.5 ** ((n-1)//3)."""
    return 0.05 * 0.5 ** ((n - 1) // 3)


def reference_run(name, params, weights, grad_steps):
    """Run the reference over ``grad_steps`` in float64; the weights and states at the end."""
    weights = {key: value.astype(np.float64) for key, value in weights.items()}
    # Every state any optimizer keeps, zeros; each reference reads and writes its own.
    states = {
        key: {state: np.zeros_like(value) for states in STATE_NAMES.values() for state in states}
        for key, value in weights.items()
    }
    if name == "nag":
        params = {**params, "nesterov": True}
    rescale = params.get("rescale_grad", 1.0)
    for t, grads in enumerate(grad_steps, start=1):
        lr = reference_schedule(t) if "lr_scheduler" in params else params.get("learning_rate")
        factor = 1.0
        if params.get("clip_global_norm") is not None:
            norm = rescale * math.sqrt(
                sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values())
            )
            factor = min(1.0, params["clip_global_norm"] / norm)
        for key in weights:
            grad = grads[key].astype(np.float64) * rescale * factor
            weights[key] = REFERENCES[name](weights[key], grad, states[key], lr, t, params)
    return weights, states


# -- the cases --------------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": ("sgd", {"learning_rate": 0.05}),
    "sgd_momentum": ("sgd", {"learning_rate": 0.05, "momentum": 0.9}),
    "nag": ("nag", {"learning_rate": 0.05, "momentum": 0.9}),
    "adam": ("adam", {"learning_rate": 0.05}),
    "adagrad": ("adagrad", {"learning_rate": 0.05}),
    "adadelta": ("adadelta", {}),
    "rmsprop": ("rmsprop", {"learning_rate": 0.05}),
    "rmsprop_centered": ("rmsprop", {"learning_rate": 0.05, "centered": True}),
}
SETTINGS = {
    "plain": {},
    "wd_rescale_clip": {"wd": 0.01, "rescale_grad": 0.5, "clip_gradient": 0.3},
    "global_norm": {"rescale_grad": 0.5, "clip_global_norm": 0.5},
    "schedule": {"wd": 0.01, "lr_scheduler": "factor"},
}
CASES = [
    pytest.param(name, {**params, **setting}, id=f"{label}-{key}")
    for label, (name, params) in OPTIMIZERS.items()
    for key, setting in SETTINGS.items()
    if not (name == "adadelta" and key == "schedule")
]


def make_optimizer(name, params):
    params = dict(params)
    if params.get("lr_scheduler") == "factor":
        # No base_lr: the schedule starts from the optimizer's learning_rate, 0.05.
        params["lr_scheduler"] = FactorScheduler(step=3, factor=0.5)
    return create(name, **params)


def random_problem(dtype, seed=0):
    rng = np.random.default_rng(seed)
    weights = {key: rng.standard_normal(shape).astype(dtype) for key, shape in SHAPES.items()}
    grad_steps = [
        {key: rng.standard_normal(shape).astype(dtype) for key, shape in SHAPES.items()}
        for _ in range(STEPS)
    ]
    return weights, grad_steps


def run(optimizer, weights, grad_steps):
    weights = {key: value.copy() for key, value in weights.items()}
    states = {key: optimizer.create_state(key, value) for key, value in weights.items()}
    for grads in grad_steps:
        optimizer.update(weights, grads, states)
    return weights, states


def assert_close(actual, expected, tolerance):
    error = np.abs(actual.astype(np.float64) - expected)
    assert np.all(error <= tolerance * (1 + np.abs(expected))), float(error.max())


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-6), (np.float32, 1e-5)])
@pytest.mark.parametrize("name, params", CASES)
def test_matches_numpy_reference(name, params, dtype, tolerance):
    weights, grad_steps = random_problem(dtype)
    optimizer = make_optimizer(name, params)
    got_weights, got_states = run(optimizer, weights, grad_steps)
    want_weights, want_states = reference_run(name, params, weights, grad_steps)
    assert optimizer.num_update == STEPS
    for key in SHAPES:
        assert got_weights[key].dtype == dtype
        assert not np.allclose(got_weights[key], weights[key]), "the weights moved"
        assert_close(got_weights[key], want_weights[key], tolerance)
        for state_name, array in zip(optimizer.state_names, got_states[key]):
            assert_close(array, want_states[key][state_name], tolerance)


def test_clipping_bites_in_the_cases():
    """The clip settings of the table change the result, so the table tests them."""
    weights, grad_steps = random_problem(np.float64)
    plain, _ = run(create("sgd", learning_rate=0.05, rescale_grad=0.5), weights, grad_steps)
    for extra in ({"clip_gradient": 0.3}, {"clip_global_norm": 0.5}):
        clipped, _ = run(
            create("sgd", learning_rate=0.05, rescale_grad=0.5, **extra), weights, grad_steps
        )
        assert np.abs(clipped["embed"] - plain["embed"]).max() > 1e-3


def test_global_norm_clipping_scales_to_the_bound():
    """With lr 1 and nothing else, the step is minus the scaled gradients, whose global norm
    after rescale_grad is exactly the bound; gradients under the bound pass unchanged."""
    rng = np.random.default_rng(1)
    grads = {key: rng.standard_normal(shape) for key, shape in SHAPES.items()}
    norm = 0.5 * math.sqrt(sum(np.sum(g**2) for g in grads.values()))
    for bound, expected_norm in ((0.25 * norm, 0.25 * norm), (2 * norm, norm)):
        opt = SGD(learning_rate=1.0, rescale_grad=0.5, clip_global_norm=bound)
        weights = {key: np.zeros(shape) for key, shape in SHAPES.items()}
        opt.update(weights, grads, {key: () for key in SHAPES})
        step_norm = math.sqrt(sum(np.sum(w**2) for w in weights.values()))
        assert step_norm == pytest.approx(expected_norm, rel=1e-12)
    assert sum_of_squares(np.array([3.0, 4.0], dtype=np.float32)) == 25.0
    assert global_norm_scale(25.0, 2.0, 5.0) == 0.5
    assert global_norm_scale(25.0, 2.0, -1.0) == 1.0


def test_updates_only_the_parameters_with_state():
    """``states`` names the parameters: an executor's data argument is left alone."""
    opt = SGD(learning_rate=0.5)
    weights = {"w": np.ones(2), "data": np.ones(2)}
    grads = {"w": np.ones(2), "data": np.ones(2)}
    opt.update(weights, grads, {"w": opt.create_state("w", weights["w"])})
    assert weights["w"].tolist() == [0.5, 0.5]
    assert weights["data"].tolist() == [1.0, 1.0]


def test_float32_is_computed_in_float32():
    """As MXNet's kernels cast their scalars to the weight's type, the float32 kernel equals a
    float32 NumPy emulation bit for bit (and so differs from the float64 computation)."""
    rng = np.random.default_rng(8)
    weight, grad, mom = (rng.standard_normal(1000).astype(np.float32) for _ in range(3))
    f32 = np.float32
    opt = SGD(learning_rate=0.1, momentum=0.9, wd=0.01, rescale_grad=0.5, clip_gradient=0.3)
    scalars = opt.scalar_arguments(1, grad_scale=0.7)
    got_weight, got_mom = weight.copy(), mom.copy()
    opt.kernel(got_weight, grad, got_mom, *scalars)
    g = np.clip(grad * f32(0.5 * 0.7), -f32(0.3), f32(0.3)) + f32(0.01) * weight
    want_mom = f32(0.9) * mom - f32(0.1) * g
    np.testing.assert_array_equal(got_mom, want_mom)
    np.testing.assert_array_equal(got_weight, weight + want_mom)
    in_float64 = weight.astype(np.float64)
    opt.kernel(in_float64, grad.astype(np.float64), mom.astype(np.float64), *scalars)
    assert np.abs(in_float64 - got_weight).max() > 0


# -- PyTorch as a second oracle, where its conventions agree with MXNet's ----------------------


def torch_run(torch, make, weights, grad_steps):
    tensors = {key: torch.tensor(value, dtype=torch.float64) for key, value in weights.items()}
    optimizer = make(list(tensors.values()))
    for grads in grad_steps:
        for key, tensor in tensors.items():
            tensor.grad = torch.tensor(grads[key], dtype=torch.float64)
        optimizer.step()
    return {key: tensor.detach().numpy() for key, tensor in tensors.items()}


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_matches_torch(nesterov):
    """With a constant rate MXNet's momentum state is PyTorch's buffer times -lr, so the
    weights agree (PyTorch adds weight decay to the gradient first, as MXNet's SGD does)."""
    torch = pytest.importorskip("torch")
    weights, grad_steps = random_problem(np.float64, seed=2)
    ours, _ = run(
        SGD(learning_rate=0.05, momentum=0.9, nesterov=nesterov, wd=0.01), weights, grad_steps
    )
    theirs = torch_run(
        torch,
        lambda params: torch.optim.SGD(
            params, lr=0.05, momentum=0.9, dampening=0, nesterov=nesterov, weight_decay=0.01
        ),
        weights,
        grad_steps,
    )
    for key in SHAPES:
        assert_close(ours[key], theirs[key], 1e-10)


def test_adam_matches_torch():
    """Adam without weight decay. PyTorch scales epsilon by sqrt(1 - beta2**t) where MXNet
    does not; with epsilon 1e-8 the difference is far below the tolerance."""
    torch = pytest.importorskip("torch")
    weights, grad_steps = random_problem(np.float64, seed=3)
    ours, _ = run(Adam(learning_rate=0.01), weights, grad_steps)
    theirs = torch_run(
        torch,
        lambda params: torch.optim.Adam(params, lr=0.01, betas=(0.9, 0.999), eps=1e-8),
        weights,
        grad_steps,
    )
    for key in SHAPES:
        assert_close(ours[key], theirs[key], 1e-6)


# -- checkpoints ------------------------------------------------------------------------------


def test_state_round_trip_through_npz_gives_the_same_next_update(tmp_path):
    weights, grad_steps = random_problem(np.float32, seed=4)

    def make():
        schedule = FactorScheduler(step=2, factor=0.5)
        return Adam(learning_rate=0.05, wd=0.01, lr_scheduler=schedule)

    first = make()
    first_weights, first_states = run(first, weights, grad_steps[:5])
    np.savez(tmp_path / "optimizer.npz", **first.get_state(first_states))

    second = make()
    second_weights = {key: value.copy() for key, value in first_weights.items()}
    second_states = {key: second.create_state(key, value) for key, value in weights.items()}
    with np.load(tmp_path / "optimizer.npz", allow_pickle=False) as saved:
        second.set_state(saved, second_states)
    assert second.num_update == 5
    first.update(first_weights, grad_steps[5], first_states)
    second.update(second_weights, grad_steps[5], second_states)
    for key in SHAPES:
        np.testing.assert_array_equal(second_weights[key], first_weights[key])
        for mine, theirs in zip(second_states[key], first_states[key]):
            np.testing.assert_array_equal(mine, theirs)


def test_get_state_copies_and_names_its_arrays():
    opt = SGD(learning_rate=0.1, momentum=0.5)
    states = {"w": opt.create_state("w", np.zeros(3, dtype=np.float32))}
    saved = opt.get_state(states)
    assert sorted(saved) == ["num_update", "w:momentum"]
    assert saved["num_update"] == 0
    saved["w:momentum"][:] = 7
    assert states["w"][0].tolist() == [0.0, 0.0, 0.0]


def test_set_state_refuses_a_mismatch_and_changes_nothing():
    opt = Adam()
    states = {"w": opt.create_state("w", np.zeros(3))}
    good = {"num_update": 4, "w:mean": np.ones(3), "w:var": np.ones(3)}
    with pytest.raises(KeyError, match="'w:var'"):
        opt.set_state({"num_update": 4, "w:mean": np.ones(3)}, states)
    with pytest.raises(ShapeError, match=r"'w:mean'.*\(2,\)"):
        opt.set_state({**good, "w:mean": np.ones(2)}, states)
    assert opt.num_update == 0 and not states["w"][0].any()
    opt.set_state(good, states)
    assert opt.num_update == 4 and states["w"][1].tolist() == [1.0, 1.0, 1.0]


# -- errors -----------------------------------------------------------------------------------

BAD_PARAMETERS = [
    ("sgd", {"learning_rate": -0.1}, "SGD", "learning_rate", "-0.1"),
    ("sgd", {"momentum": 1.0}, "SGD", "momentum", "1.0"),
    ("nag", {"momentum": -0.5}, "SGD", "momentum", "-0.5"),
    ("sgd", {"wd": -1e-4}, "SGD", "wd", "-0.0001"),
    ("sgd", {"clip_gradient": 0}, "SGD", "clip_gradient", "0"),
    ("adam", {"clip_global_norm": -1.0}, "Adam", "clip_global_norm", "-1.0"),
    ("adam", {"beta1": 1.0}, "Adam", "beta1", "1.0"),
    ("adam", {"beta2": -0.1}, "Adam", "beta2", "-0.1"),
    ("adam", {"epsilon": 0.0}, "Adam", "epsilon", "0.0"),
    ("adam", {"learning_rate": float("nan")}, "Adam", "learning_rate", "nan"),
    ("adagrad", {"eps": -1e-7}, "AdaGrad", "eps", "-1e-07"),
    ("adadelta", {"rho": 1.5}, "AdaDelta", "rho", "1.5"),
    ("adadelta", {"epsilon": 0}, "AdaDelta", "epsilon", "0"),
    ("rmsprop", {"gamma1": 1.0}, "RMSProp", "gamma1", "1.0"),
    ("rmsprop", {"gamma2": 2.0, "centered": True}, "RMSProp", "gamma2", "2.0"),
    ("rmsprop", {"rescale_grad": 0.0}, "RMSProp", "rescale_grad", "0.0"),
]


@pytest.mark.parametrize("name, params, optimizer, parameter, value", BAD_PARAMETERS)
def test_bad_hyper_parameters_name_optimizer_parameter_and_value(
    name, params, optimizer, parameter, value
):
    with pytest.raises(ValueError) as error:
        create(name, **params)
    message = str(error.value)
    assert message.startswith(f"{optimizer}: {parameter} must be")
    assert message.endswith(f"got {value}")


def test_create_by_name_alias_and_instance():
    assert type(create("SGD")) is SGD
    nag = create("nag", momentum=0.9)
    assert nag.nesterov and nag.momentum == 0.9 and nag.state_names == ("momentum",)
    assert isinstance(create("RMSProp", centered=True), Optimizer)
    adam = Adam()
    assert create(adam) is adam
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamw'; known: sgd, nag, adam, "):
        create("adamw")
    with pytest.raises(ValueError, match=r"\['learning_rate'\] cannot apply"):
        create(adam, learning_rate=0.1)
    with pytest.raises(ValueError, match="nesterov=False"):
        create("nag", nesterov=False)


def test_adadelta_refuses_a_learning_rate_it_would_ignore():
    with pytest.raises(ValueError, match=r"AdaDelta: learning_rate=0.1 would be ignored"):
        create("adadelta", learning_rate=0.1)
    with pytest.raises(ValueError, match=r"AdaDelta: lr_scheduler=.* would be ignored"):
        AdaDelta(lr_scheduler=FactorScheduler(step=2))
    assert AdaDelta().learning_rate is None


def test_update_checks_every_array_before_changing_any():
    opt = SGD(learning_rate=0.1, momentum=0.9)
    weights = {"a": np.ones(3), "b": np.ones((2, 2))}
    states = {key: opt.create_state(key, value) for key, value in weights.items()}
    bad_grads = [
        ({"a": np.ones(3), "b": np.ones(4)}, ShapeError, r"grad of 'b' has shape \(4,\)"),
        ({"a": np.ones(3), "b": np.ones((2, 2), np.float32)}, DTypeError, "grad of 'b' is float32"),
        ({"a": np.ones(3)}, KeyError, "'b' has a state but is not in grads"),
        ({"a": np.ones(3), "b": np.ones((2, 4))[:, ::2]}, ValueError, "C-contiguous"),
        ({"a": np.ones(3, int), "b": np.ones((2, 2))}, DTypeError, "float32 or float64"),
    ]
    for grads, error, message in bad_grads:
        with pytest.raises(error, match=message):
            opt.update(weights, grads, states)
    assert opt.num_update == 0
    assert weights["a"].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=r"'a' has 0 state arrays; .* keeps 1 \('momentum',\)"):
        opt.update(weights, {"a": np.ones(3)}, {"a": ()})


def test_learning_rate_and_schedule_base():
    schedule = FactorScheduler(step=1, factor=0.5)
    opt = SGD(learning_rate=0.5, lr_scheduler=schedule)
    assert schedule.base_lr == 0.5, "the optimizer's rate becomes the schedule's base"
    weights, grads = {"w": np.zeros(1)}, {"w": np.ones(1)}
    for _ in range(3):
        opt.update(weights, grads, {"w": ()})
    assert weights["w"][0] == -(0.5 + 0.25 + 0.125)
    assert opt.learning_rate == 0.125
    with pytest.raises(ValueError, match="lr_scheduler"):
        opt.set_learning_rate(0.1)
    given = FactorScheduler(step=1, factor=0.5, base_lr=2.0)
    SGD(learning_rate=0.5, lr_scheduler=given)
    assert given.base_lr == 2.0, "a base the user gave is kept"
    plain = SGD(learning_rate=0.5)
    plain.set_learning_rate(0.25)
    assert plain.scalar_arguments(1)[0] == 0.25


def test_adam_bias_correction_needs_a_count():
    opt = Adam(learning_rate=0.1, beta1=0.5, beta2=0.75)
    assert opt.scalar_arguments(2)[0] == pytest.approx(0.1 * math.sqrt(1 - 0.75**2) / 0.75)
    with pytest.raises(ValueError, match="num_update >= 1, got 0"):
        opt.scalar_arguments(0)


# -- the compiled-kernel contract ---------------------------------------------------------------


@pytest.mark.parametrize("name, params", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_kernel_called_with_scalar_arguments_is_one_update(name, params):
    """``kernel(flat arrays..., *scalar_arguments(n, grad_scale))`` is exactly what
    ``update`` does; every kernel is a Numba dispatcher."""
    weights, grad_steps = random_problem(np.float32, seed=5)
    by_update = make_optimizer(name, {**params, "wd": 0.01, "clip_gradient": 0.5})
    by_kernel = make_optimizer(name, {**params, "wd": 0.01, "clip_gradient": 0.5})
    assert isinstance(by_kernel.kernel, Dispatcher)
    updated, _ = run(by_update, weights, grad_steps[:2])
    called = {key: value.copy() for key, value in weights.items()}
    states = {key: by_kernel.create_state(key, value) for key, value in called.items()}
    for n, grads in enumerate(grad_steps[:2], start=1):
        scalars = by_kernel.scalar_arguments(n, 1.0)
        assert all(type(value) is float for value in scalars)
        assert scalars[GRAD_SCALE_INDEX] == 1.0 and scalars[3] == 0.5
        for key in SHAPES:
            flat_states = [array.reshape(-1) for array in states[key]]
            by_kernel.kernel(
                called[key].reshape(-1), grads[key].reshape(-1), *flat_states, *scalars
            )
    for key in SHAPES:
        np.testing.assert_array_equal(called[key], updated[key])


@numba.njit
def _adam_step_in_numba(weights, grads, means, variances, scalars, max_norm):
    """What a generated step function does: the global norm, its factor, then one kernel per
    parameter, all inside Numba."""
    lr, wd, rescale, clip_gradient, _, beta1, beta2, epsilon = scalars
    total = 0.0
    for index in range(len(grads)):
        total += sum_of_squares(grads[index])
    scale = global_norm_scale(total, rescale, max_norm)
    for index in range(len(weights)):
        adam_update(
            weights[index],
            grads[index],
            means[index],
            variances[index],
            lr,
            wd,
            rescale,
            clip_gradient,
            scale,
            beta1,
            beta2,
            epsilon,
        )


def test_kernels_compose_inside_numba():
    weights, grad_steps = random_problem(np.float64, seed=6)
    opt = Adam(learning_rate=0.05, clip_global_norm=0.5)
    expected, _ = run(opt, weights, grad_steps[:1])
    flat = tuple(weights[key].copy().reshape(-1) for key in SHAPES)
    grads = tuple(grad_steps[0][key].reshape(-1) for key in SHAPES)
    means = tuple(np.zeros_like(array) for array in flat)
    variances = tuple(np.zeros_like(array) for array in flat)
    _adam_step_in_numba(flat, grads, means, variances, opt.scalar_arguments(1), 0.5)
    for key, array in zip(SHAPES, flat):
        np.testing.assert_allclose(array.reshape(SHAPES[key]), expected[key], rtol=1e-14)


@pytest.mark.parametrize(
    "name, params",
    [("adam", {"clip_global_norm": 1.0}), ("rmsprop", {"centered": True, "clip_gradient": 0.1})],
)
def test_a_warm_update_allocates_nothing_large(name, params):
    """A warmed update of two 1e6-element parameters: Python's peak allocation stays under
    1 MB (a NumPy temporary would be 4 MB), and Numba allocates only the one wrapper per
    array argument it makes to take a NumPy array from Python."""
    from numba.core.runtime import rtsys

    opt = create(name, **params)
    rng = np.random.default_rng(7)
    weights = {key: rng.standard_normal(1_000_000).astype(np.float32) for key in ("a", "b")}
    grads = {key: rng.standard_normal(1_000_000).astype(np.float32) for key in ("a", "b")}
    states = {key: opt.create_state(key, value) for key, value in weights.items()}
    opt.update(weights, grads, states)
    before = weights["a"].copy()
    tracemalloc.start()
    numba_before = rtsys.get_allocation_stats().alloc
    opt.update(weights, grads, states)
    numba_allocations = rtsys.get_allocation_stats().alloc - numba_before
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    arrays_passed = sum(2 + len(state) for state in states.values())
    if opt.clip_global_norm is not None:
        arrays_passed += len(grads)
    assert peak < 1_000_000, peak
    assert numba_allocations == arrays_passed
    assert not np.array_equal(weights["a"], before)
