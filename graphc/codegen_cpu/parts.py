"""Splitting a kernel's work over threads through one shared parallel loop.

A kernel that splits its rows over threads used to hold a ``numba.prange`` of its own.
Numba compiles each prange as a function of its own, with its parallel-loop passes and
everything its body calls optimized once more: a convolution pass's kernel compiled in
1.2 s with its prange and 0.4 s with the same loop serial (``benchmarks/profile_compile.py``,
one core), and a cold LeNet start compiled eight of them.

Here the kernels' one prange is :func:`run_parts`, compiled once per machine (Numba's disk
cache) and shared by all of them, fused kernels' generated loops included (only the
standalone elementwise kernels keep their own): it calls, for each part, the kernel's *part function* through its
address, the way generated code calls kernels (``native_call``). A kernel

- takes a cell for the part function's entry among its arguments (:func:`parts_cell`,
  filled by ``parts_call`` before the kernel first runs, as ``Kernel.address_calls`` fills
  a fused kernel's anchor);
- writes its arguments to a frame on its own stack with :func:`part_frame`, which checks
  the cell's entry was compiled for them, and calls ``run_parts(cell, frame, parts)``;
- and its part function ``f(frame, part)``, a plain ``njit`` function, reads the arguments
  back with :func:`frame_arguments` and does part ``part`` of ``parts``.

The kernel then compiles only itself, and the part function compiles once, serial, in a
compile job of its own. One part calls the function directly, without a parallel region.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import typeof
from numba.core import cgutils, types
from numba.core.callconv import excinfo_t
from numba.extending import NativeValue, intrinsic, models, register_model, typeof_impl, unbox

from graphc.codegen_cpu.native_call import MISMATCH, AddressCall, type_check


class PartFrame(types.Type):
    """The address of a frame holding a tuple of the type ``arguments``."""

    def __init__(self, arguments) -> None:
        self.arguments = arguments
        super().__init__(name=f"PartFrame({arguments})")

    @property
    def key(self):
        return self.arguments


@register_model(PartFrame)
class _PartFrameModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type) -> None:
        super().__init__(dmm, fe_type, ir.IntType(8).as_pointer())


@unbox(PartFrame)
def _unbox_frame(typ, obj, c):
    """From a Python int, the address (the wrapper Numba builds for every function needs
    one; the part functions are only ever called through ``run_parts``)."""
    address = c.pyapi.long_as_voidptr(obj)
    return NativeValue(address, is_error=cgutils.is_not_null(c.builder, c.pyapi.err_occurred()))


class FrameOf:
    """Stands for a frame of ``arguments`` where a part function's types are needed in
    Python (``typeof(FrameOf(arguments))`` is ``PartFrame(typeof(arguments))``)."""

    def __init__(self, arguments: tuple) -> None:
        self.arguments = arguments


@typeof_impl.register(FrameOf)
def _typeof_frame(value, context):
    return PartFrame(typeof(value.arguments))


def parts_call(cell, function, arguments: tuple) -> AddressCall:
    """The kernel's call of its part ``function`` through ``cell``, for ``Kernel.address_calls``
    (``arguments``: the kernel's own, which its frame holds)."""
    return AddressCall(cell, function, (FrameOf(arguments), 0))


@intrinsic
def part_frame(typingctx, cell, arguments):
    """The address of a copy of the tuple ``arguments`` on this function's stack, for
    :func:`run_parts`; RuntimeError ``MISMATCH`` unless ``cell`` holds the entry of a part
    function compiled for such a frame.

    The copy holds no references: it is valid while the kernel's own arguments are, so a
    kernel puts only those in it (an array the kernel made itself could be freed before
    the parts read it)."""
    if not isinstance(arguments, types.BaseTuple):
        return None
    check = type_check((PartFrame(arguments), types.int64))

    def codegen(context, builder, signature, values):
        cell_value, tuple_value = values
        array = context.make_array(signature.args[0])(context, builder, cell_value)
        given = builder.load(builder.gep(array.data, [ir.Constant(ir.IntType(64), 1)]))
        wrong = builder.icmp_signed("!=", given, ir.Constant(given.type, check))
        with builder.if_then(wrong, likely=False):
            context.call_conv.return_user_exc(builder, RuntimeError, (MISMATCH,))
        slot = cgutils.alloca_once(builder, context.get_value_type(arguments))
        builder.store(tuple_value, slot)
        return builder.ptrtoint(slot, ir.IntType(64))

    return types.int64(cell, arguments), codegen


@intrinsic
def frame_arguments(typingctx, frame):
    """The tuple in the frame a part function is given."""
    if not isinstance(frame, PartFrame):
        return None

    def codegen(context, builder, signature, values):
        kind = context.get_value_type(frame.arguments)
        value = builder.load(builder.bitcast(values[0], kind.as_pointer()))
        # an intrinsic returns a new reference: the part function releases what it gets
        context.nrt.incref(builder, frame.arguments, value)
        return value

    return frame.arguments(frame), codegen


def _emit_part_call(context, builder, address, frame, part):
    """The call of the part function at ``address`` on (frame, part) with Numba's calling
    convention; its return status."""
    convention = context.call_conv
    kinds = (PartFrame(types.Tuple(())), types.int64)  # any frame: one pointer
    return_type = convention.get_return_type(types.none).pointee
    return_slot = cgutils.alloca_once(builder, return_type)
    builder.store(cgutils.get_null_value(return_type), return_slot)
    exception_slot = cgutils.alloca_once(builder, ir.PointerType(excinfo_t))
    function_type = convention.get_function_type(types.none, kinds)
    pointer = builder.inttoptr(address, function_type.as_pointer())
    frame_pointer = builder.inttoptr(frame, ir.IntType(8).as_pointer())
    code = builder.call(pointer, [return_slot, exception_slot, frame_pointer, part])
    return convention._get_return_status(builder, code, builder.load(exception_slot))


@intrinsic
def _call_part(typingctx, address, frame, part):
    """Call the part function at ``address`` on (frame, part), passing an exception it
    raises on."""

    def codegen(context, builder, signature, values):
        status = _emit_part_call(context, builder, *values)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()

    return types.none(address, frame, part), codegen


@intrinsic
def _part_failed(typingctx, address, frame, part):
    """Call the part function at ``address`` on (frame, part); 1 if it raised, else 0.
    Inside the parallel region an exception is not passed on: Numba's parallel loop does
    not carry it out (the caller got a SystemError, "returned a result with an exception
    set")."""

    def codegen(context, builder, signature, values):
        status = _emit_part_call(context, builder, *values)
        return builder.zext(status.is_error, ir.IntType(64))

    return types.int64(address, frame, part), codegen


def parts_cell() -> np.ndarray:
    """A kernel's cell for its part function: (address, check), as ``native_call.entry_cell``,
    then a flag the parts set where one raised (the parallel loop's own reductions would
    allocate).

    Numba's thread pool is started here, at bind, before any kernel can reach
    :func:`run_parts`: a kernel loaded from the disk cache with a copy of ``run_parts``
    linked in need not start the pool itself, and then calls the pool's entry point
    at address 0 (a segfault, seen on a cache whose ``run_parts`` had been compiled as
    the callee of a generated kernel, with its error model). ``get_num_threads`` starts
    the pool once and is free afterwards."""
    numba.get_num_threads()
    return np.zeros(3, dtype=np.int64)


@numba.njit(cache=True, parallel=True)
def run_parts(cell, frame, parts):
    """Parts 0, 1, ..., parts - 1 of the part function whose entry ``cell`` holds on
    ``frame``, one per thread of Numba's pool (one part: called here, without a parallel
    region). Where a part raised, the parts run again here, in order, and the first that
    raises passes its exception on as any call does (the parts are deterministic; their
    outputs are not used after an exception); should none raise again, RuntimeError."""
    address = cell[0]
    if parts == 1:
        _call_part(address, frame, 0)
        return
    cell[2] = 0
    for part in numba.prange(parts):
        if _part_failed(address, frame, part):
            cell[2] = 1  # every writer writes the same value
    if cell[2]:
        for part in range(parts):
            _call_part(address, frame, part)
        # No part raised again: a part is not always idempotent (the LSTM's backward
        # carries its gradients through time in place), so its outputs cannot be trusted.
        raise RuntimeError("a part of a kernel failed in the parallel region, not again alone")
