"""How a reduction reads its input, whatever the backend: the reduced axes as one run of
(outer, length, inner) positions in C order, after a transpose when they are not
adjacent; and which axes a ``sum_to_like`` sums over. Backends bind these numbers at bind,
so their compiled reductions stay shape-generic."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ReductionLayout:
    """A reduction as (outer, length, inner) over the input read in C order of the input
    with its axes permuted by ``order`` (of the input itself when ``order`` is None)."""

    order: tuple[int, ...] | None
    outer: int
    length: int
    inner: int


def reduction_layout(shape: tuple[int, ...], axes: tuple[int, ...]) -> ReductionLayout:
    """The layout of a reduction of ``shape`` over ``axes`` (non-negative).

    >>> reduction_layout((4, 1, 5, 6), (1, 2))
    ReductionLayout(order=None, outer=4, length=5, inner=6)
    >>> reduction_layout((2, 3, 5), (0, 2))
    ReductionLayout(order=(1, 0, 2), outer=3, length=10, inner=1)
    """
    # Axes of size 1 change no sum; runs of reduced or of kept axes merge into one axis.
    significant = [axis for axis, dim in enumerate(shape) if dim != 1]
    runs: list[list] = []
    for axis in significant:
        reduced = axis in axes
        if runs and runs[-1][0] == reduced:
            runs[-1][1] *= shape[axis]
        else:
            runs.append([reduced, shape[axis]])
    reduced_runs = [index for index, (reduced, _) in enumerate(runs) if reduced]
    if not reduced_runs:
        return ReductionLayout(None, 1, 1, math.prod(shape))
    if len(reduced_runs) == 1:
        position = reduced_runs[0]
        outer = math.prod(size for _, size in runs[:position])
        inner = math.prod(size for _, size in runs[position + 1 :])
        return ReductionLayout(None, outer, runs[position][1], inner)
    kept = tuple(axis for axis in range(len(shape)) if axis not in axes)
    order = kept + tuple(axes)
    length = math.prod(shape[axis] for axis in axes)
    return ReductionLayout(order, math.prod(shape[axis] for axis in kept), length, 1)


def sum_to_like_axes(shape: tuple[int, ...], like: tuple[int, ...]) -> tuple[int, ...]:
    """The axes of ``shape`` that broadcasting ``like`` up to it added or stretched."""
    extra = len(shape) - len(like)
    stretched = (extra + i for i, dim in enumerate(like) if dim == 1 and shape[extra + i] != 1)
    return tuple(range(extra)) + tuple(stretched)
