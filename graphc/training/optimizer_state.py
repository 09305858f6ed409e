"""The optimizer of a ``Model``: made from ``fit``'s arguments with the loss heads' default
``rescale_grad``, its state carried over from the previous optimizer (an earlier ``fit`` of
the same model, or a checkpoint), and its description for the checkpoint.

>>> import graphc as gc
>>> from graphc.training.heads import loss_heads
>>> opt = make_optimizer("sgd", {"learning_rate": 0.1}, loss_heads(gc.models.mlp()), 50)
>>> opt.rescale_grad, optimizer_record(opt)["class"]
(0.02, 'SGD')
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from graphc.training.heads import LossHead, default_rescale_grad
from graphc.training.optimizer import Optimizer, create

DEFAULT_OPTIMIZER_PARAMS = (("learning_rate", 0.01),)
"""``fit``'s default ``optimizer_params`` (MXNet's)."""


def make_optimizer(
    optimizer: str | Optimizer,
    optimizer_params: Mapping | Sequence,
    heads: Sequence[LossHead],
    batch_size: int,
    workers: int = 1,
) -> Optimizer:
    """The optimizer by name with ``optimizer_params``, ``rescale_grad`` defaulting to the
    heads' convention (``graphc.training.heads``) over the batches of every data-parallel
    worker; an ``Optimizer`` instance as it is."""
    if isinstance(optimizer, Optimizer):
        if optimizer_params is not DEFAULT_OPTIMIZER_PARAMS and dict(optimizer_params):
            raise ValueError(
                "fit: optimizer is an Optimizer instance, so optimizer_params "
                f"{dict(optimizer_params)} cannot apply; configure the instance instead"
            )
        return optimizer
    params = dict(optimizer_params)
    if "rescale_grad" not in params:
        params["rescale_grad"] = default_rescale_grad(heads, batch_size, workers)
    return create(optimizer, **params)


def placed_states(executor, optimizer: Optimizer, weights: Mapping[str, np.ndarray]) -> dict:
    """The optimizer's state of every weight (``create_state``), in buffers the training
    executor reserves in its arena, so one arena holds intermediates, gradients and state.
    A later ``fit`` with the same optimizer kind gets the same buffers back."""
    # The state's values are made on the host (zeros, whatever the device) and copied in.
    created = {
        name: optimizer.create_state(name, np.zeros(weight.shape, weight.dtype))
        for name, weight in weights.items()
    }
    specs = {
        (name, index): (array.shape, array.dtype)
        for name, state in created.items()
        for index, array in enumerate(state)
    }
    placed = executor.reserve("optimizer", specs)
    states = {}
    for name, state in created.items():
        states[name] = tuple(placed[(name, index)] for index in range(len(state)))
        for target, value in zip(states[name], state, strict=True):
            executor.target.arrays.copy(target, value)
    return states


def carry_over(
    optimizer: Optimizer, states: Mapping[str, tuple], previous: tuple[dict, dict] | None
) -> None:
    """Restore ``previous`` (an :func:`optimizer_record` and a ``get_state`` dict) into
    ``optimizer`` and ``states`` when it comes from the same optimizer class; warn and start
    from zero state when it does not."""
    if previous is None:
        return
    record, saved = previous
    if record["class"] == type(optimizer).__name__:
        optimizer.set_state(saved, states)
        return
    warnings.warn(
        f"fit: the optimizer state saved for {record['class']} does not apply to "
        f"{type(optimizer).__name__}; the new optimizer starts from zero state",
        stacklevel=4,
    )


def optimizer_record(optimizer: Optimizer) -> dict:
    """The optimizer's class and hyper-parameters as JSON values (others as their repr).

    >>> from graphc.training.optimizer import Adam
    >>> optimizer_record(Adam(learning_rate=0.5))["hyper_parameters"]["beta1"]
    0.9
    """
    plain = (bool, int, float, str, type(None))
    hyper = {
        key: value if isinstance(value, plain) else repr(value)
        for key, value in vars(optimizer).items()
        if key != "num_update"
    }
    return {"class": type(optimizer).__name__, "hyper_parameters": hyper}


def snapshot(optimizer: Optimizer, states: Mapping[str, tuple]) -> tuple[dict, dict]:
    """``(optimizer_record, get_state)``: what a checkpoint or the next ``fit`` needs."""
    return optimizer_record(optimizer), optimizer.get_state(states)
