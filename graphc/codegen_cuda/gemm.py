"""GEMM on the GPU: a shared-memory tiled kernel with register blocking, used by
``FullyConnected`` and ``dot``, and by the convolution's three passes as implicit GEMMs
(``conv.py``: the same kernel whose tile loads gather from the image).

Each block computes a BM x BN tile of C = op(A) op(B) (+ bias along columns); each of its
256 threads computes a TM x TN sub-tile held in registers (``cuda.local.array``), reading
A's and B's BK-deep slices from shared memory, so each value loaded from global memory
serves TM or TN multiply-adds (the 2-D block tiling of Simon Boehm's SGEMM series). Tiles
are compile-time constants of the generated source; the sizes (M, N, K) are read from the
arrays at run time, so one kernel per dtype, transposition and bias serves every shape (a
fused epilogue's kernel, ``fused.lower_epilogue``, has its sizes as constants: one per
shape).
Edge tiles read zeros past the matrix and write only inside it. The sum over K runs in
the arrays' dtype, in a fixed order: the same bits on every run.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, replace

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
MAX_GRID_Z = 2 if SIMULATED else 65535
"""Likewise the most blocks along z, over which a batched form loops its products."""
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
    """Products ``z`` (``batch_dot``), which the expressions read: ``batches`` of them."""
    batches: str = "1"


def matrix_form(trans_a: bool, trans_b: bool, bias: bool) -> GemmForm:
    """``out = op(a) @ op(b) (+ bias[None, :])`` over 2-D arrays, sizes read at run time."""
    return GemmForm(
        params="a, b, bias, out" if bias else "a, b, out",
        sizes=("out.shape[0]", "out.shape[1]", "a.shape[0]" if trans_a else "a.shape[1]"),
        a_at="a[k, m]" if trans_a else "a[m, k]",
        b_at="b[n, k]" if trans_b else "b[k, n]",
        a_k_fast=not trans_a,
        b_k_fast=trans_b,
        store="out[m, n] = value + bias[n]" if bias else "out[m, n] = value",
    )


def render_gemm(
    dtype: np.dtype, trans_a: bool, trans_b: bool, bias: bool, tiles: tuple = TILES
) -> str:
    """Source of ``kernel(a, b[, bias], out)``: out = op(a) @ op(b) (+ bias[None, :])."""
    return render_tiled(dtype, matrix_form(trans_a, trans_b, bias), tiles)


def render_tiled(
    dtype: np.dtype, form: GemmForm, tiles: tuple = TILES, fastmath: bool = False
) -> str:
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
    loop = f"""    for row0 in range(cuda.blockIdx.y * BM, rows, cuda.gridDim.y * BM):
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
    if form.batched:
        # The products z are looped over as the row tiles are, so that the grid's z stays
        # within CUDA's limit: the same body, one level deeper.
        loop = (
            f"    for z in range(cuda.blockIdx.z, {form.batches}, cuda.gridDim.z):\n"
            + textwrap.indent(loop, "    ")
        )
    return f"""import math

import numpy as np
from numba import cuda, {kind}

BM, BN, BK, TM, TN = {BM}, {BN}, {BK}, {TM}, {TN}
THREADS = {THREADS}
{form.prelude}

@cuda.jit(cache=True, fastmath={bool(fastmath)})
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
    col0 = cuda.blockIdx.x * BN
    my_row = (t // (BN // TN)) * TM
    my_col = (t % (BN // TN)) * TN
{loop}"""


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
    dtype,
    form: GemmForm,
    rows: int,
    cols: int,
    tiles: tuple = TILES,
    batch: int = 1,
    check: Callable | None = None,
    fastmath: bool = False,
) -> Launch:
    """The configured launch of ``form``'s kernel for a (rows, cols) result: a block per
    tile of C's columns along the grid's x (up to 2**31 - 1 blocks), row tiles along y (a
    block loops over them past ``MAX_ROW_TILES``), and ``batch`` products along z for a
    batched form."""
    source = render_tiled(dtype, form, tiles, fastmath)
    bm, bn, _, tm, tn = tiles
    grid = (max(1, math.ceil(cols / bn)), max(1, min(MAX_ROW_TILES, math.ceil(rows / bm))))
    if form.batched:
        grid = (*grid, max(1, min(MAX_GRID_Z, batch)))
    block = ((bm // tm) * (bn // tn),)
    return Launch(load_kernel(source, "kernel", TARGET), grid, block, check=check)


@dataclass(frozen=True)
class GemmOp:
    """An op computed by the tiled GEMM kernel, in the parts a fused kernel reuses: the
    form without its store, ``result`` (the op's value at C's (m, n): the product, the bias
    added), ``index`` (lines giving that element's indices ``i0, i1, ...`` in the op's
    output), the launch's (rows, cols, batch), the form's parameters before the output and
    how the op's inputs become them, and how its output becomes the last one (``output_at``
    its element at (m, n))."""

    form: GemmForm
    result: str
    index: tuple[str, ...]
    rows: int
    cols: int
    depth: int
    batch: int
    operand_params: tuple[str, ...]
    operands: Callable[[tuple], tuple]
    output_at: str
    output: Callable[[object], object]


GEMM_OPS: dict[str, Callable[[NodeSpec], GemmOp]] = {}
"""The ops computed by the tiled GEMM, by name: what a fused kernel may take as its anchor,
computing its elementwise members in the GEMM's epilogue (``fused.py``)."""


def gemm_op(*ops: str):
    """Register the decorated ``NodeSpec -> GemmOp`` for ``ops``, and their lowerings."""

    def register(build: Callable[[NodeSpec], GemmOp]):
        for op in ops:
            GEMM_OPS[op] = build
            lowering(TARGET, op)(lower_gemm_op)
        return build

    return register


def lower_gemm_op(spec: NodeSpec) -> Kernel:
    dtype = uniform_float_dtype(spec)
    op = GEMM_OPS[spec.op](spec)
    store = f"{op.output_at} = {op.result}"
    form = replace(op.form, params=", ".join((*op.operand_params, "out")), store=store)
    launch = tiled_launch(dtype, form, op.rows, op.cols, batch=op.batch)

    def prepare(inputs, outputs, workspace):
        return (*op.operands(inputs), op.output(outputs[0]))

    return Kernel(fn=launch, name=f"cuda_{spec.op}", prepare=prepare)


def matrix_index(shape: tuple) -> tuple[str, ...]:
    """The indices of C's (m, n) in an output of ``shape`` that is C with its rows unravelled
    over the leading axes."""
    names = [f"i{axis}" for axis in range(len(shape))]
    lines = [f"{names[-1]} = n"]
    rest = "m"
    for axis in range(len(shape) - 2, 0, -1):
        lines += [f"{names[axis]} = {rest} % {shape[axis]}", f"rest = {rest} // {shape[axis]}"]
        rest = "rest"
    if len(shape) > 1:
        lines.append(f"i0 = {rest}")
    return tuple(lines)


@gemm_op("FullyConnected")
def fully_connected(spec: NodeSpec) -> GemmOp:
    """y = x W^T + b: x as (rows, K) rows (flattened, or over its last axis)."""
    data_shape, weight_shape = spec.in_shapes[0], spec.in_shapes[1]
    depth, hidden = weight_shape[1], weight_shape[0]
    rows = math.prod(data_shape) // depth if depth else math.prod(data_shape[:-1])
    has_bias = not spec.attrs["no_bias"]
    form = matrix_form(False, True, has_bias)

    def operands(inputs):
        data = inputs[0].reshape(rows, depth)
        return (data, inputs[1], inputs[2]) if has_bias else (data, inputs[1])

    return GemmOp(
        form=form,
        result="value + bias[n]" if has_bias else "value",
        index=matrix_index(tuple(spec.out_shapes[0])),
        rows=rows, cols=hidden, depth=depth, batch=1,
        operand_params=("a", "b", "bias") if has_bias else ("a", "b"),
        operands=operands,
        output_at="out[m, n]",
        output=lambda out: out.reshape(rows, hidden),
    )  # fmt: skip


@gemm_op("dot")
def matrix_product(spec: NodeSpec) -> GemmOp:
    """op(a) @ op(b), a read as (rows, K) (an N-d lhs over its last axis), b 2-D."""
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
    depth = a_shape[0] if trans_a else a_shape[1]
    return GemmOp(
        form=matrix_form(trans_a, trans_b, False),
        result="value",
        index=matrix_index(tuple(spec.out_shapes[0])),
        rows=rows, cols=cols, depth=depth, batch=1,
        operand_params=("a", "b"),
        operands=lambda inputs: (inputs[0].reshape(a_shape), inputs[1]),
        output_at="out[m, n]",
        output=lambda out: out.reshape(rows, cols),
    )  # fmt: skip


@gemm_op("batch_dot")
def batched_product(spec: NodeSpec) -> GemmOp:
    """op(a[z]) @ op(b[z]) for every z, one grid layer of tiles per product."""
    trans_a, trans_b = bool(spec.attrs["transpose_a"]), bool(spec.attrs["transpose_b"])
    batch, rows, cols = spec.out_shapes[0]
    left = spec.in_shapes[0]
    depth = left[1] if trans_a else left[2]
    form = GemmForm(
        params="",
        sizes=("out.shape[1]", "out.shape[2]", "left.shape[1]" if trans_a else "left.shape[2]"),
        a_at="left[z, k, m]" if trans_a else "left[z, m, k]",
        b_at="right[z, n, k]" if trans_b else "right[z, k, n]",
        a_k_fast=not trans_a,
        b_k_fast=trans_b,
        store="",
        batched=True,
        batches="out.shape[0]",
    )
    return GemmOp(
        form=form,
        result="value",
        index=("i0 = z", "i1 = m", "i2 = n"),
        rows=rows, cols=cols, depth=depth, batch=batch,
        operand_params=("left", "right"),
        operands=lambda inputs: tuple(inputs),
        output_at="out[z, m, n]",
        output=lambda out: out,
    )  # fmt: skip
