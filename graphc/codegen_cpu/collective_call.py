"""Calling ``MPI_Allreduce`` from compiled code, through its address.

The compiled training loop of a data-parallel fit sums every step's gradients over the
ranks without returning to Python. The MPI library's address and handles are run-time
arguments (``runtime.communicator.MPICommunicator.native_allreduce``), never constants in
the generated code, so that code stays valid in Numba's disk cache across processes (a
ctypes function called from ``njit`` code would bake its address in and make the function
uncacheable).

``call`` is a ``backend.loop_plan.CollectiveCall`` (the functions' addresses and the
handles):

- ``allreduce_sum(call, send, receive, count)`` sums the first ``count`` elements of ``send``
  over the ranks into ``receive``; ``allreduce_sum_in_place(call, buffer, count)`` sums them
  where they are;
- ``iallreduce_sum(call, send, receive, count, requests, index)`` starts the same sum and
  leaves its request in ``requests[index]``;
- ``wait_all(call, requests, statuses, count)`` waits for the first ``count`` requests
  (``statuses``: bytes enough for as many ``MPI_Status``).

Each returns MPI's error code. The handles (requests too) are ``int`` in MPICH and pointers
in Open MPI; they are passed as integers of that width, which the C calling convention
treats alike.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from graphc.backend.loop_plan import CollectiveCall

CALL_SLOTS = len(CollectiveCall._fields)
ALLREDUCE, FLOAT32, FLOAT64, SUM, COMM, IALLREDUCE, WAITALL, IN_PLACE = (
    CollectiveCall._fields.index(name)
    for name in (
        "allreduce",
        "float32",
        "float64",
        "sum",
        "comm",
        "iallreduce",
        "waitall",
        "in_place",
    )
)

_BYTES = ir.IntType(8).as_pointer()
_INT32 = ir.IntType(32)


def _data(context, builder, kind, value):
    """The data pointer of an array value, as ``char *``."""
    data = cgutils.create_struct_proxy(kind)(context, builder, value=value).data
    return builder.bitcast(data, _BYTES)


def _sum_arguments(context, builder, call, call_value, send, values):
    """(argument types, arguments) of ``MPI_(I)allreduce``'s first six: send, receive,
    count, dtype, op, comm."""
    send_value, receive_value, count_value = values
    slot = FLOAT32 if send.dtype == types.float32 else FLOAT64
    kinds = [_BYTES, _BYTES, _INT32]
    kinds += [context.get_value_type(call.types[index]) for index in (slot, SUM, COMM)]
    arguments = [
        _data(context, builder, send, send_value),
        _data(context, builder, send, receive_value),
        builder.trunc(count_value, _INT32),
        *(builder.extract_value(call_value, index) for index in (slot, SUM, COMM)),
    ]
    return kinds, arguments


def _calls(call) -> bool:
    return isinstance(call, types.BaseTuple) and len(call) == CALL_SLOTS


def _summable(send, receive) -> bool:
    return (
        isinstance(send, types.Array)
        and send == receive
        and send.dtype in (types.float32, types.float64)
    )


def _function(builder, call_value, slot, result, kinds):
    address = builder.extract_value(call_value, slot)
    return builder.inttoptr(address, ir.FunctionType(result, kinds).as_pointer())


@intrinsic
def allreduce_sum(typingctx, call, send, receive, count):
    """``MPI_Allreduce(send, receive, count, dtype, MPI_SUM, comm)``; see the module."""
    if not _calls(call) or not _summable(send, receive):
        return None

    def codegen(context, builder, signature, values):
        call_value, *rest = values
        kinds, arguments = _sum_arguments(context, builder, call, call_value, send, rest)
        function = _function(builder, call_value, ALLREDUCE, _INT32, kinds)
        return builder.call(function, arguments)

    return types.int32(call, send, receive, types.int64), codegen


@intrinsic
def allreduce_sum_in_place(typingctx, call, buffer, count):
    """``MPI_Allreduce(MPI_IN_PLACE, buffer, count, dtype, MPI_SUM, comm)``."""
    if not _calls(call) or not _summable(buffer, buffer):
        return None

    def codegen(context, builder, signature, values):
        call_value, buffer_value, count_value = values
        kinds, arguments = _sum_arguments(
            context, builder, call, call_value, buffer, (buffer_value, buffer_value, count_value)
        )
        in_place = builder.extract_value(call_value, IN_PLACE)
        arguments[0] = builder.inttoptr(in_place, _BYTES)
        function = _function(builder, call_value, ALLREDUCE, _INT32, kinds)
        return builder.call(function, arguments)

    return types.int32(call, buffer, types.int64), codegen


@intrinsic
def iallreduce_sum(typingctx, call, send, receive, count, requests, index):
    """``MPI_Iallreduce(send, receive, count, dtype, MPI_SUM, comm, &requests[index])``."""
    if not _calls(call) or not _summable(send, receive) or not isinstance(requests, types.Array):
        return None

    def codegen(context, builder, signature, values):
        call_value, send_value, receive_value, count_value, requests_value, index_value = values
        kinds, arguments = _sum_arguments(
            context, builder, call, call_value, send, (send_value, receive_value, count_value)
        )
        base = cgutils.create_struct_proxy(requests)(context, builder, value=requests_value).data
        request = builder.gep(base, [index_value])
        kinds.append(request.type)
        function = _function(builder, call_value, IALLREDUCE, _INT32, kinds)
        return builder.call(function, [*arguments, request])

    return types.int32(call, send, receive, types.int64, requests, types.int64), codegen


@intrinsic
def wait_all(typingctx, call, requests, statuses, count):
    """``MPI_Waitall(count, requests, statuses)``."""
    if not _calls(call) or not isinstance(requests, types.Array):
        return None

    def codegen(context, builder, signature, values):
        call_value, requests_value, statuses_value, count_value = values
        first = cgutils.create_struct_proxy(requests)(context, builder, value=requests_value).data
        kinds = [_INT32, first.type, _BYTES]
        function = _function(builder, call_value, WAITALL, _INT32, kinds)
        arguments = [
            builder.trunc(count_value, _INT32),
            first,
            _data(context, builder, statuses, statuses_value),
        ]
        return builder.call(function, arguments)

    return types.int32(call, requests, statuses, types.int64), codegen


__all__ = ["allreduce_sum", "allreduce_sum_in_place", "iallreduce_sum", "wait_all"]
