"""Optimizers (MXNet's ``mx.optimizer``): SGD with momentum or Nesterov momentum, Adam,
AdaGrad, AdaDelta and RMSProp, updating parameters in place through fused Numba kernels.

An optimizer holds hyper-parameters and the update count; the per-parameter state (momentum,
Adam's moments) is arrays the caller keeps, made by ``create_state``. ``update`` is what a
training step calls: it counts one update, takes the learning rate from the schedule, and
runs one kernel per parameter. The parameters it updates are the keys of ``states``, so an
executor's ``arg_dict`` (which also holds the data) and ``grad_dict`` can be passed whole.

>>> import numpy as np
>>> from graphc.training.optimizer import create
>>> opt = create("sgd", learning_rate=0.1, momentum=0.9)
>>> weights, grads = {"w": np.ones(3)}, {"w": np.full(3, 0.5)}
>>> states = {name: opt.create_state(name, weights[name]) for name in ["w"]}
>>> opt.update(weights, grads, states)
>>> weights["w"].tolist(), opt.num_update
([0.95, 0.95, 0.95], 1)

Calling the kernels from compiled code
--------------------------------------
Each optimizer exposes ``kernel``, a module-level ``numba.njit`` function of
``graphc.codegen_cpu.optimizer_updates``, and ``scalar_arguments(num_update, grad_scale)``, the
float scalars it takes after the arrays. One update of one parameter is::

    opt.kernel(weight.ravel(), grad.ravel(), *[s.ravel() for s in state],
               *opt.scalar_arguments(num_update, grad_scale))

with the scalars ``(lr, wd, rescale_grad, clip_gradient, grad_scale, *hyper_parameters)``.
They are computed in Python once per step (the schedule and Adam's bias correction live
there) and may be passed into a generated Numba step function, which calls the kernel with
them; nothing that changes during training is compiled in. ``clip_gradient`` is -1.0 when
off. With ``clip_global_norm`` set, ``grad_scale`` (position ``GRAD_SCALE_INDEX``) is
``global_norm_scale(total, rescale_grad, clip_global_norm)`` where ``total`` is the sum of
``sum_of_squares(grad)`` over all the parameters updated in that step; both are njit
functions. The docstrings of ``graphc.codegen_cpu.optimizer_updates`` give the formulas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from numbers import Real

import numpy as np

from graphc.backend.lowering import FLOAT_DTYPES
from graphc.backend.target import HOST_ARRAYS, ArrayOps, Target
from graphc.codegen_cpu.optimizer_updates import (
    adadelta_update,
    adagrad_update,
    adam_update,
    global_norm_scale,
    nag_mom_update,
    rmsprop_update,
    rmspropalex_update,
    sgd_mom_update,
    sgd_update,
    sum_of_squares,
)
from graphc.ir.errors import DTypeError, ShapeError
from graphc.runtime.arrays import asnumpy, assign

RESCALE_GRAD_INDEX = 2
GRAD_SCALE_INDEX = 4


class Optimizer:
    """What every optimizer takes and does; use a subclass or ``create``.

    Every subclass takes these parameters as keywords after its own (as MXNet's do), the
    learning rate with the subclass's default.

    Parameters
    ----------
    learning_rate : float
        The rate when no ``lr_scheduler`` is given, and the schedule's ``base_lr`` when the
        schedule was made without one.
    wd : float
        Weight decay (L2 regularization); where it enters is each optimizer's formula.
    rescale_grad : float
        Every gradient is multiplied by it first (often ``1 / batch_size``).
    clip_gradient : float or None
        Clip each rescaled gradient element to ``[-clip_gradient, clip_gradient]``.
    clip_global_norm : float or None
        Scale all the gradients of one ``update`` call by one factor so that their global L2
        norm, after ``rescale_grad``, is at most this; applied before ``clip_gradient``.
    lr_scheduler : callable or None
        ``lr_scheduler(num_update) -> lr``, e.g. a ``graphc.training.lr_scheduler`` schedule.
    """

    kernel: Callable
    state_names: tuple[str, ...] = ()

    def __init__(
        self,
        learning_rate: float | None,
        *,
        wd: float = 0.0,
        rescale_grad: float = 1.0,
        clip_gradient: float | None = None,
        clip_global_norm: float | None = None,
        lr_scheduler: Callable[[int], float] | None = None,
    ) -> None:
        if learning_rate is not None:
            learning_rate = self._check("learning_rate", learning_rate, minimum=0.0)
        self.lr = learning_rate
        self.wd = self._check("wd", wd, minimum=0.0)
        self.rescale_grad = self._positive("rescale_grad", rescale_grad)
        self.clip_gradient = self._optional_bound("clip_gradient", clip_gradient)
        self.clip_global_norm = self._optional_bound("clip_global_norm", clip_global_norm)
        if lr_scheduler is not None and not callable(lr_scheduler):
            raise ValueError(
                f"{self._name}: lr_scheduler must be callable as lr_scheduler(num_update), "
                f"got {lr_scheduler!r}"
            )
        if lr_scheduler is not None and hasattr(lr_scheduler, "set_default_base_lr"):
            lr_scheduler.set_default_base_lr(learning_rate)
        self.lr_scheduler = lr_scheduler
        self.num_update = 0

    # -- what the kernels are called with ------------------------------------------------------

    @property
    def hyper_parameters(self) -> tuple[float, ...]:
        """The optimizer's own scalars, in the order its kernel takes them after grad_scale."""
        return ()

    def learning_rate_at(self, num_update: int) -> float:
        """The learning rate of update number ``num_update`` (the first update is 1)."""
        if self.lr_scheduler is not None:
            return float(self.lr_scheduler(num_update))
        return self.lr

    @property
    def learning_rate(self) -> float | None:
        """The current learning rate (MXNet's ``Optimizer.learning_rate``)."""
        return self.learning_rate_at(self.num_update)

    def set_learning_rate(self, learning_rate: float) -> None:
        """Set the constant learning rate; an error when a schedule decides the rate."""
        if self.lr_scheduler is not None:
            raise ValueError(
                f"{self._name}: the learning rate comes from lr_scheduler; set_learning_rate "
                "only works without one"
            )
        self.lr = self._check("learning_rate", learning_rate, minimum=0.0)

    def scalar_arguments(self, num_update: int, grad_scale: float = 1.0) -> tuple[float, ...]:
        """The kernel's scalars for update ``num_update``: ``(lr, wd, rescale_grad,
        clip_gradient, grad_scale, *hyper_parameters)``, all floats, clip -1.0 when off.

        >>> SGD(learning_rate=0.5, momentum=0.9, clip_gradient=2).scalar_arguments(1)
        (0.5, 0.0, 1.0, 2.0, 1.0, 0.9)
        """
        return (
            float(self.learning_rate_at(num_update)),
            float(self.wd),
            float(self.rescale_grad),
            -1.0 if self.clip_gradient is None else float(self.clip_gradient),
            float(grad_scale),
            *self.hyper_parameters,
        )

    # -- state and update ----------------------------------------------------------------------

    def create_state(self, name: str, weight: np.ndarray) -> tuple[np.ndarray, ...]:
        """Zeros of ``weight``'s shape and dtype, one array per name in ``state_names``."""
        _check_float(self._name, name, "weight", weight)
        return tuple(np.zeros_like(weight, order="C") for _ in self.state_names)

    def update(
        self,
        weights: Mapping[str, np.ndarray],
        grads: Mapping[str, np.ndarray],
        states: Mapping[str, tuple[np.ndarray, ...]],
        target: Target | None = None,
    ) -> None:
        """One update of every parameter named in ``states``, in place.

        Counts the update first (so the first one is ``num_update == 1``, as in MXNet), then
        runs one fused kernel per parameter. Every array is checked before any is changed.
        ``target``: the backend whose arrays these are (an executor's ``target``: a GPU
        executor's are device arrays, updated by that backend's kernels); by default NumPy
        arrays, updated by the CPU's.
        """
        arrays_of = HOST_ARRAYS if target is None else target.arrays
        kernel = self.kernel
        if target is not None and target.update_kernel is not None:
            kernel = target.update_kernel(self.kernel.__name__)
        flat_arguments = [
            self._flat_arguments(name, weights, grads, state, arrays_of)
            for name, state in states.items()
        ]
        grad_scale = 1.0
        if self.clip_global_norm is not None:
            total = 0.0
            for arrays in flat_arguments:
                # On a device the gradients are summed on the host: a copy of each per step,
                # paid only with clip_global_norm.
                total += sum_of_squares(np.asarray(arrays_of.to_host(arrays[1])))
            grad_scale = global_norm_scale(
                total, float(self.rescale_grad), float(self.clip_global_norm)
            )
        self.num_update += 1
        scalars = self.scalar_arguments(self.num_update, grad_scale)
        for arrays in flat_arguments:
            kernel(*arrays, *scalars)

    def _flat_arguments(
        self, name, weights, grads, state, arrays_of: ArrayOps = HOST_ARRAYS
    ) -> tuple[np.ndarray, ...]:
        if name not in weights or name not in grads:
            table = "weights" if name not in weights else "grads"
            raise KeyError(f"{self._name}.update: {name!r} has a state but is not in {table}")
        weight = weights[name]
        _check_float(self._name, name, "weight", weight, arrays_of)
        if len(state) != len(self.state_names):
            raise ValueError(
                f"{self._name}.update: {name!r} has {len(state)} state arrays; this optimizer "
                f"keeps {len(self.state_names)} {self.state_names}"
            )
        arrays = [weight, grads[name], *state]
        labels = ["weight", "grad", *self.state_names]
        for label, array in zip(labels[1:], arrays[1:]):
            _check_like(self._name, name, label, array, weight, arrays_of)
        return tuple(array.reshape(-1) for array in arrays)

    # -- checkpoints ---------------------------------------------------------------------------

    def get_state(self, states: Mapping[str, tuple] | None = None) -> dict:
        """The optimizer's part of a checkpoint: ``num_update`` and a copy of every state
        array, keyed ``"<parameter>:<state name>"`` (a flat dict ``np.savez`` stores without
        pickle).

        >>> opt = Adam()
        >>> sorted(opt.get_state({"w": opt.create_state("w", np.zeros(2))}))
        ['num_update', 'w:mean', 'w:var']
        """
        saved: dict = {"num_update": self.num_update}
        for name, state in (states or {}).items():
            for state_name, array in zip(self.state_names, state):
                saved[f"{name}:{state_name}"] = np.array(asnumpy(array), copy=True)
        return saved

    def set_state(self, saved: Mapping, states: Mapping[str, tuple] | None = None) -> None:
        """Restore ``get_state``'s dict (or the ``np.load`` of its ``.npz``): set
        ``num_update`` and copy the saved arrays into ``states`` in place, so that arrays
        already bound elsewhere see them. Nothing changes unless everything matches."""
        if "num_update" not in saved:
            raise KeyError(f"{self._name}.set_state: the saved state has no 'num_update'")
        num_update = int(np.asarray(saved["num_update"]))
        if num_update < 0:
            raise ValueError(f"{self._name}.set_state: num_update is {num_update}, must be >= 0")
        copies = []
        for name, state in (states or {}).items():
            for state_name, array in zip(self.state_names, state):
                key = f"{name}:{state_name}"
                if key not in saved:
                    raise KeyError(
                        f"{self._name}.set_state: no {key!r} in the saved state; it holds "
                        f"{sorted(saved)}"
                    )
                value = np.asarray(saved[key])
                if value.shape != array.shape:
                    raise ShapeError(
                        f"{self._name}.set_state: {key!r} is saved with shape {value.shape}, "
                        f"the state array has {array.shape}"
                    )
                copies.append((array, value))
        for array, value in copies:
            assign(array, value)
        self.num_update = num_update

    # -- validation ----------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        return type(self).__name__

    def _check(
        self,
        parameter: str,
        value,
        minimum: float,
        maximum: float = math.inf,
        open_low: bool = False,
        open_high: bool = True,
    ) -> float:
        """``value`` as a float, or a ValueError naming the optimizer, parameter and value."""
        valid = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
        if valid:
            above = value > minimum if open_low else value >= minimum
            below = value < maximum if open_high else value <= maximum
            valid = above and below
        if not valid:
            low = "(" if open_low else "["
            high = ")" if open_high or maximum == math.inf else "]"
            raise ValueError(
                f"{self._name}: {parameter} must be a finite number in "
                f"{low}{minimum:g}, {maximum:g}{high}, got {value!r}"
            )
        return float(value)

    def _positive(self, parameter: str, value) -> float:
        return self._check(parameter, value, minimum=0.0, open_low=True)

    def _optional_bound(self, parameter: str, value) -> float | None:
        return None if value is None else self._positive(parameter, value)

    def _unit_interval(self, parameter: str, value) -> float:
        return self._check(parameter, value, minimum=0.0, maximum=1.0)


def _check_float(
    optimizer: str, name: str, label: str, array, arrays_of: ArrayOps = HOST_ARRAYS
) -> None:
    known = isinstance(array, np.ndarray) or arrays_of.owns(array)
    if not known or array.dtype not in FLOAT_DTYPES:
        found = array.dtype if known else type(array).__name__
        kind = "NumPy array" if arrays_of is HOST_ARRAYS else "array of the executor's device"
        raise DTypeError(
            f"{optimizer}: {label} of {name!r} must be a float32 or float64 {kind}, not {found}"
        )
    if isinstance(array, np.ndarray) and not array.flags.c_contiguous:
        raise ValueError(
            f"{optimizer}: {label} of {name!r} must be C-contiguous (it is updated in place "
            "through a flat view)"
        )


def _check_like(
    optimizer: str, name: str, label: str, array, weight, arrays_of: ArrayOps = HOST_ARRAYS
) -> None:
    _check_float(optimizer, name, label, array, arrays_of)
    if array.shape != weight.shape:
        raise ShapeError(
            f"{optimizer}.update: {label} of {name!r} has shape {array.shape}, the weight "
            f"has {weight.shape}"
        )
    if array.dtype != weight.dtype:
        raise DTypeError(
            f"{optimizer}.update: {label} of {name!r} is {array.dtype}, the weight is "
            f"{weight.dtype}"
        )


class SGD(Optimizer):
    """Stochastic gradient descent with momentum or Nesterov momentum (MXNet's ``SGD`` and
    ``NAG``). With ``g = clip(rescale_grad * grad)``::

        momentum == 0:   weight -= lr * (g + wd * weight)
        momentum > 0:    mom = momentum * mom - lr * (g + wd * weight)
                         weight += mom                                    (nesterov=False)
                         weight += momentum * mom - lr * (g + wd * weight) (nesterov=True)

    The ``'momentum'`` state holds the step with the learning rate in it, as MXNet keeps it;
    with a constant rate this is PyTorch's ``SGD(momentum, dampening=0)`` buffer times
    ``-lr``.

    >>> SGD(learning_rate=0.1, momentum=0.9).state_names
    ('momentum',)
    """

    def __init__(
        self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False, **common
    ) -> None:
        super().__init__(learning_rate, **common)
        self.momentum = self._unit_interval("momentum", momentum)
        self.nesterov = bool(nesterov)

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("momentum",) if self.momentum > 0 else ()

    @property
    def kernel(self) -> Callable:
        if self.momentum == 0:
            return sgd_update
        return nag_mom_update if self.nesterov else sgd_mom_update

    @property
    def hyper_parameters(self) -> tuple[float, ...]:
        return (self.momentum,) if self.momentum > 0 else ()


class Adam(Optimizer):
    """Adam (Kingma and Ba), in MXNet's form: the bias correction folded into the step size,
    ``lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)`` with ``t = num_update``, and weight
    decay added before clipping::

        g = clip(rescale_grad * grad + wd * weight)
        mean = beta1 * mean + (1 - beta1) * g
        var = beta2 * var + (1 - beta2) * g * g
        weight -= lr_t * mean / (sqrt(var) + epsilon)

    >>> Adam(learning_rate=0.1, beta1=0.5, beta2=0.75).scalar_arguments(1)[0]
    0.1
    """

    kernel = staticmethod(adam_update)
    state_names = ("mean", "var")

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        **common,
    ) -> None:
        super().__init__(learning_rate, **common)
        self.beta1 = self._unit_interval("beta1", beta1)
        self.beta2 = self._unit_interval("beta2", beta2)
        self.epsilon = self._positive("epsilon", epsilon)

    def learning_rate_at(self, num_update: int) -> float:
        """The bias-corrected step size ``lr_t`` of update ``num_update`` (from 1)."""
        if num_update < 1:
            raise ValueError(f"Adam: the bias correction needs num_update >= 1, got {num_update}")
        lr = super().learning_rate_at(num_update)
        return lr * math.sqrt(1.0 - self.beta2**num_update) / (1.0 - self.beta1**num_update)

    @property
    def hyper_parameters(self) -> tuple[float, ...]:
        return (self.beta1, self.beta2, self.epsilon)


class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al.), as MXNet's: weight decay outside the adaptive scaling::

    g = clip(rescale_grad * grad)
    history += g * g
    weight -= lr * (g / sqrt(history + eps) + wd * weight)
    """

    kernel = staticmethod(adagrad_update)
    state_names = ("history",)

    def __init__(self, learning_rate: float = 0.01, eps: float = 1e-7, **common) -> None:
        super().__init__(learning_rate, **common)
        self.eps = self._positive("eps", eps)

    @property
    def hyper_parameters(self) -> tuple[float, ...]:
        return (self.eps,)


class AdaDelta(Optimizer):
    """AdaDelta (Zeiler), as MXNet's, which has no learning rate::

        g = clip(rescale_grad * grad)
        acc_g = rho * acc_g + (1 - rho) * g * g
        delta = sqrt(acc_delta + epsilon) / sqrt(acc_g + epsilon) * g
        acc_delta = rho * acc_delta + (1 - rho) * delta * delta
        weight -= delta + wd * weight

    Giving ``learning_rate`` or ``lr_scheduler`` is an error rather than silently ignored.
    """

    kernel = staticmethod(adadelta_update)
    state_names = ("acc_g", "acc_delta")

    def __init__(
        self, rho: float = 0.9, epsilon: float = 1e-5, learning_rate: None = None, **common
    ) -> None:
        given = (("learning_rate", learning_rate), ("lr_scheduler", common.get("lr_scheduler")))
        for parameter, value in given:
            if value is not None:
                raise ValueError(
                    f"AdaDelta: {parameter}={value!r} would be ignored, AdaDelta has no "
                    "learning rate (weight -= delta + wd * weight); leave it out"
                )
        super().__init__(None, **common)
        self.rho = self._unit_interval("rho", rho)
        self.epsilon = self._positive("epsilon", epsilon)

    def learning_rate_at(self, num_update: int) -> float:
        """0.0: the kernel's ``lr`` slot, which AdaDelta does not read."""
        return 0.0

    @property
    def learning_rate(self) -> None:
        return None

    @property
    def hyper_parameters(self) -> tuple[float, ...]:
        return (self.rho, self.epsilon)


class RMSProp(Optimizer):
    """RMSProp, as MXNet's: Tieleman and Hinton's, or Graves's ``centered`` one, with weight
    decay added before clipping. With ``g = clip(rescale_grad * grad + wd * weight)``::

        centered=False:  n = (1 - gamma1) * g * g + gamma1 * n
                         weight -= lr * g / sqrt(n + epsilon)
        centered=True:   n = (1 - gamma1) * g * g + gamma1 * n
                         mean_g = (1 - gamma1) * g + gamma1 * mean_g
                         delta = gamma2 * delta - lr * g / sqrt(n - mean_g**2 + epsilon)
                         weight += delta

    ``gamma2`` is used only when ``centered``.
    """

    def __init__(
        self,
        learning_rate: float = 0.001,
        gamma1: float = 0.9,
        gamma2: float = 0.9,
        epsilon: float = 1e-8,
        centered: bool = False,
        **common,
    ) -> None:
        super().__init__(learning_rate, **common)
        self.gamma1 = self._unit_interval("gamma1", gamma1)
        self.gamma2 = self._unit_interval("gamma2", gamma2)
        self.epsilon = self._positive("epsilon", epsilon)
        self.centered = bool(centered)

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("n", "mean_g", "delta") if self.centered else ("n",)

    @property
    def kernel(self) -> Callable:
        return rmspropalex_update if self.centered else rmsprop_update

    @property
    def hyper_parameters(self) -> tuple[float, ...]:
        if self.centered:
            return (self.gamma1, self.gamma2, self.epsilon)
        return (self.gamma1, self.epsilon)


def _nag(**params) -> SGD:
    if not params.setdefault("nesterov", True):
        raise ValueError("create('nag'): nag is SGD with nesterov=True; nesterov=False given")
    return SGD(**params)


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "sgd": SGD,
    "nag": _nag,
    "adam": Adam,
    "adagrad": AdaGrad,
    "adadelta": AdaDelta,
    "rmsprop": RMSProp,
}


def create(name: str | Optimizer, **params) -> Optimizer:
    """An optimizer by name (case-insensitive, MXNet's ``mx.optimizer.create``), or the given
    instance itself.

    >>> create("NAG", learning_rate=0.1, momentum=0.9).nesterov
    True
    """
    if isinstance(name, Optimizer):
        if params:
            raise ValueError(
                f"create: an optimizer instance was given, so {sorted(params)} cannot apply"
            )
        return name
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name.lower()](**params)
