"""Dropout and BlockGrad.

Dropout's mask is a pure function of (seed, step, element index): a counter-based hash
(SplitMix64) that NumPy and every backend compute alike, so a compiled kernel reproduces
the reference's mask exactly and no generator state is carried between steps.
"""

from __future__ import annotations

import zlib

import numpy as np

from graphc.ir.registry import Attr, OpDef, get_op, known, register
from graphc.ir.symbol import Symbol, apply_op, make_constructor

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer on uint64 values (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = values + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def uniform_from_counter(seed: int, step: int, size: int) -> np.ndarray:
    """``size`` floats in [0, 1): element i is a hash of (seed, step, i)."""
    key = splitmix64(np.array([(seed & 0xFFFFFFFF) << 32 | (step & 0xFFFFFFFF)], dtype=np.uint64))[
        0
    ]
    with np.errstate(over="ignore"):
        bits = splitmix64(np.arange(size, dtype=np.uint64) ^ key)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def dropout_mask(attrs, shape: tuple, dtype, step: int) -> np.ndarray:
    """Keep-mask scaled by 1/(1-p): values 0 or 1/(1-p)."""
    p = attrs["p"]
    keep = uniform_from_counter(attrs["seed"], step, int(np.prod(shape))) >= p
    return (keep.reshape(shape) / (1.0 - p)).astype(dtype)


def _dropout_forward(attrs, inputs, ctx):
    data = inputs[0]
    if not (ctx.is_train or attrs["mode"] == "always") or attrs["p"] == 0.0:
        return [data.copy(), np.ones_like(data)]
    mask = dropout_mask(attrs, data.shape, data.dtype, ctx.step)
    return [data * mask, mask]


def _dropout_shape(attrs, in_shapes):
    data = known(in_shapes[0])
    return in_shapes, [data, data]


register(
    OpDef(
        name="Dropout",
        hidden_outputs=("mask",),
        attrs=(
            Attr("p", "float", 0.5, low=0.0, below=1.0),
            Attr("mode", "str", "training", choices=("training", "always")),
            Attr("seed", "int", 0),
        ),
        infer_shape=_dropout_shape,
        forward=_dropout_forward,
        grad=lambda args: [args.out_grads[0] * args.outputs[1]],
        doc="Zero each element with probability p and scale the rest by 1/(1-p) in training"
        " (or always, with mode='always'); identity at inference. The mask is a seeded hash of"
        " (seed, step, index): reproducible, and different at every step.",
    )
)


def Dropout(
    data: Symbol,
    p: float = 0.5,
    mode: str = "training",
    seed: int | None = None,
    name: str | None = None,
) -> Symbol:
    """Dropout with a reproducible mask; ``seed`` defaults to a hash of the node's name."""
    from graphc.ir.node import NAMES

    name = name or NAMES.next_name("dropout")
    if seed is None:
        seed = zlib.crc32(name.encode())
    return apply_op("Dropout", [data], {"p": p, "mode": mode, "seed": seed}, name=name)


register(
    OpDef(
        name="BlockGrad",
        infer_shape=lambda attrs, shapes: (shapes, [known(shapes[0])]),
        forward=lambda attrs, inputs, ctx: [inputs[0].copy()],
        grad=lambda args: [None],
        expr="{0}",
        doc="Identity forward; stops the gradient (MXNet's BlockGrad, stop_gradient).",
    )
)

BlockGrad = make_constructor(get_op("BlockGrad"))
stop_gradient = BlockGrad

__all__ = ["BlockGrad", "Dropout", "stop_gradient"]
