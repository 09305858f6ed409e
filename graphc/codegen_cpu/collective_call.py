"""Calling ``MPI_Allreduce`` from compiled code, through its address.

The compiled training loop of a data-parallel fit sums every step's gradients over the
ranks without returning to Python. The MPI library's address and handles are run-time
arguments (``runtime.communicator.MPICommunicator.native_allreduce``), never constants in
the generated code, so that code stays valid in Numba's disk cache across processes (a
ctypes function called from ``njit`` code would bake its address in and make the function
uncacheable).

``allreduce_sum(call, send, receive, count)`` with ``call = (address, float32 handle,
float64 handle, sum handle, communicator handle)`` sums the first ``count`` elements of
``send`` over the ranks into ``receive`` and returns MPI's error code. The handles are
``int`` in MPICH and pointers in Open MPI; they are passed as integers of that width, which
the C calling convention treats alike.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


@intrinsic
def allreduce_sum(typingctx, call, send, receive, count):
    """``MPI_Allreduce(send, receive, count, dtype, MPI_SUM, comm)``; see the module."""
    if not isinstance(call, types.BaseTuple) or len(call) != 5:
        return None
    if not isinstance(send, types.Array) or send != receive:
        return None
    if send.dtype not in (types.float32, types.float64):
        return None
    dtype_slot = 1 if send.dtype == types.float32 else 2

    def codegen(context, builder, signature, values):
        call_value, send_value, receive_value, count_value = values
        handle_types = [context.get_value_type(kind) for kind in call.types[1:]]
        address = builder.extract_value(call_value, 0)
        dtype = builder.extract_value(call_value, dtype_slot)
        operation = builder.extract_value(call_value, 3)
        communicator = builder.extract_value(call_value, 4)
        bytes_pointer = ir.IntType(8).as_pointer()
        pointers = [
            builder.bitcast(
                cgutils.create_struct_proxy(send)(context, builder, value=array).data,
                bytes_pointer,
            )
            for array in (send_value, receive_value)
        ]
        int32 = ir.IntType(32)
        function_type = ir.FunctionType(
            int32,
            [
                bytes_pointer,
                bytes_pointer,
                int32,
                handle_types[dtype_slot - 1],
                handle_types[2],
                handle_types[3],
            ],
        )
        function = builder.inttoptr(address, function_type.as_pointer())
        elements = builder.trunc(count_value, int32)
        return builder.call(function, [*pointers, elements, dtype, operation, communicator])

    return types.int32(call, send, receive, types.int64), codegen


__all__ = ["allreduce_sum"]
