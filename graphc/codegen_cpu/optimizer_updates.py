"""The optimizers' per-element updates as fused Numba kernels (MXNet's ``*_update`` ops).

Each kernel does, in one loop over the flat arrays of one parameter, everything MXNet's
fused update op does: rescale, clip, weight decay, the state update and the weight update.
It allocates nothing, so a generated step function can call it from inside Numba.

Calling convention, the same for every kernel::

    kernel(weight, grad, *states, lr, wd, rescale_grad, clip_gradient, grad_scale, *hyper)

- ``weight``, ``grad`` and each state are 1-D C-contiguous arrays of one float dtype and one
  size (``array.reshape(-1)`` in Python, ``array.ravel()`` in Numba: both are views of a
  C-contiguous array). ``weight`` and the states are updated in place.
- The scalars are floats. Everything that may change while training is one of them, never a
  compile-time constant: ``lr`` (under a schedule; Adam's already bias-corrected ``lr_t``),
  ``grad_scale`` (the global-norm clipping factor, 1.0 when off). ``clip_gradient < 0``
  means no clipping, so one signature serves both. ``hyper`` are the optimizer's own
  hyper-parameters in the order its signature lists them.
- The kernel casts every scalar to the array dtype first and computes in that precision, as
  MXNet's kernels (``static_cast<DType>``) and PyTorch's do.

The gradient every kernel starts from is ``g = grad * rescale_grad * grad_scale``; ``clip(x)``
below is ``min(max(x, -clip_gradient), clip_gradient)`` when ``clip_gradient >= 0`` and
``x`` otherwise (NaN stays NaN, as in MXNet's ``clip::Map``).

Global-norm clipping needs the norm of all gradients before any update: add
``sum_of_squares(grad)`` over the parameters, turn the total into the factor with
``global_norm_scale`` and pass it as every kernel's ``grad_scale``.
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = {"cache": True, "error_model": "numpy"}


@numba.njit(**_JIT)
def _clip(value, bound):
    # Comparisons rather than min/max so that a NaN gradient stays NaN, as in MXNet.
    if bound < 0:
        return value
    if value > bound:
        return bound
    if value < -bound:
        return -bound
    return value


# The prologue every kernel shares, inlined into each (Numba IR inlining, so the arithmetic
# and its order are exactly those of the code written out in the kernel).


@numba.njit(inline="always", **_JIT)
def _common_scalars(weight, lr, wd, rescale_grad, clip_gradient, grad_scale):
    """``(lr, wd, scale, bound)`` in the weight's dtype, ``scale = rescale_grad * grad_scale``
    multiplied in float64 first."""
    cast = weight.dtype.type
    return cast(lr), cast(wd), cast(rescale_grad * grad_scale), cast(clip_gradient)


@numba.njit(inline="always", **_JIT)
def _gradient(grad, i, scale, bound):
    """``clip(g)`` at element ``i``, weight decay left to the kernel (SGD, AdaGrad, AdaDelta)."""
    return _clip(grad[i] * scale, bound)


@numba.njit(inline="always", **_JIT)
def _decayed_gradient(grad, weight, i, wd, scale, bound):
    """``clip(g + wd * weight)`` at element ``i``: weight decay before clipping (Adam,
    RMSProp)."""
    return _clip(grad[i] * scale + wd * weight[i], bound)


@numba.njit(**_JIT)
def sum_of_squares(grad):
    """The sum of ``grad[i] ** 2`` over a flat gradient, accumulated in float64."""
    total = 0.0
    for i in range(grad.size):
        value = np.float64(grad[i])
        total += value * value
    return total


@numba.njit(**_JIT)
def global_norm_scale(total_sum_of_squares, rescale_grad, max_norm):
    """The factor that brings the global L2 norm of the rescaled gradients down to
    ``max_norm``: ``max_norm / norm`` when ``norm = rescale_grad * sqrt(total) > max_norm``,
    else 1.0 (also when ``max_norm < 0``, which means no global-norm clipping). A NaN norm
    gives 1.0, so that NaN gradients reach the weights rather than being hidden."""
    if max_norm < 0:
        return 1.0
    norm = abs(rescale_grad) * np.sqrt(total_sum_of_squares)
    if norm > max_norm:
        return max_norm / norm
    return 1.0


@numba.njit(**_JIT)
def sgd_update(weight, grad, lr, wd, rescale_grad, clip_gradient, grad_scale):
    """``weight -= lr * (clip(g) + wd * weight)`` (MXNet's ``sgd_update``)."""
    lr_, wd_, scale, bound = _common_scalars(
        weight, lr, wd, rescale_grad, clip_gradient, grad_scale
    )
    for i in range(weight.size):
        g = _gradient(grad, i, scale, bound) + wd_ * weight[i]
        weight[i] -= lr_ * g


@numba.njit(**_JIT)
def sgd_mom_update(weight, grad, mom, lr, wd, rescale_grad, clip_gradient, grad_scale, momentum):
    """MXNet's ``sgd_mom_update``: the state holds the step, learning rate included::

    g = clip(g) + wd * weight
    mom = momentum * mom - lr * g
    weight += mom
    """
    lr_, wd_, scale, bound = _common_scalars(
        weight, lr, wd, rescale_grad, clip_gradient, grad_scale
    )
    momentum_ = weight.dtype.type(momentum)
    for i in range(weight.size):
        g = _gradient(grad, i, scale, bound) + wd_ * weight[i]
        mom[i] = momentum_ * mom[i] - lr_ * g
        weight[i] += mom[i]


@numba.njit(**_JIT)
def nag_mom_update(weight, grad, mom, lr, wd, rescale_grad, clip_gradient, grad_scale, momentum):
    """Nesterov momentum as MXNet's ``NAG`` writes it, with the state of ``sgd_mom_update``::

    g = clip(g) + wd * weight
    mom = momentum * mom - lr * g
    weight += momentum * mom - lr * g
    """
    lr_, wd_, scale, bound = _common_scalars(
        weight, lr, wd, rescale_grad, clip_gradient, grad_scale
    )
    momentum_ = weight.dtype.type(momentum)
    for i in range(weight.size):
        g = _gradient(grad, i, scale, bound) + wd_ * weight[i]
        step = lr_ * g
        mom[i] = momentum_ * mom[i] - step
        weight[i] += momentum_ * mom[i] - step


@numba.njit(**_JIT)
def adam_update(
    weight, grad, mean, var, lr, wd, rescale_grad, clip_gradient, grad_scale, beta1, beta2, epsilon
):
    """MXNet's ``adam_update``; ``lr`` is the bias-corrected ``lr * sqrt(1 - beta2**t) /
    (1 - beta1**t)``::

    g = clip(g + wd * weight)
    mean = beta1 * mean + (1 - beta1) * g
    var = beta2 * var + (1 - beta2) * g * g
    weight -= lr * mean / (sqrt(var) + epsilon)
    """
    lr_, wd_, scale, bound = _common_scalars(
        weight, lr, wd, rescale_grad, clip_gradient, grad_scale
    )
    cast = weight.dtype.type
    beta1_, beta2_, epsilon_, one = cast(beta1), cast(beta2), cast(epsilon), cast(1.0)
    for i in range(weight.size):
        g = _decayed_gradient(grad, weight, i, wd_, scale, bound)
        mean[i] = beta1_ * mean[i] + (one - beta1_) * g
        var[i] = beta2_ * var[i] + (one - beta2_) * g * g
        weight[i] -= lr_ * mean[i] / (np.sqrt(var[i]) + epsilon_)


@numba.njit(**_JIT)
def adagrad_update(weight, grad, history, lr, wd, rescale_grad, clip_gradient, grad_scale, eps):
    """MXNet's ``AdaGrad`` (weight decay outside the adaptive scaling)::

    g = clip(g)
    history += g * g
    weight -= lr * (g / sqrt(history + eps) + wd * weight)
    """
    lr_, wd_, scale, bound = _common_scalars(
        weight, lr, wd, rescale_grad, clip_gradient, grad_scale
    )
    eps_ = weight.dtype.type(eps)
    for i in range(weight.size):
        g = _gradient(grad, i, scale, bound)
        history[i] += g * g
        weight[i] -= lr_ * (g / np.sqrt(history[i] + eps_) + wd_ * weight[i])


@numba.njit(**_JIT)
def adadelta_update(
    weight, grad, acc_g, acc_delta, lr, wd, rescale_grad, clip_gradient, grad_scale, rho, epsilon
):
    """MXNet's ``AdaDelta``, which has no learning rate (``lr`` is accepted, for the common
    signature, and not read)::

    g = clip(g)
    acc_g = rho * acc_g + (1 - rho) * g * g
    delta = sqrt(acc_delta + epsilon) / sqrt(acc_g + epsilon) * g
    acc_delta = rho * acc_delta + (1 - rho) * delta * delta
    weight -= delta + wd * weight
    """
    _, wd_, scale, bound = _common_scalars(weight, lr, wd, rescale_grad, clip_gradient, grad_scale)
    cast = weight.dtype.type
    rho_, epsilon_, one = cast(rho), cast(epsilon), cast(1.0)
    for i in range(weight.size):
        g = _gradient(grad, i, scale, bound)
        acc_g[i] = rho_ * acc_g[i] + (one - rho_) * g * g
        delta = np.sqrt(acc_delta[i] + epsilon_) / np.sqrt(acc_g[i] + epsilon_) * g
        acc_delta[i] = rho_ * acc_delta[i] + (one - rho_) * delta * delta
        weight[i] -= delta + wd_ * weight[i]


@numba.njit(**_JIT)
def rmsprop_update(
    weight, grad, n, lr, wd, rescale_grad, clip_gradient, grad_scale, gamma1, epsilon
):
    """MXNet's ``rmsprop_update`` (Tieleman and Hinton)::

    g = clip(g + wd * weight)
    n = (1 - gamma1) * g * g + gamma1 * n
    weight -= lr * g / sqrt(n + epsilon)
    """
    lr_, wd_, scale, bound = _common_scalars(
        weight, lr, wd, rescale_grad, clip_gradient, grad_scale
    )
    cast = weight.dtype.type
    gamma1_, epsilon_, one = cast(gamma1), cast(epsilon), cast(1.0)
    for i in range(weight.size):
        g = _decayed_gradient(grad, weight, i, wd_, scale, bound)
        n[i] = (one - gamma1_) * g * g + gamma1_ * n[i]
        weight[i] -= lr_ * g / np.sqrt(n[i] + epsilon_)


@numba.njit(**_JIT)
def rmspropalex_update(
    weight,
    grad,
    n,
    mean_g,
    delta,
    lr,
    wd,
    rescale_grad,
    clip_gradient,
    grad_scale,
    gamma1,
    gamma2,
    epsilon,
):
    """MXNet's ``rmspropalex_update``, centered RMSProp (Graves 2013, eq. 38-45)::

    g = clip(g + wd * weight)
    n = (1 - gamma1) * g * g + gamma1 * n
    mean_g = (1 - gamma1) * g + gamma1 * mean_g
    delta = gamma2 * delta - lr * g / sqrt(n - mean_g * mean_g + epsilon)
    weight += delta
    """
    lr_, wd_, scale, bound = _common_scalars(
        weight, lr, wd, rescale_grad, clip_gradient, grad_scale
    )
    cast = weight.dtype.type
    gamma1_, gamma2_, epsilon_, one = cast(gamma1), cast(gamma2), cast(epsilon), cast(1.0)
    for i in range(weight.size):
        g = _decayed_gradient(grad, weight, i, wd_, scale, bound)
        n[i] = (one - gamma1_) * g * g + gamma1_ * n[i]
        mean_g[i] = (one - gamma1_) * g + gamma1_ * mean_g[i]
        variance = n[i] - mean_g[i] * mean_g[i] + epsilon_
        delta[i] = gamma2_ * delta[i] - lr_ * g / np.sqrt(variance)
        weight[i] += delta[i]


UPDATES = {
    kernel.__name__: kernel
    for kernel in (
        sgd_update,
        sgd_mom_update,
        nag_mom_update,
        adam_update,
        adagrad_update,
        adadelta_update,
        rmsprop_update,
        rmspropalex_update,
    )
}
"""Every update kernel by MXNet's name of its op (the CUDA backend has one of each)."""
