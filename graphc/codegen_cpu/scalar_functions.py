"""Scalar helpers that ops' expressions call by name (``OpDef.expr``), compiled for the CPU.

Generated elementwise kernels import everything here, so an expression may use these as it
uses Python's ``math`` module. Hand-written kernels (the LSTM's) import them too.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import types
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

# tanh(x) ~ x P(x^2) / Q(x^2) on [-c, c], with c where the quotient reaches 1.0f: the rational
# approximation Eigen uses for float32 tanh (generic_fast_tanh_float). In a loop compiled with
# error_model='numpy' over 65536 float32 values it vectorizes and takes 0.35 ns per element
# against 16 ns for libm's tanhf (best of 300 calls, development machine); the clamp is
# min/max because the same form written with branches took 0.39 ns. The LSTM forward (5
# calls per (t, n, j)) at T=100, N=128, I=256, H=256, float32, one BLAS thread, takes 240 ms
# with it against 515 ms with libm.
_TANH_CLAMP = 7.90531110763549805
_TANH_NUMERATOR = (
    4.89352455891786e-03,
    6.37261928875436e-04,
    1.48572235717979e-05,
    5.12229709037114e-08,
    -8.60467152213735e-11,
    2.00018790482477e-13,
    -2.76076847742355e-16,
)
_TANH_DENOMINATOR = (
    4.89352518554385e-03,
    2.26843463243900e-03,
    1.18534705686654e-04,
    1.19825839466702e-06,
)
# Below this, x itself is tanh(x) rounded to float32, whereas the quotient loses precision to
# underflow for x below about 1e-36 and gives 0 for subnormal x. The select costs 0.03 ns
# per element in the loop above.
_TANH_IDENTITY_BELOW = 0.0004

FAST_TANH_FLOAT32_MAX_RELATIVE_ERROR = 4.11e-7
"""The float32 ``fast_tanh``'s largest error relative to float64 ``np.tanh``, over every
float32 (measured exhaustively: 4.1022e-7, at x = 5.827876)."""


def fast_tanh(x):
    """tanh: in float32 a clamped rational approximation that vectorizes, else math.tanh.

    The float32 form has a relative error of at most ``FAST_TANH_FLOAT32_MAX_RELATIVE_ERROR``
    (4.11e-7, a few float32 ulps) against float64 tanh over every float32, subnormals
    included; it keeps the sign of zero, gives +-1 at +-inf and NaN at NaN. float64 keeps
    libm's tanh (within an ulp), which the 1e-10 agreement with the references needs.

    >>> import numba, numpy as np
    >>> tanh_of = numba.njit(lambda x: fast_tanh(x))
    >>> float(tanh_of(np.float32(0.5))) == float(np.float32(np.tanh(0.5)))
    True
    """
    raise NotImplementedError("fast_tanh runs inside compiled kernels only")


# No cache=True here: Numba compiles an overload with the flags of its first caller and
# caches it without them, so every later caller would get, say, the LSTM's error model, whose
# division check stops the generated kernels from vectorizing (3.0 against 0.39 ns per
# element). Uncached, each caller compiles its own copy and caches it inside its own code.
@overload(fast_tanh)
def _fast_tanh_overload(x):
    if x != types.float32:
        return lambda x: math.tanh(x)
    clamp = np.float32(_TANH_CLAMP)
    identity_below = np.float32(_TANH_IDENTITY_BELOW)
    a1, a3, a5, a7, a9, a11, a13 = (np.float32(value) for value in _TANH_NUMERATOR)
    b0, b2, b4, b6 = (np.float32(value) for value in _TANH_DENOMINATOR)

    def tanh_float32(x):
        clamped = min(max(x, -clamp), clamp)
        x2 = clamped * clamped
        numerator = a13 * x2 + a11
        numerator = (((numerator * x2 + a9) * x2 + a7) * x2 + a5) * x2 + a3
        numerator = (numerator * x2 + a1) * clamped
        denominator = ((b6 * x2 + b4) * x2 + b2) * x2 + b0
        return x if abs(x) < identity_below else numerator / denominator

    return tanh_float32


CPU_SPELLINGS = {"math.tanh(": "fast_tanh("}
"""Expression functions the CPU backend spells differently (same meaning, faster code)."""
