"""Matrix products through Numba's BLAS binding: FullyConnected, dot, batch_dot.

``np.dot(a, b, out)`` inside ``njit`` calls BLAS gemm and writes into the planned output,
so a step allocates nothing; transposed operands are passed as ``.T`` views, which BLAS
reads without a copy.
"""

from __future__ import annotations

import numba
import numpy as np

from graphc.backend.lowering import Kernel, NodeSpec, lowering
from graphc.codegen_cpu.target import TARGET

_JIT = {"cache": True, "error_model": "numpy"}


@numba.njit(**_JIT)
def _add_bias_rows(out, bias):
    rows, cols = out.shape
    for i in range(rows):
        for j in range(cols):
            out[i, j] += bias[j]


@numba.njit(**_JIT)
def fully_connected(data, weight, bias, out):
    """out = data (N, K) @ weight.T + bias, with data flattened to (N, K)."""
    rows = out.shape[0] if out.ndim == 2 else out.size // out.shape[-1]
    flat = data.reshape(rows, weight.shape[1])
    out2 = out.reshape(rows, weight.shape[0])
    np.dot(flat, weight.T, out2)
    _add_bias_rows(out2, bias)


@numba.njit(**_JIT)
def fully_connected_no_bias(data, weight, out):
    rows = out.shape[0] if out.ndim == 2 else out.size // out.shape[-1]
    flat = data.reshape(rows, weight.shape[1])
    np.dot(flat, weight.T, out.reshape(rows, weight.shape[0]))


@lowering(TARGET, "FullyConnected")
def lower_fully_connected(spec: NodeSpec) -> Kernel:
    if spec.attrs["no_bias"]:
        return Kernel(fully_connected_no_bias, name="fully_connected_no_bias")
    return Kernel(fully_connected, name="fully_connected")


@numba.njit(**_JIT)
def _dot_nn(a, b, out):
    rows = a.size // a.shape[-1]
    np.dot(a.reshape(rows, a.shape[-1]), b, out.reshape(rows, b.shape[1]))


@numba.njit(**_JIT)
def _dot_nt(a, b, out):
    rows = a.size // a.shape[-1]
    np.dot(a.reshape(rows, a.shape[-1]), b.T, out.reshape(rows, b.shape[0]))


@numba.njit(**_JIT)
def _dot_tn(a, b, out):
    np.dot(a.T, b, out)


@numba.njit(**_JIT)
def _dot_tt(a, b, out):
    np.dot(a.T, b.T, out)


_DOT = {
    (False, False): _dot_nn,
    (False, True): _dot_nt,
    (True, False): _dot_tn,
    (True, True): _dot_tt,
}


@lowering(TARGET, "dot")
def lower_dot(spec: NodeSpec) -> Kernel:
    key = (spec.attrs["transpose_a"], spec.attrs["transpose_b"])
    return Kernel(_DOT[key], name=f"dot_{'t' if key[0] else 'n'}{'t' if key[1] else 'n'}")


@numba.njit(**_JIT)
def _batch_dot_nn(a, b, out):
    for index in range(out.shape[0]):
        np.dot(a[index], b[index], out[index])


@numba.njit(**_JIT)
def _batch_dot_nt(a, b, out):
    for index in range(out.shape[0]):
        np.dot(a[index], b[index].T, out[index])


@numba.njit(**_JIT)
def _batch_dot_tn(a, b, out):
    for index in range(out.shape[0]):
        np.dot(a[index].T, b[index], out[index])


@numba.njit(**_JIT)
def _batch_dot_tt(a, b, out):
    for index in range(out.shape[0]):
        np.dot(a[index].T, b[index].T, out[index])


_BATCH_DOT = {
    (False, False): _batch_dot_nn,
    (False, True): _batch_dot_nt,
    (True, False): _batch_dot_tn,
    (True, True): _batch_dot_tt,
}


@lowering(TARGET, "batch_dot")
def lower_batch_dot(spec: NodeSpec) -> Kernel:
    key = (spec.attrs["transpose_a"], spec.attrs["transpose_b"])
    return Kernel(_BATCH_DOT[key], name="batch_dot")
