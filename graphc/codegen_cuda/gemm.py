"""GEMM on the GPU: a shared-memory tiled kernel with register blocking, used by
``FullyConnected`` and ``dot``, and by the convolution's three passes as implicit GEMMs
(``conv.py``: the same kernel whose tile loads gather from the image).

Each block computes a BM x BN tile of C = op(A) op(B) (+ bias along columns); each of its
256 threads computes a TM x TN sub-tile held in registers (``cuda.local.array``), reading
A's and B's BK-deep slices from shared memory, so each value loaded from global memory
serves TM or TN multiply-adds (the 2-D block tiling of Simon Boehm's SGEMM series). Tiles
are compile-time constants of the generated source; the sizes (M, N, K) are read from the
arrays at run time, so one kernel per dtype, transposition and bias serves every shape.
Edge tiles read zeros past the matrix and write only inside it. The sum over K runs in
the arrays' dtype, in a fixed order: the same bits on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from graphc.backend.lowering import Kernel, NodeSpec, lowering, uniform_float_dtype
from graphc.backend.source_cache import load_kernel
from graphc.codegen_cuda.target import SIMULATED, TARGET, Launch
from graphc.ir.errors import BackendError

GPU_TILES = (64, 64, 8, 4, 4)
"""(BM, BN, BK, TM, TN): a 64 x 64 tile of C per block of 256 threads, 4 x 4 per thread."""
SIMULATOR_TILES = (16, 16, 8, 2, 2)
"""The simulator's: 64 threads a block (tests/test_cuda_kernels.py runs GPU_TILES too)."""
TILES = SIMULATOR_TILES if SIMULATED else GPU_TILES
MAX_ROW_TILES = 2 if SIMULATED else 65535
"""The most blocks along the grid's y (CUDA's limit): each block loops over row tiles
``gridDim.y`` apart, so any number of rows fits (under the simulator, 2, so that the loop
runs and fewer threads start)."""


@dataclass(frozen=True)
class GemmForm:
    """How one tiled GEMM reads its operands and writes its result, as source text.

    The kernel computes C (rows x cols) = A (rows x depth) @ B (depth x cols) where
    ``a_at`` and ``b_at`` are expressions of ``m, k`` and ``k, n`` read only inside the
    matrices (zeros are loaded past them) and ``store`` is the statement that writes
    ``value`` (C at ``m, n``). ``a_k_fast``/``b_k_fast``: consecutive ``k`` are adjacent in
    memory (else consecutive ``m``/``n`` are), so that a warp's tile loads are coalesced.
    ``sizes`` are the expressions of (rows, cols, depth) over the parameters, read at run
    time; ``prelude`` is module code the expressions call (a convolution's gathers)."""

    params: str
    sizes: tuple[str, str, str]
    a_at: str
    b_at: str
    a_k_fast: bool
    b_k_fast: bool
    store: str
    prelude: str = ""
    batched: bool = False
    """One product per ``z`` = ``cuda.blockIdx.z`` (``batch_dot``), which the expressions read."""


def matrix_form(trans_a: bool, trans_b: bool, bias: bool) -> GemmForm:
    """``c = op(a) @ op(b) (+ bias[None, :])`` over 2-D arrays."""
    return GemmForm(
        params="a, b, bias, c" if bias else "a, b, c",
        sizes=("c.shape[0]", "c.shape[1]", "a.shape[0]" if trans_a else "a.shape[1]"),
        a_at="a[k, m]" if trans_a else "a[m, k]",
        b_at="b[n, k]" if trans_b else "b[k, n]",
        a_k_fast=not trans_a,
        b_k_fast=trans_b,
        store="c[m, n] = value + bias[n]" if bias else "c[m, n] = value",
    )


def render_gemm(
    dtype: np.dtype, trans_a: bool, trans_b: bool, bias: bool, tiles: tuple = TILES
) -> str:
    """Source of ``kernel(a, b[, bias], c)``: c = op(a) @ op(b) (+ bias[None, :])."""
    return render_tiled(dtype, matrix_form(trans_a, trans_b, bias), tiles)


def render_tiled(dtype: np.dtype, form: GemmForm, tiles: tuple = TILES) -> str:
    """Source of the tiled GEMM kernel of ``form`` (see the module docstring)."""
    BM, BN, BK, TM, TN = tiles  # noqa: N806 - the tile names of the literature
    THREADS = (BM // TM) * (BN // TN)  # noqa: N806
    if (BM * BK) % THREADS or (BK * BN) % THREADS:
        raise ValueError(f"tiles {tiles}: a tile load must split evenly over {THREADS} threads")
    kind = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}[np.dtype(dtype)]
    # The fastest-varying index of a tile load follows the contiguous axis of its matrix.
    a_split = ("kk = e % BK", "mm = e // BK") if form.a_k_fast else ("mm = e % BM", "kk = e // BM")
    b_split = ("kk = e % BK", "nn = e // BK") if form.b_k_fast else ("nn = e % BN", "kk = e // BN")
    zero = f"{kind}(0)"  # a bare 0 would make the load's value float64 for float32 data
    load_a = _tile_load(
        "a", (BM * BK) // THREADS, a_split, ("m", "mm", "row0", "rows"), form.a_at, zero
    )
    load_b = _tile_load(
        "b", (BK * BN) // THREADS, b_split, ("n", "nn", "col0", "cols"), form.b_at, zero
    )
    rows, cols, depth = form.sizes
    batch_line = "    z = cuda.blockIdx.z\n" if form.batched else ""
    return f"""import math

from numba import cuda, {kind}

BM, BN, BK, TM, TN = {BM}, {BN}, {BK}, {TM}, {TN}
THREADS = {THREADS}
{form.prelude}

@cuda.jit(cache=True)
def kernel({form.params}):
    rows = {rows}
    cols = {cols}
    depth = {depth}
    tile_a = cuda.shared.array((BK, BM), {kind})
    tile_b = cuda.shared.array((BK, BN), {kind})
    acc = cuda.local.array((TM, TN), {kind})
    col_a = cuda.local.array(TM, {kind})
    row_b = cuda.local.array(TN, {kind})
    t = cuda.threadIdx.x
{batch_line}    col0 = cuda.blockIdx.x * BN
    my_row = (t // (BN // TN)) * TM
    my_col = (t % (BN // TN)) * TN
    for row0 in range(cuda.blockIdx.y * BM, rows, cuda.gridDim.y * BM):
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = 0
        for k0 in range(0, depth, BK):
{load_a}{load_b}            cuda.syncthreads()
            for kk in range(BK):
                for i in range(TM):
                    col_a[i] = tile_a[kk, my_row + i]
                for j in range(TN):
                    row_b[j] = tile_b[kk, my_col + j]
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] += col_a[i] * row_b[j]
            cuda.syncthreads()
        for i in range(TM):
            m = row0 + my_row + i
            if m < rows:
                for j in range(TN):
                    n = col0 + my_col + j
                    if n < cols:
                        value = acc[i, j]
                        {form.store}
"""


def _tile_load(matrix: str, loads: int, split: tuple, axis: tuple, read: str, zero: str) -> str:
    """The lines that copy one BK-deep tile of ``matrix`` into shared memory: ``loads``
    elements per thread, index ``e`` split by ``split`` into the tile's (kk, ``axis[1]``),
    zeros past the matrix along ``axis`` (index, tile index, tile start, extent) or K."""
    index, tile_index, start, extent = axis
    return (
        f"            for load in range({loads}):\n"
        "                e = t + load * THREADS\n"
        f"                {split[0]}\n"
        f"                {split[1]}\n"
        f"                {index} = {start} + {tile_index}\n"
        "                k = k0 + kk\n"
        f"                tile_{matrix}[kk, {tile_index}] = {read} if {index} < {extent} and k < depth"
        f" else {zero}\n"
    )


def gemm_launch(
    dtype, trans_a: bool, trans_b: bool, bias: bool, rows: int, cols: int, tiles: tuple = TILES
) -> Launch:
    """The configured launch of the GEMM kernel for a (rows, cols) result."""
    return tiled_launch(dtype, matrix_form(trans_a, trans_b, bias), rows, cols, tiles)


def tiled_launch(
    dtype, form: GemmForm, rows: int, cols: int, tiles: tuple = TILES, batch: int = 1
) -> Launch:
    """The configured launch of ``form``'s kernel for a (rows, cols) result: a block per
    tile of C's columns along the grid's x (up to 2**31 - 1 blocks), row tiles along y (a
    block loops over them past ``MAX_ROW_TILES``), and ``batch`` products along z for a
    batched form."""
    source = render_tiled(dtype, form, tiles)
    bm, bn, _, tm, tn = tiles
    grid = (max(1, math.ceil(cols / bn)), max(1, min(MAX_ROW_TILES, math.ceil(rows / bm))))
    if form.batched:
        grid = (*grid, batch)
    return Launch(load_kernel(source, "kernel", TARGET), grid, ((bm // tm) * (bn // tn),))


@lowering(TARGET, "FullyConnected")
def lower_fully_connected(spec: NodeSpec) -> Kernel:
    """y = x W^T + b: x as (rows, K) rows (flattened, or over its last axis)."""
    dtype = uniform_float_dtype(spec)
    data_shape, weight_shape = spec.in_shapes[0], spec.in_shapes[1]
    depth = weight_shape[1]
    rows = math.prod(data_shape) // depth if depth else math.prod(data_shape[:-1])
    hidden = weight_shape[0]
    has_bias = not spec.attrs["no_bias"]
    launch = gemm_launch(dtype, False, True, has_bias, rows, hidden)

    def prepare(inputs, outputs, workspace):
        data = inputs[0].reshape(rows, depth)
        out = outputs[0].reshape(rows, hidden)
        return (data, inputs[1], inputs[2], out) if has_bias else (data, inputs[1], out)

    return Kernel(fn=launch, name="cuda_fully_connected", prepare=prepare)


@lowering(TARGET, "dot")
def lower_dot(spec: NodeSpec) -> Kernel:
    """op(a) @ op(b), a read as (rows, K) (an N-d lhs over its last axis), b 2-D."""
    dtype = uniform_float_dtype(spec)
    left, right = spec.in_shapes
    trans_a, trans_b = bool(spec.attrs["transpose_a"]), bool(spec.attrs["transpose_b"])
    if trans_a:
        a_shape = tuple(left)
    else:
        if len(left) < 1:
            raise BackendError(f"{spec.name} (dot): a 0-d lhs has no rows")
        a_shape = (math.prod(left[:-1]), left[-1])
    rows = a_shape[1] if trans_a else a_shape[0]
    cols = right[0] if trans_b else right[1]
    launch = gemm_launch(dtype, trans_a, trans_b, False, rows, cols)

    def prepare(inputs, outputs, workspace):
        return (inputs[0].reshape(a_shape), inputs[1], outputs[0].reshape(rows, cols))

    return Kernel(fn=launch, name="cuda_dot", prepare=prepare)


@lowering(TARGET, "batch_dot")
def lower_batch_dot(spec: NodeSpec) -> Kernel:
    """op(a[z]) @ op(b[z]) for every z, one grid layer of tiles per product."""
    dtype = uniform_float_dtype(spec)
    trans_a, trans_b = bool(spec.attrs["transpose_a"]), bool(spec.attrs["transpose_b"])
    batch, rows, cols = spec.out_shapes[0]
    form = GemmForm(
        params="left, right, c",
        sizes=("c.shape[1]", "c.shape[2]", "left.shape[1]" if trans_a else "left.shape[2]"),
        a_at="left[z, k, m]" if trans_a else "left[z, m, k]",
        b_at="right[z, n, k]" if trans_b else "right[z, k, n]",
        a_k_fast=not trans_a,
        b_k_fast=trans_b,
        store="c[z, m, n] = value",
        batched=True,
    )
    launch = tiled_launch(dtype, form, rows, cols, batch=batch)
    return Kernel(fn=launch, name="cuda_batch_dot")
