"""Scalar helpers that ops' expressions call by name (``OpDef.expr``), compiled for the CPU.

Generated elementwise kernels import everything here, so an expression may use these as it
uses Python's ``math`` module.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.extending import overload


@numba.njit(cache=True)
def one_hot_at(index, position, extent):
    """1.0 where ``index`` equals ``position``, else 0.0; ValueError unless ``index`` is an
    integer in [0, extent), as the reference's ``as_indices`` checks."""
    if not (index >= 0 and index < extent) or index != math.floor(index):
        raise ValueError("one_hot_like: an index is not an integer in range [0, extent)")
    return 1.0 if index == position else 0.0


NAMES = ("one_hot_at", "fast_tanh")
"""What a generated kernel imports from this module."""


def fast_tanh(x):
    """tanh: in float32 a clamped rational approximation that vectorizes, else math.tanh.

    The float32 form is the one Eigen uses for float (coefficients of its
    ``generic_fast_tanh_float``): relative error at most 2.6e-7 over the whole line
    (measured against float64 tanh on 2e6 points in [-10, 10]), a few float32 ulps. It
    turns LeNet's float32 tanh kernels from libm calls at about 7 ns per element into a
    vector loop. float64 keeps libm's tanh."""
    raise NotImplementedError("fast_tanh runs inside compiled kernels only")


@overload(fast_tanh, jit_options={"cache": True})
def _fast_tanh_overload(x):
    if x == numba.types.float32:

        def rational(x):
            clamp = np.float32(7.90531110763549805)
            x = min(max(x, -clamp), clamp)
            x2 = x * x
            p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
            p = x2 * p + np.float32(-8.60467152213735e-11)
            p = x2 * p + np.float32(5.12229709037114e-08)
            p = x2 * p + np.float32(1.48572235717979e-05)
            p = x2 * p + np.float32(6.37261928875436e-04)
            p = x2 * p + np.float32(4.89352455891786e-03)
            q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
            q = x2 * q + np.float32(2.26843463243900e-03)
            q = x2 * q + np.float32(4.89352518554385e-03)
            return (x * p) / q

        return rational

    def libm(x):
        return math.tanh(x)

    return libm


CPU_SPELLINGS = {"math.tanh(": "fast_tanh("}
"""Expression functions the CPU backend spells differently (same meaning, faster code)."""
