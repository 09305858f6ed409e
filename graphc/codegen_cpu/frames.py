"""Argument frames: a kernel's bound arguments packed once, at bind, as the native values its
machine code takes, so that a generated function calls it through one address.

The training loop used to take every kernel's argument tuple (about a hundred arrays for
LeNet) as a Python argument. Numba compiles a CPython wrapper that unboxes each of them,
and the tuples travel through the loop as large LLVM aggregates: 1.9 s of the loop's 4.8 s
cold compile was the wrapper alone (measured with ``no_cpython_wrapper``). A frame holds
the same values as Numba lays them out in memory (its data model's data types: an array is
meminfo, parent, size, itemsize, data pointer, shape and strides), packed here from the
arrays; the generated code reads them back with :func:`call_frame` and calls the kernel's
entry (``native_call``) as a call on the tuple would.

What the generated source spells is a *spec*, the argument types as a JSON string literal
(:func:`spec`), so the source still says exactly what it was compiled for and Numba's disk
cache stays valid across processes; the entry's check compares the spec's types with those
the kernel was compiled for, as ``call_native`` does. A frame holds no reference count:
its owner keeps the arrays alive, and :meth:`FrameSet.still_valid` sees the one change that
makes an array another Numba type (its ``writeable`` flag), so the owner packs again.
Arguments of another kind (a CollectiveCall record, a function) have no spec; their kernel
keeps the tuple path.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import from_dtype
from numba.core import types
from numba.core.registry import cpu_target
from numba.extending import intrinsic

from graphc.codegen_cpu.native_call import argument_types, emit_entry_call

WORD = 8
"""Every frame starts on a word: the widest of the values it holds (pointers, int64)."""


# -- specs: the argument types as a string literal in the generated source -----------------


def _encode(kind):
    if isinstance(kind, types.Array) and isinstance(kind.dtype, (types.Number, types.Boolean)):
        return ["A", str(kind.dtype), kind.ndim, kind.layout, kind.mutable, kind.aligned]
    if isinstance(kind, types.NoneType):
        return ["N"]
    if isinstance(kind, (types.Integer, types.Float, types.Boolean)) and not isinstance(
        kind, types.Literal
    ):
        return ["S", str(kind)]
    if isinstance(kind, types.UniTuple):
        inner = _encode(kind.dtype)
        return None if inner is None else ["U", kind.count, inner]
    if isinstance(kind, types.Tuple):
        inner = [_encode(item) for item in kind.types]
        return None if None in inner else ["T", inner]
    return None


def _decode(code):
    tag = code[0]
    if tag == "A":
        _, dtype, ndim, layout, mutable, aligned = code
        element = from_dtype(np.dtype(dtype)) if dtype != "bool" else types.boolean
        return types.Array(element, ndim, layout, readonly=not mutable, aligned=aligned)
    if tag == "N":
        return types.none
    if tag == "S":
        return types.boolean if code[1] == "bool" else from_dtype(np.dtype(code[1]))
    if tag == "U":
        return types.UniTuple(_decode(code[2]), code[1])
    return types.Tuple(tuple(_decode(item) for item in code[1]))


def spec(kinds: Sequence) -> str | None:
    """The JSON spelling of a kernel's argument types, or None where one of them is not a
    kind frames carry (the kernel is then called on its tuple)."""
    codes = [_encode(kind) for kind in kinds]
    if None in codes or sys.byteorder != "little":
        return None
    try:
        _size_align(_arguments_type(kinds))
    except TypeError:  # a scalar without a layout here (float16): the tuple path
        return None
    if tuple(_decode(code) for code in codes) != tuple(kinds):
        return None  # a kind the codes do not round-trip: never guess
    return json.dumps(codes, separators=(",", ":"))


def kinds_of(text: str) -> tuple:
    """The argument types a :func:`spec` spells."""
    return tuple(_decode(code) for code in json.loads(text))


# -- layout: where each native value lies in a frame ---------------------------------------


def _data_type(kind):
    return cpu_target.target_context.data_model_manager[kind].get_data_type()


def _size_align(llvm_type) -> tuple[int, int]:
    """The size and alignment of an LLVM type under the natural alignment of x86-64 and
    AArch64 (checked against LLVM's own data layout in the tests)."""
    if isinstance(llvm_type, ir.IntType):
        size = max(1, llvm_type.width // 8)
        return size, size
    if isinstance(llvm_type, ir.FloatType):
        return 4, 4
    if isinstance(llvm_type, ir.DoubleType):
        return 8, 8
    if isinstance(llvm_type, ir.PointerType):
        return WORD, WORD
    if isinstance(llvm_type, ir.ArrayType):
        size, align = _size_align(llvm_type.element)
        return size * llvm_type.count, align
    if isinstance(llvm_type, ir.LiteralStructType):
        offset, widest = 0, 1
        for element in llvm_type.elements:
            size, align = _size_align(element)
            offset = -(-offset // align) * align + size
            widest = max(widest, align)
        return -(-offset // widest) * widest, widest
    raise TypeError(f"no frame layout for the LLVM type {llvm_type}")


def _leaves(llvm_type, offset: int) -> list[tuple[int, object]]:
    """(offset, scalar LLVM type) of every scalar inside ``llvm_type`` laid out at
    ``offset``, in the order of its elements."""
    if isinstance(llvm_type, ir.ArrayType):
        size = _size_align(llvm_type.element)[0]
        return [
            leaf
            for index in range(llvm_type.count)
            for leaf in _leaves(llvm_type.element, offset + index * size)
        ]
    if isinstance(llvm_type, ir.LiteralStructType):
        leaves = []
        for element in llvm_type.elements:
            size, align = _size_align(element)
            offset = -(-offset // align) * align
            leaves += _leaves(element, offset)
            offset += size
        return leaves
    return [(offset, llvm_type)]


def _arguments_type(kinds):
    return ir.LiteralStructType([_data_type(kind) for kind in kinds])


# -- packing, in Python --------------------------------------------------------------------


def _scalars(kind, value) -> list:
    """The scalars of ``value``'s native data, in the order of its data type's leaves."""
    if isinstance(kind, types.Array):
        interface = value.__array_interface__
        strides = value.strides
        return [0, 0, value.size, value.itemsize, interface["data"][0], *value.shape, *strides]
    if isinstance(kind, types.NoneType):
        return [0]
    if isinstance(kind, types.BaseTuple):
        return [
            scalar
            for item, part in zip(kind.types, value, strict=True)
            for scalar in _scalars(item, part)
        ]
    return [value]


def _write(buffer: bytearray, offset: int, llvm_type, value) -> None:
    if isinstance(llvm_type, ir.FloatType):
        buffer[offset : offset + 4] = np.float32(value).tobytes()
    elif isinstance(llvm_type, ir.DoubleType):
        buffer[offset : offset + 8] = np.float64(value).tobytes()
    else:
        size = _size_align(llvm_type)[0]
        value = int(value)
        buffer[offset : offset + size] = (value % (1 << (8 * size))).to_bytes(size, "little")


def _arrays(value) -> list[np.ndarray]:
    if isinstance(value, tuple):
        return [array for item in value for array in _arrays(item)]
    return [value] if isinstance(value, np.ndarray) else []


@dataclass(eq=False)
class FrameSet:
    """The frames of some kernels' argument tuples, packed one after another in ``buffer``:
    ``slots[index]`` is (byte offset, spec) of the tuple ``index`` of those given."""

    buffer: np.ndarray
    slots: dict[int, tuple[int, str]]
    arrays: tuple[np.ndarray, ...]
    writeable: tuple[bool, ...]

    @property
    def address(self) -> int:
        return int(self.buffer.__array_interface__["data"][0])

    def still_valid(self) -> bool:
        """Whether every array is still the Numba type it was packed as: an ndarray's type
        can change after it is made only through its ``writeable`` flag. (An array whose
        ``shape`` or ``strides`` attribute is assigned in place keeps its old ones in the
        frame; graphc's bound arrays are never reshaped so.)"""
        return all(
            array.flags.writeable == flag
            for array, flag in zip(self.arrays, self.writeable, strict=True)
        )


def frame_set(argument_tuples: Sequence[tuple], framed: Sequence[bool]) -> FrameSet:
    """The frames of the tuples ``framed`` marks and whose types have a spec (the others
    get no slot)."""
    slots, chunks, arrays, offset = {}, [], [], 0
    for index, (arguments, wanted) in enumerate(zip(argument_tuples, framed, strict=True)):
        if not wanted:
            continue
        kinds = argument_types(arguments)
        text = spec(kinds)
        if text is None:
            continue
        struct = _arguments_type(kinds)
        size = -(-_size_align(struct)[0] // WORD) * WORD
        chunk = bytearray(size)
        scalars = [
            s for kind, value in zip(kinds, arguments, strict=True) for s in _scalars(kind, value)
        ]
        leaves = _leaves(struct, 0)
        if len(leaves) != len(scalars):
            raise AssertionError(f"frame of {kinds}: {len(leaves)} slots, {len(scalars)} values")
        for (where, llvm_type), value in zip(leaves, scalars, strict=True):
            _write(chunk, where, llvm_type, value)
        slots[index] = (offset, text)
        chunks.append(bytes(chunk))
        arrays += _arrays(arguments)
        offset += size
    buffer = np.frombuffer(b"".join(chunks) or bytes(WORD), dtype=np.int64).copy()
    writeable = tuple(bool(array.flags.writeable) for array in arrays)
    return FrameSet(buffer, slots, tuple(arrays), writeable)


# -- reading a frame, in the generated code ------------------------------------------------


def _load(builder, base, llvm_type, offset: int):
    """The value of ``llvm_type`` at ``base + offset`` (``base`` an i8*), read leaf by leaf
    at the offsets :func:`_leaves` gives, which are the ones the frame was packed at."""
    if isinstance(llvm_type, (ir.ArrayType, ir.LiteralStructType)):
        value = ir.Constant(llvm_type, ir.Undefined)
        if isinstance(llvm_type, ir.ArrayType):
            size = _size_align(llvm_type.element)[0]
            parts = [(llvm_type.element, offset + i * size) for i in range(llvm_type.count)]
        else:
            parts, at = [], offset
            for element in llvm_type.elements:
                size, align = _size_align(element)
                at = -(-at // align) * align
                parts.append((element, at))
                at += size
        for position, (element, at) in enumerate(parts):
            value = builder.insert_value(value, _load(builder, base, element, at), position)
        return value
    pointer = builder.gep(base, [ir.Constant(ir.IntType(64), offset)])
    return builder.load(builder.bitcast(pointer, llvm_type.as_pointer()))


def _typed(entry_type, address_type, text_type, extras):
    if not isinstance(text_type, types.StringLiteral):
        return None
    kinds = kinds_of(text_type.literal_value)

    def codegen(context, builder, signature, values):
        entry_value, address, _, *extra_values = values
        base = builder.inttoptr(address, ir.IntType(8).as_pointer())
        offset, call_values = 0, []
        for kind in kinds:
            model = context.data_model_manager[kind]
            size, align = _size_align(model.get_data_type())
            offset = -(-offset // align) * align
            data = _load(builder, base, model.get_data_type(), offset)
            call_values.append(model.from_data(builder, data))
            offset += size
        emit_entry_call(context, builder, entry_value, kinds, call_values, extras, extra_values)
        return context.get_dummy_value()

    return types.none(entry_type, address_type, text_type, *extras), codegen


@intrinsic(prefer_literal=True)
def call_frame(typingctx, entry_pair, address, text):
    """Call the kernel at ``entry_pair = (address, check)`` on the arguments in the frame at
    ``address``, whose types the literal ``text`` spells (:func:`spec`)."""
    return _typed(entry_pair, address, text, ())


@intrinsic(prefer_literal=True)
def call_frame_counted(typingctx, entry_pair, address, text, counter, training):
    """``call_frame`` with the Dropout counter and the training flag after the frame's
    arguments."""
    return _typed(entry_pair, address, text, (counter, training))
