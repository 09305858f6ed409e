"""The optimizers' per-element updates as CUDA kernels, one per MXNet ``*_update`` op and
dtype, with the calling convention of the CPU's (``graphc.codegen_cpu.optimizer_updates``,
whose docstrings give the formulas)::

    update(weight, grad, *states, lr, wd, rescale_grad, clip_gradient, grad_scale, *hyper)

The arrays are flat device arrays; the scalars are floats, cast to the weight's dtype in the
kernel's prologue (``rescale_grad * grad_scale`` multiplied in float64 first) as the CPU's
kernels cast them, and each element is updated with the same operations in the same order.
``tests/test_cuda_optimizer.py`` holds every kernel here to the CPU's on the same inputs.
One thread per element, a grid-stride loop; nothing is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from graphc.backend.source_cache import load_kernel
from graphc.codegen_cuda.target import SIMULATED, TARGET, THREADS, blocks_for


@dataclass(frozen=True)
class UpdateRule:
    """One update's state arrays, hyper-parameters (cast to the dtype as ``<name>_``) and
    the statements that update element ``i``."""

    states: tuple[str, ...]
    hyper: tuple[str, ...]
    body: tuple[str, ...]


PLAIN = "g = clip(grad[i] * scale, bound)"
DECAYED = "g = clip(grad[i] * scale + wd_ * weight[i], bound)"
"""The two gradients the rules start from: weight decay left to the rule, or added before
clipping (Adam, RMSProp)."""

RULES = {
    "sgd_update": UpdateRule((), (), (PLAIN + " + wd_ * weight[i]", "weight[i] -= lr_ * g")),
    "sgd_mom_update": UpdateRule(
        ("mom",),
        ("momentum",),
        (
            PLAIN + " + wd_ * weight[i]",
            "mom[i] = momentum_ * mom[i] - lr_ * g",
            "weight[i] += mom[i]",
        ),
    ),
    "nag_mom_update": UpdateRule(
        ("mom",),
        ("momentum",),
        (
            PLAIN + " + wd_ * weight[i]",
            "step = lr_ * g",
            "mom[i] = momentum_ * mom[i] - step",
            "weight[i] += momentum_ * mom[i] - step",
        ),
    ),
    "adam_update": UpdateRule(
        ("mean", "var"),
        ("beta1", "beta2", "epsilon"),
        (
            DECAYED,
            "mean[i] = beta1_ * mean[i] + (one - beta1_) * g",
            "var[i] = beta2_ * var[i] + (one - beta2_) * g * g",
            "weight[i] -= lr_ * mean[i] / (math.sqrt(var[i]) + epsilon_)",
        ),
    ),
    "adagrad_update": UpdateRule(
        ("history",),
        ("eps",),
        (
            PLAIN,
            "history[i] += g * g",
            "weight[i] -= lr_ * (g / math.sqrt(history[i] + eps_) + wd_ * weight[i])",
        ),
    ),
    "adadelta_update": UpdateRule(
        ("acc_g", "acc_delta"),
        ("rho", "epsilon"),
        (
            PLAIN,
            "acc_g[i] = rho_ * acc_g[i] + (one - rho_) * g * g",
            "delta = math.sqrt(acc_delta[i] + epsilon_) / math.sqrt(acc_g[i] + epsilon_) * g",
            "acc_delta[i] = rho_ * acc_delta[i] + (one - rho_) * delta * delta",
            "weight[i] -= delta + wd_ * weight[i]",
        ),
    ),
    "rmsprop_update": UpdateRule(
        ("n",),
        ("gamma1", "epsilon"),
        (
            DECAYED,
            "n[i] = (one - gamma1_) * g * g + gamma1_ * n[i]",
            "weight[i] -= lr_ * g / math.sqrt(n[i] + epsilon_)",
        ),
    ),
    "rmspropalex_update": UpdateRule(
        ("n", "mean_g", "delta"),
        ("gamma1", "gamma2", "epsilon"),
        (
            DECAYED,
            "n[i] = (one - gamma1_) * g * g + gamma1_ * n[i]",
            "mean_g[i] = (one - gamma1_) * g + gamma1_ * mean_g[i]",
            "variance = n[i] - mean_g[i] * mean_g[i] + epsilon_",
            "delta[i] = gamma2_ * delta[i] - lr_ * g / math.sqrt(variance)",
            "weight[i] += delta[i]",
        ),
    ),
}

HEADER = """import math

from numba import cuda, {kind}


@cuda.jit(device=True, inline="always")
def clip(value, bound):
    # Comparisons rather than min/max so that a NaN gradient stays NaN, as in MXNet.
    if bound < 0:
        return value
    if value > bound:
        return bound
    if value < -bound:
        return -bound
    return value


"""


def render_update(name: str, dtype) -> str:
    """Source of the CUDA kernel of update ``name`` for ``dtype``."""
    rule = RULES[name]
    kind = np.dtype(dtype).name
    params = ["weight", "grad", *rule.states, "lr", "wd", "rescale_grad", "clip_gradient"]
    params += ["grad_scale", *rule.hyper]
    prologue = [
        f"lr_ = {kind}(lr)",
        f"wd_ = {kind}(wd)",
        f"scale = {kind}(rescale_grad * grad_scale)",
        f"bound = {kind}(clip_gradient)",
        f"one = {kind}(1.0)",
        *(f"{hyper}_ = {kind}({hyper})" for hyper in rule.hyper),
    ]
    lines = [
        HEADER.format(kind=kind) + "@cuda.jit(cache=True)",
        f"def kernel({', '.join(params)}):",
    ]
    lines += [f"    {line}" for line in prologue]
    lines.append("    for i in range(cuda.grid(1), weight.size, cuda.gridsize(1)):")
    lines += [f"        {line}" for line in rule.body]
    return "\n".join(lines) + "\n"


@cache
def _configured(name: str, dtype: np.dtype, blocks: int):
    """The kernel of ``name`` for ``dtype`` configured for ``blocks`` blocks: configured
    once per parameter size, not at every step (under the simulator, configuring sets the
    grid on the kernel itself: configure at each call there)."""
    kernel = load_kernel(render_update(name, dtype), "kernel", TARGET)
    return kernel if SIMULATED else kernel[blocks, THREADS]


def update_kernel(name: str):
    """The CUDA update ``name`` with the CPU kernel's calling convention; KeyError naming
    the updates there are when there is none."""
    if name not in RULES:
        raise KeyError(f"the CUDA backend has no optimizer update {name!r}; it has {sorted(RULES)}")

    def update(weight, grad, *rest) -> None:
        blocks = blocks_for(weight.size)
        kernel = _configured(name, np.dtype(weight.dtype), blocks)
        if SIMULATED:
            kernel = kernel[blocks, THREADS]
        kernel(weight, grad, *rest)

    update.__name__ = name
    return update
