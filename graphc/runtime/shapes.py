"""The rule every bound input's shape keeps, checked at bind, reshape and simple_bind."""

from __future__ import annotations

import numpy as np

from graphc.ir.errors import ShapeError


def check_input_shape(where: str, name: str, shape) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints; ShapeError naming the argument otherwise.
    A dimension of zero or less has no meaning for a bound buffer (MXNet's -1 or 0 for
    "infer" belong to Reshape, not to an input), and a float is never silently truncated."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise ShapeError(f"{where}: the shape of {name!r} is {shape!r}, not a tuple") from None
    for dim in dims:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise ShapeError(
                f"{where}: argument {name!r} has shape {shape!r}: dimension {dim!r} is not an int"
            )
        if dim <= 0:
            raise ShapeError(
                f"{where}: argument {name!r} has shape {shape!r}: every dimension must be "
                f"positive (a batch of at least one)"
            )
    return tuple(int(dim) for dim in dims)
