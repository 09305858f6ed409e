"""GEMM for the kernels: BLAS ``?gemm`` on 2-D views, with alpha, beta and leading dimensions.

``np.dot(a, b, out)`` inside ``njit`` covers whole contiguous matrices only: a block of
columns, or the transpose of one, is not contiguous, and there is no ``beta`` to add into
an output. The kernels that split a GEMM between threads need both: an LSTM's weight
gradient ``dz.T @ x`` splits the rows of its output, which are columns of ``dz``, and a
part's partial sum is added into, not copied. So ``gemm`` calls the same BLAS entry point
Numba's ``np.dot`` calls (``numba_xxgemm`` in Numba's helper library, which reaches SciPy's
``cython_blas``; no ctypes address is baked into the code, so Numba's on-disk cache keeps
it), with the leading dimensions read from the views' strides.

Every operand must have unit stride along one of its two axes (a row block of a C array,
a column block, or the transpose of either); anything else is a ValueError, never a copy.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

_CHAR = ir.IntType(8)
_VOID_P = ir.IntType(8).as_pointer()


@intrinsic
def _xxgemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """numba_xxgemm(kind, trans_a, trans_b, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc)
    in column-major BLAS terms; returns its status (0 when it ran)."""
    dtype = c.dtype
    signature = types.int32(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, sig, args):
        trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc = args
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(
            ir.IntType(32),
            [_CHAR, _CHAR, _CHAR, intp, intp, intp, _VOID_P, _VOID_P, intp,
             _VOID_P, intp, _VOID_P, _VOID_P, intp],
        )  # fmt: skip
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        kind = ir.Constant(_CHAR, ord("s" if dtype == types.float32 else "d"))
        scalar = context.get_value_type(dtype)
        alpha_slot = cgutils.alloca_once_value(
            builder, builder.fpext(alpha, scalar) if alpha.type != scalar else alpha
        )
        beta_slot = cgutils.alloca_once_value(
            builder, builder.fpext(beta, scalar) if beta.type != scalar else beta
        )
        arrays = [
            context.make_array(sig.args[index])(context, builder, value)
            for index, value in ((6, a), (8, b), (11, c))
        ]
        data = [builder.bitcast(array.data, _VOID_P) for array in arrays]

        def cast(value, index):
            return context.cast(builder, value, sig.args[index], types.intp)

        return builder.call(
            fn,
            (
                kind,
                builder.trunc(cast(trans_a, 0), _CHAR),
                builder.trunc(cast(trans_b, 1), _CHAR),
                cast(m, 2), cast(n, 3), cast(k, 4),
                builder.bitcast(alpha_slot, _VOID_P), data[0], cast(lda, 7),
                data[1], cast(ldb, 9),
                builder.bitcast(beta_slot, _VOID_P), data[2], cast(ldc, 12),
            ),
        )  # fmt: skip

    if not (isinstance(c, types.Array) and c.dtype in (types.float32, types.float64)):
        return None
    if a.dtype != dtype or b.dtype != dtype or alpha != dtype or beta != dtype:
        return None
    return signature, codegen


@numba.njit(cache=True)
def _blas_operand(matrix):
    """(BLAS transpose flag, leading dimension) of a 2-D view, as BLAS reads the row-major
    matrix it is: 'n' for unit stride along rows (its rows are BLAS's columns), 't' for
    unit stride down columns (a transposed view)."""
    itemsize = matrix.itemsize
    rows, cols = matrix.shape
    row_stride, col_stride = matrix.strides
    if cols <= 1 or col_stride == itemsize:
        leading = row_stride // itemsize if rows > 1 else max(cols, 1)
        if leading >= max(cols, 1) and row_stride % itemsize == 0:
            return ord("n"), leading
    if rows <= 1 or row_stride == itemsize:
        leading = col_stride // itemsize if cols > 1 else max(rows, 1)
        if leading >= max(rows, 1) and col_stride % itemsize == 0:
            return ord("t"), leading
    raise ValueError("gemm: an operand has no unit stride along either axis")


@intrinsic
def _any_layout(typingctx, matrix):
    """``matrix`` typed as a 2-D array of any layout: the same value (every layout has one
    data model), so that the BLAS call below compiles once per dtype rather than once per
    combination of C, F and strided views its callers pass (``_blas_operand`` compiled
    three times, ``gemm`` twice, in a cold MLP start). Read-only stays read-only."""
    if not isinstance(matrix, types.Array) or matrix.ndim != 2:
        return None
    general = types.Array(matrix.dtype, 2, "A", readonly=not matrix.mutable)

    def codegen(context, builder, signature, values):
        context.nrt.incref(builder, matrix, values[0])  # a new reference, as returned
        return values[0]

    return general(matrix), codegen


@numba.njit(cache=True)
def gemm(alpha, a, b, beta, c):
    """c = alpha * a @ b + beta * c for 2-D views a (m, k), b (k, n), c (m, n); c must have
    unit stride along its rows. beta = 0 ignores what c held (NaN included)."""
    _gemm(alpha, _any_layout(a), _any_layout(b), beta, _any_layout(c))


@numba.njit(cache=True)
def _gemm(alpha, a, b, beta, c):
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k or c.shape[0] != m or c.shape[1] != n:
        raise ValueError("gemm: the operands' shapes do not chain")
    if m == 0 or n == 0:
        return
    if k == 0:  # an empty sum: BLAS would read no operand, and their strides mean nothing
        for i in range(m):
            for j in range(n):
                c[i, j] = 0 if beta == 0 else beta * c[i, j]
        return
    trans_c, ldc = _blas_operand(c)
    if trans_c != ord("n"):
        raise ValueError("gemm: the output must have unit stride along its rows")
    # Row-major c = a @ b is column-major c.T = b.T @ a.T: b is BLAS's first operand.
    trans_b, ldb = _blas_operand(b)
    trans_a, lda = _blas_operand(a)
    status = _xxgemm(trans_b, trans_a, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc)
    if status != 0:
        raise RuntimeError("gemm: BLAS failed")


@numba.njit(cache=True)
def row_range(part, parts, rows):
    """Rows [first, last) of part ``part`` when ``rows`` rows are split into ``parts``."""
    return part * rows // parts, (part + 1) * rows // parts
