"""How an op becomes a CPU kernel: the lowering table and the kernel calling convention.

A lowering is a function ``NodeSpec -> Kernel`` registered for an op name. It reads the
op's attributes and the node's inferred shapes and dtypes, and returns a Numba-compiled
function; it never redefines what the op means (the registry's NumPy reference is the
oracle the kernel is tested against).

Calling convention: ``kernel.fn(*inputs, *outputs, *workspace)``, optionally followed by
the step counter when ``kernel.needs_step``. Inputs are C-contiguous NumPy arrays of the node's input shapes
(the runtime only ever hands out whole buffers or reshaped views of them); outputs and workspace buffers are
C-contiguous arrays allocated by the runtime from its memory plan, which the kernel
overwrites completely. Kernels allocate nothing in the steady state, so that a generated
step function can call them from inside Numba over buffers planned at bind time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.ir.errors import BackendError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class NodeSpec:
    """Everything a lowering may read about one node."""

    op: str
    name: str
    attrs: Mapping[str, Any]
    in_shapes: tuple[Shape, ...]
    in_dtypes: tuple[np.dtype, ...]
    out_shapes: tuple[Shape, ...]
    out_dtypes: tuple[np.dtype, ...]
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Kernel:
    """A compiled kernel and the scratch buffers it needs (shape, dtype) per call.

    A kernel with ``view_of`` set has no function: its single output is input ``view_of``
    reshaped (Reshape, expand_dims), so the runtime binds a view and runs nothing.

    ``prepare(inputs, outputs, workspace)``, when given, turns the planned arrays into the
    argument tuple once, at bind: it may pass views (a transposed reading order, a 2-D
    view of an output) and constants (a reduction's length), so that one shape-generic
    compiled function serves every shape instead of one compile per shape."""

    fn: Callable | None
    workspace: tuple[tuple[Shape, np.dtype], ...] = ()
    needs_step: bool = False
    name: str = ""
    source: str = ""
    view_of: int | None = None
    prepare: Callable | None = None
    elementwise: bool = False

    def arguments(self, inputs: tuple, outputs: tuple, workspace: tuple = ()) -> tuple:
        """The arguments ``fn`` is called with (without the step counter)."""
        if self.prepare is not None:
            return tuple(self.prepare(tuple(inputs), tuple(outputs), tuple(workspace)))
        return (*inputs, *outputs, *workspace)


LOWERINGS: dict[str, Callable[[NodeSpec], Kernel]] = {}


def lowering(*ops: str):
    """Register the decorated function as the lowering of ``ops``."""

    def register(function: Callable[[NodeSpec], Kernel]) -> Callable[[NodeSpec], Kernel]:
        for op in ops:
            if op in LOWERINGS:
                raise ValueError(f"op {op!r} has two CPU lowerings")
            LOWERINGS[op] = function
        return function

    return register


def lower(spec: NodeSpec) -> Kernel:
    """The kernel for one node, by its op."""
    try:
        lowering_fn = LOWERINGS[spec.op]
    except KeyError:
        raise BackendError(
            f"{spec.name} ({spec.op}): the CPU backend has no kernel for {spec.op}"
        ) from None
    return lowering_fn(spec)


def kernel_reference(function) -> tuple[str, str]:
    """The module and attribute under which a compiled kernel can be imported again."""
    python_function = getattr(function, "py_func", function)
    module, name = python_function.__module__, python_function.__name__
    if getattr(sys.modules.get(module), name, None) is not function:
        raise BackendError(f"kernel {module}.{name} cannot be called from generated code")
    return module, name


def uniform_float_dtype(spec: NodeSpec) -> np.dtype:
    """The one float dtype of every input and output; BackendError otherwise."""
    dtypes = {np.dtype(dtype) for dtype in (*spec.in_dtypes, *spec.out_dtypes)}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (np.float32, np.float64):
        names = sorted(str(dtype) for dtype in dtypes)
        raise BackendError(
            f"{spec.name} ({spec.op}): the CPU kernel takes float32 or float64 inputs and "
            f"outputs of one dtype, not {names}"
        )
    return next(iter(dtypes))
