"""How an op becomes a kernel for a target: the calling convention and the lowering table.

A lowering is a function ``NodeSpec -> Kernel`` registered for a target (``"cpu"``,
``"cuda"``) and an op name. It reads the op's attributes and the node's inferred shapes and
dtypes and returns a compiled function; it never redefines what the op means (the
registry's NumPy reference is the oracle every kernel is tested against).

Calling convention: ``kernel.fn(*inputs, *outputs, *workspace)``, followed by the Dropout
counter and the training flag when ``kernel.needs_counter`` (Dropout's mask, the training
forward's label check). Inputs are C-contiguous arrays of the node's input
shapes (the runtime only ever hands out whole buffers or reshaped views of them); outputs
and workspace buffers are C-contiguous arrays from the runtime's memory plan, which the
kernel overwrites completely. Kernels allocate nothing in the steady state, so that a
generated sequence can call them over buffers planned at bind. A kernel that calls another
through an address in its arguments (``Kernel.address_calls``) needs that address filled
first: ``Kernel.arguments`` does it unless told not to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.ir.errors import BackendError

Shape = tuple[int, ...]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
"""The dtypes every float kernel takes."""


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

    def key(self) -> tuple:
        """What identifies the kernel: two nodes with equal keys share one kernel."""
        return (
            self.op,
            tuple(sorted((key, repr(value)) for key, value in self.attrs.items())),
            self.in_shapes,
            tuple(str(dtype) for dtype in self.in_dtypes),
            self.out_shapes,
            tuple(str(dtype) for dtype in self.out_dtypes),
            tuple(sorted((key, repr(value)) for key, value in self.options.items())),
        )


@dataclass(frozen=True)
class Kernel:
    """A compiled kernel and the scratch buffers it needs (shape, dtype) per call.

    A kernel with ``view_of`` set has no function: its single output is input ``view_of``
    reshaped (Reshape, expand_dims), so the runtime binds a view and runs nothing.

    ``prepare(inputs, outputs, workspace)``, when given, turns the planned arrays into the
    argument tuple once, at bind: it may pass views (a transposed reading order, a 2-D
    view of an output) and constants (a reduction's length), so that one shape-generic
    compiled function serves every shape instead of one compile per shape.

    ``elementwise``: output ``i`` may take the buffer of an input of its shape and dtype
    (each element is read before it is written), which the in-place pass uses.

    ``address_calls(arguments)``: the kernels this one calls through an address held in its
    own arguments (a fused kernel's anchor), each with ``function``, ``arguments`` and
    ``fill()``, which compiles or loads ``function`` and writes its address where the
    kernel reads it. ``arguments(...)`` fills them at once; the executor binds with
    ``resolve=False``, and what runs the launches fills them first (a compiled sequence
    after compiling every cold function on every core, ``runtime.launch`` before a call)."""

    fn: Callable | None
    workspace: tuple[tuple[Shape, np.dtype], ...] = ()
    needs_counter: bool = False
    name: str = ""
    source: str = ""
    view_of: int | None = None
    prepare: Callable | None = None
    elementwise: bool = False
    address_calls: Callable | None = None

    def arguments(
        self, inputs: tuple, outputs: tuple, workspace: tuple = (), resolve: bool = True
    ) -> tuple:
        """The arguments ``fn`` is called with (without the counter and training flag);
        with ``resolve``, the addresses of its ``address_calls`` filled in."""
        if self.prepare is not None:
            arguments = tuple(self.prepare(tuple(inputs), tuple(outputs), tuple(workspace)))
        else:
            arguments = (*inputs, *outputs, *workspace)
        if resolve:
            self.fill_addresses(arguments)
        return arguments

    def fill_addresses(self, arguments: tuple) -> None:
        """Compile or load what this kernel calls through addresses in ``arguments``, and
        write those addresses (nothing when it calls none, or they are written already)."""
        for call in self.address_calls(arguments) if self.address_calls is not None else ():
            call.fill()


LOWERINGS: dict[tuple[str, str], Callable[[NodeSpec], Kernel]] = {}
_KERNELS: dict[tuple, Kernel] = {}


def lowering(target: str, *ops: str):
    """Register the decorated function as ``target``'s lowering of ``ops``."""

    def register(function: Callable[[NodeSpec], Kernel]) -> Callable[[NodeSpec], Kernel]:
        for op in ops:
            if (target, op) in LOWERINGS:
                raise ValueError(f"op {op!r} has two {target} lowerings")
            LOWERINGS[(target, op)] = function
        return function

    return register


def lower(spec: NodeSpec, target: str = "cpu") -> Kernel:
    """A freshly lowered kernel for one node on ``target``, by its op."""
    try:
        lowering_fn = LOWERINGS[(target, spec.op)]
    except KeyError:
        raise BackendError(
            f"{spec.name} ({spec.op}): the {target} backend has no kernel for {spec.op}"
        ) from None
    return lowering_fn(spec)


def kernel_for(spec: NodeSpec, target: str = "cpu") -> Kernel:
    """The kernel for a node, lowered once per process for each distinct key and target
    (the compiled code itself is cached on disk by the target's compiler)."""
    key = (target, spec.key())
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = lower(spec, target)
        _KERNELS[key] = kernel
    return kernel


def uniform_float_dtype(spec: NodeSpec) -> np.dtype:
    """The one float dtype of every input and output; BackendError otherwise."""
    dtypes = {np.dtype(dtype) for dtype in (*spec.in_dtypes, *spec.out_dtypes)}
    if len(dtypes) != 1 or next(iter(dtypes)) not in FLOAT_DTYPES:
        names = sorted(str(dtype) for dtype in dtypes)
        raise BackendError(
            f"{spec.name} ({spec.op}): the kernel takes float32 or float64 inputs and "
            f"outputs of one dtype, not {names}"
        )
    return next(iter(dtypes))


def float_dtype(spec: NodeSpec, output: int = 0) -> np.dtype:
    """The dtype of output ``output``, for a kernel whose other arrays follow it by the op's
    dtype rule (pooling's int32 argmax, a sum's input); BackendError unless it is one of
    ``FLOAT_DTYPES``.

    >>> i32 = np.dtype("int32")
    >>> float_dtype(NodeSpec("sum", "total", {}, ((3,),), (i32,), ((),), (i32,)))
    Traceback (most recent call last):
    ...
    graphc.ir.errors.BackendError: total (sum): the kernel takes float32 or float64 data, not int32
    """
    dtype = np.dtype(spec.out_dtypes[output])
    if dtype not in FLOAT_DTYPES:
        raise BackendError(
            f"{spec.name} ({spec.op}): the kernel takes float32 or float64 data, not {dtype}"
        )
    return dtype
