"""Scalar helpers that ops' expressions call by name (``OpDef.expr``), compiled for the CPU.

Generated elementwise kernels import everything here, so an expression may use these as it
uses Python's ``math`` module.
"""

from __future__ import annotations

import math

import numba


@numba.njit(cache=True)
def one_hot_at(index, position, extent):
    """1.0 where ``index`` equals ``position``, else 0.0; ValueError unless ``index`` is an
    integer in [0, extent), as the reference's ``as_indices`` checks."""
    if not (index >= 0 and index < extent) or index != math.floor(index):
        raise ValueError("one_hot_like: an index is not an integer in range [0, extent)")
    return 1.0 if index == position else 0.0


NAMES = ("one_hot_at",)
"""What a generated kernel imports from this module."""
