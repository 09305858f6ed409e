"""Finite-difference gradient checks (Knet's gradcheck, MXNet's check_numeric_gradient)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from graphc.ir.evaluate import evaluate, evaluate_entries
from graphc.ir.grad import grad
from graphc.ir.node import NodeOutput
from graphc.ir.registry import get_op
from graphc.ir.symbol import Symbol, Variable
from graphc.ir.unknown_dims import resolve_unknown_dims


def non_differentiable_arguments(symbol: Symbol) -> set[str]:
    """Arguments that feed a label or index input (they get no gradient)."""
    names = set()
    for node in symbol.graph.nodes:
        if node.is_variable:
            continue
        opdef = get_op(node.op)
        skip = set(opdef.labels) | set(opdef.integer_inputs)
        for input_name, entry in zip(opdef.input_names(node.attrs), node.inputs):
            if input_name in skip and entry.node.is_variable:
                names.add(entry.node.name)
    return names


def gradcheck(
    symbol: Symbol,
    args: Mapping[str, Any],
    wrt: Sequence[str] | None = None,
    eps: float = 1e-5,
    is_train: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Max relative error, per argument, between graphc's gradient and central differences.

    The objective is the sum over outputs of ``<output, R>`` for a fixed random ``R``, or,
    for a loss head, the loss the head's gradient belongs to. Everything runs in float64.
    The relative error of an element is ``|analytic - numeric| / max(|analytic|, |numeric|,
    1e-2 * max|numeric|)``: elements far below the argument's gradient scale are measured
    against that scale, where finite differences are only accurate to it.

    >>> import graphc as gc
    >>> x = gc.Variable("x")
    >>> errors = gc.gradcheck(gc.tanh(x), {"x": [0.1, 0.5, -2.0]})
    >>> errors["x"] < 1e-6
    True
    """
    values = {name: np.array(value, dtype=np.float64) for name, value in args.items()}
    symbol = resolve_unknown_dims(symbol, {name: value.shape for name, value in values.items()})
    skip = non_differentiable_arguments(symbol)
    names = (
        [name for name in symbol.list_arguments() if name not in skip] if wrt is None else list(wrt)
    )
    rng = np.random.default_rng(seed)
    heads = _projections(symbol, values, is_train, rng)

    head_vars = [
        None if weight is None else Variable(f"_head_grad{i}") for i, weight in enumerate(heads)
    ]
    feeds = dict(values)
    feeds.update({var.name: weight for var, weight in zip(head_vars, heads) if var is not None})
    grads = grad(symbol, names, head_grads=head_vars)
    analytic = evaluate(_group(grads), _restrict(feeds, grads), is_train=is_train)

    def objective(current: Mapping[str, np.ndarray]) -> float:
        return _objective(symbol, current, heads, is_train)

    errors = {}
    for name, computed in zip(names, analytic):
        numeric = _central_differences(objective, values, name, eps)
        errors[name] = _relative_error(computed, numeric)
    return errors


def _group(symbols: list[Symbol]) -> Symbol:
    entries = []
    for symbol in symbols:
        entries.extend(symbol.entries)
    return Symbol(entries)


def _restrict(feeds: Mapping[str, np.ndarray], symbols: list[Symbol]) -> dict:
    needed = set(_group(symbols).list_inputs())
    return {name: value for name, value in feeds.items() if name in needed}


def _projections(symbol: Symbol, values, is_train: bool, rng) -> list:
    outputs = evaluate(symbol, values, is_train=is_train)
    heads = []
    for entry, value in zip(symbol.entries, outputs):
        node = entry.node
        if not node.is_variable and get_op(node.op).is_loss_head:
            heads.append(None)
        else:
            heads.append(rng.standard_normal(value.shape))
    return heads


def _objective(symbol: Symbol, values, heads, is_train: bool) -> float:
    computed = evaluate_entries(symbol, values, is_train=is_train)
    total = 0.0
    for entry, weight in zip(symbol.entries, heads):
        if weight is not None:
            total += float(np.sum(computed[entry] * weight))
            continue
        node = entry.node
        opdef = get_op(node.op)
        inputs = [computed[item] for item in node.inputs]
        outputs = [computed[NodeOutput(node, i)] for i in range(opdef.num_outputs(node.attrs))]
        total += float(opdef.loss(node.attrs, inputs, outputs))
    return total


def _central_differences(objective, values, name: str, eps: float) -> np.ndarray:
    base = values[name]
    numeric = np.zeros_like(base)
    for index in np.ndindex(base.shape):
        original = base[index]
        shifted = dict(values)
        plus = base.copy()
        plus[index] = original + eps
        shifted[name] = plus
        up = objective(shifted)
        minus = base.copy()
        minus[index] = original - eps
        shifted[name] = minus
        down = objective(shifted)
        numeric[index] = (up - down) / (2 * eps)
    return numeric


def _relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    if analytic.shape != numeric.shape:
        raise AssertionError(f"gradient shape {analytic.shape} != argument shape {numeric.shape}")
    if numeric.size == 0:
        return 0.0
    scale = 1e-2 * float(np.max(np.abs(numeric)))
    floor = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), max(scale, 1e-12))
    return float(np.max(np.abs(analytic - numeric) / floor))
