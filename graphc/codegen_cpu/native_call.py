"""Calling a compiled kernel through its address, so that the caller does not compile it again.

A Numba function that calls another one links the callee's code into its own and optimizes
and generates machine code for the whole of it once more: a generated step or training loop
calling thirty kernels compiled them all a second time (LeNet's training loop: 10-11 s of
its cold start, the largest single item of ``benchmarks/profile_compile.py``), and again
for every other model that used the same kernels. Here the generated function calls each
kernel through the address of its machine code instead, with Numba's own calling
convention (the status code and exception record a direct call has), so it compiles only
itself; the kernels are compiled, or loaded from Numba's disk cache, on their own.

The address is a run-time argument, never a constant in the generated code, so that code
stays valid in Numba's disk cache across processes: ``entry(function, arguments, extras)``
gives ``(address, check)`` at bind, and ``call_native(entry, arguments)`` (or
``call_native_counted(entry, arguments, counter, training)``, for kernels that take the
Dropout counter and the training flag) calls it. ``check`` is a hash of the argument types
the address was compiled for; the generated code holds the hash of the types it passes and
raises RuntimeError rather than call code compiled for other types.

The call is built from Numba's ``CPUCallConv`` (``get_function_type``, its argument packer
and return status), the pieces of ``call_function``, which wants a declared function where
this has an address.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import typeof
from numba.core import cgutils, types
from numba.core.callconv import excinfo_t
from numba.extending import intrinsic

from graphc.codegen_cpu.compile_log import compile_logged

EXTRAS = (types.int64, types.boolean)
"""The types of the Dropout counter and the training flag, for kernels that take them
(callers pass ``int(counter)`` and ``bool(training)``)."""

MISMATCH = "a kernel was bound for other argument types"
"""The RuntimeError a call raises when its entry was compiled for other types."""


def call_rebinding(function, find_entries, *rest):
    """``function(*find_entries(), *rest)`` with the entries found again, once, should a
    call find them compiled for other types (an argument's flags changed since, say a bound
    array made read-only): Numba compiles ``function`` for the new types, and the entries
    must follow. A generated function fails on its first mismatching call, before any
    optimizer update, and its kernels only overwrite their outputs, so a second run
    repeats nothing twice."""
    try:
        return function(*find_entries(False), *rest)
    except RuntimeError as error:
        if str(error) != MISMATCH:
            raise
        return function(*find_entries(True), *rest)


def type_check(kinds) -> int:
    """The hash of a tuple of Numba types that ``call_native`` compares (63 bits)."""
    digest = hashlib.sha256(repr(tuple(str(kind) for kind in kinds)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


PLACEHOLDER = (0, 0)
"""An entry's value before it is known: the same Numba type as every ``entry``."""


def argument_types(arguments: tuple, counted: bool = False) -> tuple:
    """The Numba types a kernel is compiled for when called on ``arguments`` (and the
    counter and flag when ``counted``)."""
    kinds = tuple(typeof(argument) for argument in arguments)
    return kinds + EXTRAS if counted else kinds


def entry(function, arguments: tuple, counted: bool = False, label: str = "") -> tuple[int, int]:
    """(address, check) of ``function`` (a Numba dispatcher) compiled for the types of
    ``arguments`` (and the counter and flag when ``counted``): compiled here, or loaded from
    Numba's disk cache, if it was not yet (``compile_log`` records which, for ``label``)."""
    kinds = argument_types(arguments, counted)
    compile_logged(function, kinds, label)
    result = function.overloads[kinds]
    if result.signature.return_type != types.none:
        raise TypeError(
            f"{function.py_func.__qualname__} returns {result.signature.return_type}: a kernel"
            " called from generated code returns nothing"
        )
    address = result.library.get_pointer_to_function(result.fndesc.llvm_func_name)
    return int(address), type_check(kinds)


def emit_entry_call(context, builder, entry_value, kinds, call_values, extras, extra_values):
    """Emit the call of the kernel at ``entry_value = (address, check)`` on ``call_values``
    (of the Numba types ``kinds``) and ``extra_values`` (of ``extras``, unliteraled), with
    Numba's calling convention: RuntimeError ``MISMATCH`` where the check is not the hash of
    those types, and the kernel's exception, if it raises one, propagated."""
    every = (*kinds, *(types.unliteral(kind) for kind in extras))
    check = type_check(every)
    address = builder.extract_value(entry_value, 0)
    given = builder.extract_value(entry_value, 1)
    wrong = builder.icmp_signed("!=", given, ir.Constant(given.type, check))
    with builder.if_then(wrong, likely=False):
        context.call_conv.return_user_exc(builder, RuntimeError, (MISMATCH,))
    call_values = list(call_values) + [
        context.cast(builder, value, kind, types.unliteral(kind))
        for value, kind in zip(extra_values, extras)
    ]
    convention = context.call_conv
    return_type = convention.get_return_type(types.none).pointee
    return_slot = cgutils.alloca_once(builder, return_type)
    builder.store(cgutils.get_null_value(return_type), return_slot)
    exception_slot = cgutils.alloca_once(builder, ir.PointerType(excinfo_t))
    packed = list(convention._get_arg_packer(every).as_arguments(builder, call_values))
    function_type = convention.get_function_type(types.none, every)
    pointer = builder.inttoptr(address, function_type.as_pointer())
    code = builder.call(pointer, [return_slot, exception_slot, *packed])
    status = convention._get_return_status(builder, code, builder.load(exception_slot))
    with cgutils.if_unlikely(builder, status.is_error):
        convention.return_status_propagate(builder, status)


def _typed(entry_type, arguments, extras):
    if not isinstance(arguments, types.BaseTuple):
        return None

    def codegen(context, builder, signature, values):
        entry_value, tuple_value, *extra_values = values
        call_values = [builder.extract_value(tuple_value, i) for i in range(len(arguments))]
        emit_entry_call(
            context, builder, entry_value, arguments.types, call_values, extras, extra_values
        )
        return context.get_dummy_value()

    return types.none(entry_type, arguments, *extras), codegen


@intrinsic
def call_native(typingctx, entry_pair, arguments):
    """Call the kernel at ``entry_pair = (address, check)`` on the tuple ``arguments``."""
    return _typed(entry_pair, arguments, ())


@intrinsic
def call_native_counted(typingctx, entry_pair, arguments, counter, training):
    """``call_native`` with the Dropout counter and the training flag after the tuple."""
    return _typed(entry_pair, arguments, (counter, training))


def entry_cell() -> np.ndarray:
    """Where a kernel reads the entry of a kernel it calls through an address: two int64,
    (address, check), zero until :meth:`AddressCall.fill` writes them (a call before that
    raises the mismatch RuntimeError, never jumps to address 0)."""
    return np.zeros(2, dtype=np.int64)


@dataclass(frozen=True, eq=False)  # an array field: identity, not elementwise equality
class AddressCall:
    """A kernel's call of ``function`` on ``arguments`` through the entry in ``cell``, a
    run-time argument of the calling kernel (``Kernel.address_calls``): the caller then
    compiles only itself, where a direct call links the callee and optimizes all its code
    again (a fused convolution epilogue: 0.7-0.85 s of a cold start per kernel)."""

    cell: np.ndarray
    function: object
    arguments: tuple

    def fill(self) -> None:
        """Write the entry, unless the cell holds one for the arguments' present types (a
        bound array whose flags changed since is another type: refilled, as
        ``call_rebinding`` finds the other entries again)."""
        if self.cell[0] == 0 or self.cell[1] != type_check(argument_types(self.arguments)):
            self.cell[:2] = entry(self.function, self.arguments)
