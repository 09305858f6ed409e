"""Random expression graphs for the passes' property tests: elementwise, broadcasting,
reduction, dot, reshape and transpose ops over three variables, with redundant patterns
the simplifier should remove."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import graphc as gc
from graphc.ir.ops.broadcast import broadcast_shape
from graphc.ir.symbol import scalar

SHAPES = {"x": (3, 4), "y": (3, 4), "z": (4,)}

VARIABLES = {name: gc.Variable(name) for name in SHAPES}
CONSTANTS = (0.0, 1.0, 2.0)


def _partner(draw, pool, shape):
    """A pool item or a constant that broadcasts with ``shape``."""
    options = [item for item in pool if _broadcasts(item[1], shape)]
    options += [(scalar(value), ()) for value in CONSTANTS]
    return options[draw(st.integers(0, len(options) - 1))]


def _broadcasts(left, right) -> bool:
    try:
        broadcast_shape(left, right)
    except Exception:
        return False
    return True


def _grow(draw, pool):
    """One new expression from the pool (symbol, shape)."""
    symbol, shape = pool[draw(st.integers(0, len(pool) - 1))]
    kind = draw(
        st.sampled_from(
            [
                "add",
                "subtract",
                "multiply",
                "divide",
                "exp",
                "tanh",
                "negative",
                "sum",
                "reshape",
                "transpose",
                "dot",
                "redundant",
                "repeat",
            ]
        )
    )
    if kind in ("add", "subtract", "multiply"):
        other, other_shape = _partner(draw, pool, shape)
        left, right = (symbol, other) if draw(st.booleans()) else (other, symbol)
        result = {"add": gc.add, "subtract": gc.subtract, "multiply": gc.multiply}[kind]
        return result(left, right), broadcast_shape(shape, other_shape)
    if kind == "divide":
        other, other_shape = _partner(draw, pool, shape)
        # other * other + 1 >= 1. No exp or tanh of a bare constant: see the note on folding.
        return symbol / (other * other + 1.0), broadcast_shape(shape, other_shape)
    if kind == "exp":
        return gc.exp(gc.tanh(symbol)), shape
    if kind in ("tanh", "negative"):
        return getattr(gc, kind)(symbol), shape
    if kind == "sum" and shape:
        axis = draw(st.integers(0, len(shape) - 1))
        return gc.sum(symbol, axis=axis), shape[:axis] + shape[axis + 1 :]
    if kind == "reshape" and shape:
        target = draw(st.sampled_from([(-1,), (1,) + shape, tuple(reversed(shape))]))
        size = int(np.prod(shape))
        concrete = (size,) if target == (-1,) else target
        return gc.Reshape(symbol, shape=target), concrete
    if kind == "transpose" and len(shape) >= 2:
        return gc.transpose(symbol), tuple(reversed(shape))
    if kind == "dot" and len(shape) == 2:
        return gc.dot(symbol, gc.transpose(symbol)), (shape[0], shape[0])
    if kind == "redundant":
        pattern = draw(st.sampled_from(["mul1", "add0", "sub0", "div1", "neg2", "t2", "r2", "s1"]))
        return _redundant(pattern, symbol, shape)
    if kind == "repeat":
        return gc.tanh(symbol) + gc.tanh(symbol), shape
    return gc.tanh(symbol), shape


def _redundant(pattern, symbol, shape):
    if pattern == "mul1":
        return symbol * 1.0, shape
    if pattern == "add0":
        return 0.0 + symbol, shape
    if pattern == "sub0":
        return symbol - 0.0, shape
    if pattern == "div1":
        return symbol / 1.0, shape
    if pattern == "neg2":
        return gc.negative(gc.negative(symbol)), shape
    if pattern == "t2":
        return gc.transpose(gc.transpose(symbol)), shape
    if pattern == "r2":
        return gc.Reshape(gc.Reshape(symbol, shape=(-1,)), shape=(1, -1)), (1, int(np.prod(shape)))
    return gc.sum(gc.Reshape(symbol, shape=(1,) + shape), axis=0), shape


@st.composite
def expression_graphs(draw):
    names = draw(st.sampled_from([("x", "y"), ("x", "z"), ("x", "y", "z")]))
    pool = [(VARIABLES[name], SHAPES[name]) for name in names]
    for _ in range(draw(st.integers(1, 8))):
        pool.append(_grow(draw, pool))
    return pool[-1][0], draw(st.booleans())


# A note on folding: constants built from 0, 1 and 2 with +, - and * are exact in any float
# type. fold_constants computes in float64, while the reference computes an unfolded subgraph of
# constants in float32 even inside a float64 graph (infer_dtypes does not carry a consumer's
# dtype back through a chain of untyped constants), so exp(2.0) would differ in the 8th digit.
