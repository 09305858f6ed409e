"""softmax and log_softmax, written as compositions of primitives.

The maximum is subtracted for stability and held out of the gradient with BlockGrad: the
shift cancels in the result, so its gradient is exactly zero and need not be built.
"""

from __future__ import annotations

from graphc.ir.ops.dropout import BlockGrad
from graphc.ir.ops.elementwise import exp, log
from graphc.ir.ops.reduce import max as reduce_max
from graphc.ir.ops.reduce import sum as reduce_sum
from graphc.ir.symbol import Symbol, apply_op


def _shifted(data: Symbol, axis: int) -> Symbol:
    return data - BlockGrad(reduce_max(data, axis=axis, keepdims=True))


def softmax(
    data: Symbol, axis: int = -1, temperature: float | None = None, name: str | None = None
) -> Symbol:
    """exp(x) / sum(exp(x)) along ``axis``, computed stably.

    >>> import graphc as gc
    >>> p = gc.evaluate(gc.softmax(gc.Variable("x")), {"x": [[1.0, 1.0]]})[0]
    >>> p.tolist()
    [[0.5, 0.5]]
    """
    if temperature is not None:
        data = data / float(temperature)
    exps = exp(_shifted(data, axis))
    return apply_op("divide", [exps, reduce_sum(exps, axis=axis, keepdims=True)], {}, name=name)


def log_softmax(
    data: Symbol, axis: int = -1, temperature: float | None = None, name: str | None = None
) -> Symbol:
    """x - log(sum(exp(x))) along ``axis``, computed stably."""
    if temperature is not None:
        data = data / float(temperature)
    shifted = _shifted(data, axis)
    log_total = log(reduce_sum(exp(shifted), axis=axis, keepdims=True))
    return apply_op("subtract", [shifted, log_total], {}, name=name)


__all__ = ["log_softmax", "softmax"]
