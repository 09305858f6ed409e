"""CPU kernels of Convolution, Pooling and their gradient primitives against the NumPy
reference executor.

Each case builds the op and its gradient graph with the graphc API (a random head gradient
``dy``), evaluates every node with the reference, and runs the kernel of each forward and
backward node on the reference's inputs: outputs start as NaN (integers as their maximum)
so an element the kernel does not write fails, and a second call must allocate nothing and
give the same result.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from cpu_helpers import node_spec, poisoned
from numba.core.runtime import _nrt_python, rtsys

import graphc as gc
from graphc.backend.lowering import lower
from graphc.ir.errors import BackendError
from graphc.ir.evaluate import evaluate_entries
from graphc.ir.node import NodeOutput

CONV_OPS = ("Convolution", "_conv_backward_data", "_conv_backward_weight")
POOL_OPS = ("Pooling", "_max_pool_backward", "_avg_pool_backward")


# -- helpers ------------------------------------------------------------------------------------


def strided(array: np.ndarray) -> np.ndarray:
    """The same values as a non-contiguous view (every other element of a wider array)."""
    wide = np.empty(array.shape[:-1] + (2 * array.shape[-1],), dtype=array.dtype)
    view = wide[..., ::2]
    view[...] = array
    return view


def assert_matches(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Integers exactly; floats to 1e-10 (float64) or 1e-4 (float32) of the largest value."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    if expected.dtype.kind in "iu":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
        return
    rtol = 1e-10 if expected.dtype == np.float64 else 1e-4
    finite = np.abs(expected[np.isfinite(expected)])
    scale = float(finite.max(initial=0.0)) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


@numba.njit
def _no_op(*arrays):
    """Does nothing: what passing arrays in from Python costs Numba's allocation counter."""


def allocations(function, arrays) -> int:
    """Numba runtime allocations during ``function(*arrays)``."""
    # NUMBA_NRT_STATS (conftest) counts only where Numba's runtime starts by compiling; a
    # parallel kernel loaded from the cache starts it without, so ask directly.
    _nrt_python.memsys_enable_stats()
    before = rtsys.get_allocation_stats().alloc
    function(*arrays)
    return rtsys.get_allocation_stats().alloc - before


def check_kernels(
    symbol, inputs: dict, ops, options=None, views: bool = False, read_only: bool = False
) -> list:
    """Run the kernel of every node of ``symbol`` whose op is in ``ops`` against the
    reference; return the kernels' specs and workspaces. ``views`` passes every input to the
    kernels as a non-contiguous view, ``read_only`` as a read-only array."""
    values = evaluate_entries(symbol, inputs)
    checked = []
    for node in symbol.graph.nodes:
        if node.op not in ops:
            continue
        spec = node_spec(node, values, options)
        kernel = lower(spec)
        arguments = [values[entry] for entry in node.inputs]
        if views:
            arguments = [strided(array) for array in arguments]
        if read_only:
            arguments = [array.copy() for array in arguments]
            for array in arguments:
                array.flags.writeable = False
        outputs = [poisoned(shape, dtype) for shape, dtype in zip(spec.out_shapes, spec.out_dtypes)]
        workspace = [poisoned(shape, dtype) for shape, dtype in kernel.workspace]
        arrays = kernel.arguments(tuple(arguments), tuple(outputs), tuple(workspace))
        kernel.fn(*arrays)
        for index, output in enumerate(outputs):
            assert_matches(output, values[NodeOutput(node, index)], f"{node.op} output {index}")

        first = [output.copy() for output in outputs]
        assert allocations(kernel.fn, arrays) == allocations(_no_op, arrays), f"{node.op} allocated"
        for again, once in zip(outputs, first):
            np.testing.assert_array_equal(again, once, err_msg=f"{node.op} called twice")
        checked.append((spec, kernel))
    assert sorted({spec.op for spec, _ in checked}) == sorted(
        op for op in ops if any(node.op == op for node in symbol.graph.nodes)
    )
    return checked


def conv_graph(kernel, stride, pad, num_filter, no_bias):
    """Convolution of x and its gradients with respect to x, weight (and bias) for dy."""
    conv = gc.Convolution(
        gc.Variable("x"),
        kernel=kernel,
        stride=stride,
        pad=pad,
        num_filter=num_filter,
        no_bias=no_bias,
        name="conv",
    )
    wrt = ["x", "conv_weight"] + ([] if no_bias else ["conv_bias"])
    return conv, gc.Group([conv, *gc.grad(conv, wrt, head_grads=[gc.Variable("dy")])])


def conv_inputs(conv, data_shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    arg_shapes, out_shapes, _ = conv.infer_shape(x=data_shape)
    names = conv.list_arguments()
    arrays = {name: rng.standard_normal(shape) for name, shape in zip(names, arg_shapes)}
    arrays["dy"] = rng.standard_normal(out_shapes[0])
    return {name: array.astype(dtype) for name, array in arrays.items()}


def pool_graph(attrs):
    pool = gc.Pooling(gc.Variable("x"), name="pool", **attrs)
    return pool, gc.Group([pool, *gc.grad(pool, ["x"], head_grads=[gc.Variable("dy")])])


def pool_inputs(pool, data, seed=0):
    rng = np.random.default_rng(seed)
    out_shape = pool.infer_shape(x=data.shape)[1][0]
    return {"x": data, "dy": rng.standard_normal(out_shape).astype(data.dtype)}


# -- convolution --------------------------------------------------------------------------------

# (data shape, kernel, stride, pad, num_filter, no_bias)
CONV_CASES = {
    "1x1x7x7-k3": ((1, 1, 7, 7), (3, 3), (1, 1), (0, 0), 2, False),
    "3x3x11x5-k3-s2-p1": ((3, 3, 11, 5), (3, 3), (2, 2), (1, 1), 4, False),
    "3x3x5x11-k2x3-s1x2-p1x0-nobias": ((3, 3, 5, 11), (2, 3), (1, 2), (1, 0), 3, True),
    "1x3x1x1-k1": ((1, 3, 1, 1), (1, 1), (1, 1), (0, 0), 2, False),
    "3x1x7x5-k1-s2": ((3, 1, 7, 5), (1, 1), (2, 2), (0, 0), 1, False),
    "1x3x1x7-k2x3-s2-p1-nobias": ((1, 3, 1, 7), (2, 3), (2, 2), (1, 1), 2, True),
    "3x3x11x11-k3-s2x1-p1": ((3, 3, 11, 11), (3, 3), (2, 1), (1, 1), 5, False),
    # No padding and unit stride along the width: conv.py's dense loops, which move 8
    # columns at a time and the rest one by one. W' = 12 (8 + 4) with stride 2 down the
    # height; W' = 16 (two blocks, no rest) from one channel, 10 rows that 3 parts split
    # mid-image; W' = 8 at 3 images of 5 rows, which 2 parts split mid-image.
    "3x3x10x13-k3x2-s2x1": ((3, 3, 10, 13), (3, 2), (2, 1), (0, 0), 4, False),
    "2x1x6x20-k2x5-nobias": ((2, 1, 6, 20), (2, 5), (1, 1), (0, 0), 3, True),
    "3x2x9x12-k5": ((3, 2, 9, 12), (5, 5), (1, 1), (0, 0), 2, False),
}
CONV_PARAMS = [
    pytest.param(case, np.float64, id=f"{name}-f64") for name, case in CONV_CASES.items()
]
CONV_PARAMS += [
    pytest.param(CONV_CASES[name], np.float32, id=f"{name}-f32")
    for name in ("3x3x11x5-k3-s2-p1", "3x3x5x11-k2x3-s1x2-p1x0-nobias", "3x3x10x13-k3x2-s2x1")
]


# Kernels split their rows into one part per thread (codegen_cpu/threads.py); split_small
# makes them split these small shapes too, so every case also runs its parts: 2 and 3 of
# them over batches of 1 and 3 images (an image split between parts, a part of one image).
THREADS = [
    pytest.param({"num_threads": 1}, id="1-thread"),
    pytest.param({"num_threads": 2, "split_small": True}, id="2-threads"),
    pytest.param({"num_threads": 3, "split_small": True}, id="3-threads"),
]


@pytest.mark.parametrize("options", THREADS)
@pytest.mark.parametrize(("case", "dtype"), CONV_PARAMS)
def test_convolution_kernels_match_reference(case, dtype, options):
    data_shape, kernel, stride, pad, num_filter, no_bias = case
    conv, group = conv_graph(kernel, stride, pad, num_filter, no_bias)
    check_kernels(group, conv_inputs(conv, data_shape, dtype), CONV_OPS, options)


@pytest.mark.parametrize("name", ["3x3x11x5-k3-s2-p1", "3x3x10x13-k3x2-s2x1"])
@pytest.mark.parametrize("kind", ["views", "read_only"])
def test_convolution_kernels_read_non_contiguous_and_read_only_inputs(name, kind):
    data_shape, kernel, stride, pad, num_filter, no_bias = CONV_CASES[name]
    conv, group = conv_graph(kernel, stride, pad, num_filter, no_bias)
    inputs = conv_inputs(conv, data_shape, np.float64)
    check_kernels(group, inputs, CONV_OPS, **{kind: True})


def test_convolution_kernels_with_no_input_channels():
    """Every output is the bias and every gradient zero; the dense loops, which count a
    chunk's columns by its tap rows, have none and leave the work to the general ones."""
    conv, group = conv_graph((3, 3), (1, 1), (0, 0), 2, False)
    check_kernels(group, conv_inputs(conv, (2, 0, 5, 5), np.float64), CONV_OPS)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bound", [4096, 15000])
def test_im2col_workspace_stays_within_the_bound(bound, threads):
    """A batch whose column matrix (49896 bytes) is 3-12x the bound runs in chunks and still
    matches: one output row per chunk at 4096 bytes; at 15000, chunks of 7 output rows that
    cross the boundaries between images (11 output rows each)."""
    data_shape = (3, 3, 11, 7)
    conv, group = conv_graph((3, 3), (1, 1), (1, 1), 4, False)
    taps, output_positions = 3 * 3 * 3, 3 * 11 * 7
    full_cols_bytes = taps * output_positions * 8
    assert full_cols_bytes > 3 * bound
    inputs = conv_inputs(conv, data_shape, np.float64)
    options = {"im2col_bytes": bound, "num_threads": threads, "split_small": True}
    checked = check_kernels(group, inputs, CONV_OPS, options=options)
    for spec, kernel in checked:
        declared = sum(
            np.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in kernel.workspace
        )
        assert declared <= bound, f"{spec.op} declares {declared} bytes of workspace"
        parts = kernel.prepare((), (), ())[-2][-1]  # the descriptor ends with the parts
        # At 4096 bytes two parts' workspace does not fit and a pass runs as one part.
        assert parts == (threads if bound == 15000 else 1), f"{spec.op} in {parts} parts"


def test_im2col_bound_too_small_for_one_output_row_is_an_error():
    conv, group = conv_graph((3, 3), (1, 1), (1, 1), 4, False)
    values = evaluate_entries(group, conv_inputs(conv, (1, 3, 11, 7), np.float64))
    node = next(node for node in group.graph.nodes if node.op == "Convolution")
    with pytest.raises(BackendError, match="conv \\(Convolution\\).*im2col_bytes bound of 256"):
        lower(node_spec(node, values, {"im2col_bytes": 256}))


# -- pooling ------------------------------------------------------------------------------------

MAX = {"pool_type": "max"}
AVG = {"pool_type": "avg"}
FULL = {"pooling_convention": "full"}
EXCLUDE_PAD = {"count_include_pad": False}
POOL_CASES = {
    "max-3x3x7x7-k2-s2": ((3, 3, 7, 7), {**MAX, "kernel": (2, 2), "stride": (2, 2)}),
    "max-1x3x11x5-k3-s2-p1": (
        (1, 3, 11, 5),
        {**MAX, "kernel": (3, 3), "stride": (2, 2), "pad": (1, 1)},
    ),
    "max-3x1x7x5-k2-s2-full": ((3, 1, 7, 5), {**MAX, **FULL, "kernel": (2, 2), "stride": (2, 2)}),
    "max-3x3x5x7-global": ((3, 3, 5, 7), {**MAX, "global_pool": True}),
    "max-1x1x1x7-k2x3-s1x2-p1": (
        (1, 1, 1, 7),
        {**MAX, "kernel": (2, 3), "stride": (1, 2), "pad": (1, 1)},
    ),
    "max-3x3x1x1-k1": ((3, 3, 1, 1), {**MAX, "kernel": (1, 1)}),
    "avg-3x3x7x5-k3-p1": ((3, 3, 7, 5), {**AVG, "kernel": (3, 3), "pad": (1, 1)}),
    "avg-3x3x7x5-k3-p1-exclude-pad": (
        (3, 3, 7, 5),
        {**AVG, **EXCLUDE_PAD, "kernel": (3, 3), "pad": (1, 1)},
    ),
    "avg-1x3x11x7-k3-s2-p1-full": (
        (1, 3, 11, 7),
        {**AVG, **FULL, "kernel": (3, 3), "stride": (2, 2), "pad": (1, 1)},
    ),
    "avg-1x3x11x7-k3-s2-p1-full-exclude-pad": (
        (1, 3, 11, 7),
        {**AVG, **FULL, **EXCLUDE_PAD, "kernel": (3, 3), "stride": (2, 2), "pad": (1, 1)},
    ),
    "avg-3x3x5x7-global": ((3, 3, 5, 7), {**AVG, "global_pool": True}),
    "avg-1x1x11x11-k2-s3": ((1, 1, 11, 11), {**AVG, "kernel": (2, 2), "stride": (3, 3)}),
}
POOL_PARAMS = [
    pytest.param(case, np.float64, id=f"{name}-f64") for name, case in POOL_CASES.items()
]
POOL_PARAMS += [
    pytest.param(POOL_CASES[name], np.float32, id=f"{name}-f32")
    for name in ("max-1x3x11x5-k3-s2-p1", "avg-1x3x11x7-k3-s2-p1-full-exclude-pad")
]


@pytest.mark.parametrize("options", THREADS)
@pytest.mark.parametrize(("case", "dtype"), POOL_PARAMS)
def test_pooling_kernels_match_reference(case, dtype, options):
    data_shape, attrs = case
    pool, group = pool_graph(attrs)
    data = np.random.default_rng(1).standard_normal(data_shape).astype(dtype)
    check_kernels(group, pool_inputs(pool, data), POOL_OPS, options)


# The kernel has its own unrolled copies for 2x2 and 3x3 windows and a general one, and
# 2x2 windows at stride 2 without padding read their four cells directly.
@pytest.mark.parametrize(
    "kernel, stride, pad",
    [
        ((3, 3), (2, 2), (1, 1)),
        ((2, 2), (2, 2), (0, 0)),
        ((2, 2), (1, 1), (0, 0)),
        ((2, 3), (1, 2), (1, 0)),
    ],
)
def test_max_pooling_argmax_is_the_first_winner_among_ties_and_nans(kernel, stride, pad):
    """Small integers tie in most windows; a NaN wins its windows; -inf windows still
    point at an input cell."""
    data = np.random.default_rng(2).integers(0, 3, (2, 2, 7, 7)).astype(np.float64)
    data[0, 0, 2, 3] = np.nan
    data[1, 1, :3, :3] = -np.inf
    pool, group = pool_graph({**MAX, "kernel": kernel, "stride": stride, "pad": pad})
    check_kernels(group, pool_inputs(pool, data), POOL_OPS)
