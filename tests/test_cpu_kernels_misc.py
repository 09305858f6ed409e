"""CPU kernels of the reductions, the indexing ops, the loss heads and Dropout against the
NumPy reference executor.

Each case builds a symbol, evaluates it with the reference, lowers the node under test and
runs its kernel on the reference's input values into NaN-filled outputs and workspace
(``cpu_helpers.run_kernel``): float64 must agree to rtol 1e-10, float32 to rtol 1e-4.
Shapes include size-1 and prime dimensions, and some inputs are non-contiguous views.
``fast_tanh``, the float32 tanh the elementwise and LSTM kernels share, is checked against
its stated error bound."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from cpu_helpers import call_kernel, find_node, kernel_arguments, node_spec, run_kernel

import graphc as gc
import graphc.codegen_cpu.indexing  # noqa: F401 - registers the lowerings under test
import graphc.codegen_cpu.softmax_loss  # noqa: F401
from graphc.backend.lowering import NodeSpec, lower
from graphc.backend.reduction_layout import ReductionLayout, reduction_layout
from graphc.codegen_cpu.scalar_functions import FAST_TANH_FLOAT32_MAX_RELATIVE_ERROR, fast_tanh
from graphc.ir.evaluate import evaluate_entries
from graphc.ir.symbol import apply_op

DTYPES = [np.float64, np.float32]
TOLERANCE = {np.dtype(np.float64): (1e-10, 1e-12), np.dtype(np.float32): (1e-4, 1e-5)}

a, b, c = gc.Variable("a"), gc.Variable("b"), gc.Variable("c")
idx = gc.Variable("idx")


def assert_matches(got: list, want: list) -> None:
    assert len(got) == len(want)
    for index, (value, expected) in enumerate(zip(got, want)):
        assert value.shape == expected.shape, (
            f"output {index}: shape {value.shape} != {expected.shape}"
        )
        assert value.dtype == expected.dtype, (
            f"output {index}: dtype {value.dtype} != {expected.dtype}"
        )
        rtol, atol = TOLERANCE.get(expected.dtype, (0, 0))
        np.testing.assert_allclose(value, expected, rtol=rtol, atol=atol, err_msg=f"output {index}")


def check(symbol, node, inputs, dtype=np.float64, **run_options):
    got, want = run_kernel(symbol, node, inputs, dtype=dtype, **run_options)
    assert_matches(got, want)
    return got, want


def normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# -- reductions --------------------------------------------------------------------------------

# (shape, axis, keepdims): size-1 and prime dimensions, every kind of axis, reductions that
# are one run of axes (a single layout) and ones that are not (read through a transpose),
# and lengths past one block of 128 in both the per-element and the whole-row path.
REDUCE_CASES = [
    ((1,), None, False),
    ((1,), 0, True),
    ((), None, False),
    ((7, 1, 3), None, True),
    ((7, 1, 3), 1, False),
    ((7, 1, 3), -1, True),
    ((7, 1, 3), (0, 2), False),
    ((2, 3, 5), 0, False),
    ((2, 3, 5), -2, True),
    ((2, 3, 5), (0, 2), True),
    ((2, 3, 5), (2, 0), False),
    ((2, 3, 5), (1, 2), False),
    ((2, 3, 5), (), False),
    ((3, 1, 5, 2), (0, 2), False),
    ((2, 1001), -1, False),
    ((301, 7), 0, False),
    ((3, 131, 2, 5), (1, 2), True),
    ((131, 3, 2), (0, 2), False),
]


# Every case of sum in both dtypes; max and min share one kernel, so each takes one dtype.
REDUCE_OPS = [("sum", np.float64), ("sum", np.float32), ("max", np.float64), ("min", np.float32)]


@pytest.mark.parametrize("op, dtype", REDUCE_OPS, ids=str)
@pytest.mark.parametrize("shape, axis, keepdims", REDUCE_CASES, ids=str)
def test_reduction(op, shape, axis, keepdims, dtype):
    symbol = getattr(gc, op)(a, axis=axis, keepdims=keepdims)
    check(symbol, op, {"a": normal(*shape)}, dtype)


# Views the runtime may hand a kernel: transposed, zero-stride broadcast, reversed.
STRIDED_INPUTS = {
    "transposed": lambda: normal(5, 3, 2).transpose(2, 1, 0),
    "broadcast": lambda: np.broadcast_to(normal(1, 3, 1), (2, 3, 5)),
    "reversed": lambda: normal(2, 3, 10)[::-1, :, ::-2],
}


@pytest.mark.parametrize("view", STRIDED_INPUTS)
@pytest.mark.parametrize("op, axis", [("sum", None), ("sum", (0, 2)), ("max", 1)], ids=str)
def test_reduction_of_strided_input(view, op, axis):
    data = STRIDED_INPUTS[view]()
    assert not data.flags.c_contiguous
    check(getattr(gc, op)(a, axis=axis), op, {"a": data})


def test_extremum_propagates_nan():
    data = normal(3, 4)
    data[1, 2] = np.nan
    for op in ("max", "min"):
        got, want = check(getattr(gc, op)(a, axis=1), op, {"a": data})
        assert np.isnan(got[0][1]) and not np.isnan(got[0][[0, 2]]).any()


@pytest.mark.parametrize(
    "shape, like",
    [
        ((2, 3, 5), (3, 1)),
        ((2, 3, 5), (1,)),
        ((2, 3, 5), ()),
        ((7, 1, 3), (7, 1, 3)),
        ((2, 3, 5), (2, 1, 5)),
        ((300, 7), (7,)),
    ],
    ids=str,
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_to_like(shape, like, dtype):
    symbol = gc.sum_to_like(a, b)
    check(symbol, "sum_to_like", {"a": normal(*shape), "b": np.zeros(like)}, dtype)


@pytest.mark.parametrize(
    "shape, axis", [((2, 3, 5), None), ((2, 3, 5), (0, 2)), ((7, 1, 3), -1), ((1,), 0)], ids=str
)
def test_size(shape, axis):
    check(gc.size_array(a, axis=axis), "_size", {"a": normal(*shape)}, np.float32)


@pytest.mark.parametrize(
    "count, shape, dtype",
    [
        (1, (1,), np.float64),
        (2, (7, 1, 3), np.float32),
        (3, (2, 3, 5), np.float64),
        (5, (7, 1, 3), np.float32),
    ],
    ids=str,
)
def test_add_n(count, shape, dtype):
    names = [f"x{k}" for k in range(count)]
    symbol = gc.add_n(*[gc.Variable(name) for name in names])
    inputs = {name: normal(*shape, seed=k) for k, name in enumerate(names)}
    check(symbol, "add_n", inputs, dtype)


def test_add_n_of_strided_inputs():
    inputs = {"a": normal(3, 5), "b": normal(5, 3).T, "c": np.broadcast_to(normal(1, 5), (3, 5))}
    check(gc.add_n(a, b, c), "add_n", inputs)


def test_sum_over_rows_gives_each_column_its_own_tree_sum():
    """The whole-row path (sum over axis 0 of (N, H)) adds, in every column, exactly what
    the per-element path adds for that column alone: the results are equal bit for bit."""
    data = (normal(1000, 13) * 10.0 ** normal(1000, 13, seed=1)).astype(np.float32)
    by_rows, _ = run_kernel(gc.sum(a, axis=0), "sum", {"a": data}, dtype=None)
    for column in range(data.shape[1]):
        alone, _ = run_kernel(
            gc.sum(a), "sum", {"a": np.ascontiguousarray(data[:, column])}, dtype=None
        )
        assert by_rows[0][column] == alone[0][()]


@numba.njit(cache=True)
def naive_float32_sum(values):
    total = np.float32(0.0)
    for value in values:
        total += value
    return total


def test_sum_of_ten_million_float32_is_accurate_and_deterministic():
    rng = np.random.default_rng(0)
    n = 10**7
    values = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)).astype(np.float32)
    exact = math.fsum(values.astype(np.float64))
    f32 = np.dtype(np.float32)
    spec = NodeSpec(
        "sum", "total", {"axis": None, "keepdims": False}, ((n,),), (f32,), ((),), (f32,)
    )
    kernel = lower(spec)
    workspace = [np.full(shape, np.nan, dtype) for shape, dtype in kernel.workspace]
    results = []
    for _ in range(2):
        out = np.full((), np.nan, np.float32)
        kernel.fn(*kernel.arguments((values,), (out,), tuple(workspace)))
        results.append(out.copy())
    tree_error = abs(float(results[0]) - exact) / abs(exact)
    naive_error = abs(float(naive_float32_sum(values)) - exact) / abs(exact)
    print(f"relative error: tree {tree_error:.3g}, naive float32 {naive_error:.3g}")
    assert tree_error <= 1e-6
    assert naive_error > 1e-6
    assert results[0].tobytes() == results[1].tobytes()


def test_reduction_layouts():
    layout = reduction_layout
    assert layout((300, 7), (0,)) == ReductionLayout(None, 1, 300, 7)
    assert layout((7, 1, 3), (0, 1)) == ReductionLayout(None, 1, 7, 3)
    assert layout((2, 3, 5), (0, 2)).order == (1, 0, 2)
    assert layout((2, 3, 5), ()) == ReductionLayout(None, 1, 1, 30)


# -- indexing ----------------------------------------------------------------------------------


def integers(high, *shape, seed=0):
    return np.random.default_rng(seed).integers(0, high, shape).astype(np.float64)


@pytest.mark.parametrize("index_shape", [(1,), (7, 1, 3), (2, 3, 5)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding(index_shape, dtype):
    symbol = gc.Embedding(idx, a, input_dim=11, output_dim=5)
    check(symbol, "Embedding", {"idx": integers(11, *index_shape), "a": normal(11, 5)}, dtype)


def test_embedding_reads_strided_weight_and_indices():
    symbol = gc.Embedding(idx, a, input_dim=7, output_dim=3)
    inputs = {"idx": integers(7, 5, 4).T, "a": normal(3, 7).T}
    check(symbol, "Embedding", inputs)


@pytest.mark.parametrize("index_shape", [(1,), (7, 1, 3), (40,)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_backward_adds_repeated_rows_as_the_reference(index_shape, dtype):
    attrs = {"input_dim": 3, "output_dim": 5}
    symbol = apply_op("_embedding_backward", [a, idx], attrs)
    inputs = {"a": normal(*index_shape, 5), "idx": integers(3, *index_shape)}
    got, want = check(symbol, "_embedding_backward", inputs, dtype)
    assert got[0].tobytes() == want[0].tobytes()


@pytest.mark.parametrize("index_shape", [(1,), (7, 1, 3)], ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_one_hot(index_shape, dtype):
    symbol = gc.one_hot(idx, depth=5, on_value=2.5, off_value=-1.0, dtype=dtype)
    check(symbol, "one_hot", {"idx": integers(5, *index_shape)})


PICK_CASES = [
    ((7, 1, 3), -1, False),
    ((7, 1, 3), 0, True),
    ((2, 3, 5), 1, False),
    ((2, 3, 5), -3, True),
    ((1,), 0, False),
]


@pytest.mark.parametrize("shape, axis, keepdims", PICK_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_pick_and_its_backward(shape, axis, keepdims, dtype):
    index_shape = tuple(1 if i == axis % len(shape) else d for i, d in enumerate(shape))
    if not keepdims:
        index_shape = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    index = integers(shape[axis], *index_shape)
    attrs = {"axis": axis, "keepdims": keepdims}
    check(gc.pick(a, idx, **attrs), "pick", {"a": normal(*shape), "idx": index}, dtype)
    backward = apply_op("_pick_backward", [b, idx, a], attrs)
    inputs = {"b": normal(*index_shape), "idx": index, "a": normal(*shape)}
    check(backward, "_pick_backward", inputs, dtype)


def test_pick_reads_strided_data():
    data = normal(5, 3, 2).transpose(2, 1, 0)
    check(gc.pick(a, idx, axis=1), "pick", {"a": data, "idx": integers(3, 2, 5)})


_EMBEDDING = gc.Embedding(idx, a, input_dim=4, output_dim=2)

# (symbol, the node's op, inputs, the kernel's message): out of range, negative,
# fractional and NaN indices are refused, never clipped.
BAD_INDEX_CASES = [
    (
        _EMBEDDING,
        "Embedding",
        {"idx": [[0.0, 4.0]], "a": normal(4, 2)},
        "Embedding: index element 1 is not an integer in [0, 4)",
    ),
    (
        _EMBEDDING,
        "Embedding",
        {"idx": [[-1.0]], "a": normal(4, 2)},
        "Embedding: index element 0 is not an integer in [0, 4)",
    ),
    (
        _EMBEDDING,
        "Embedding",
        {"idx": [[2.0], [1.5]], "a": normal(4, 2)},
        "Embedding: index element 1 is not an integer in [0, 4)",
    ),
    (
        _EMBEDDING,
        "Embedding",
        {"idx": [[np.nan]], "a": normal(4, 2)},
        "Embedding: index element 0 is not an integer in [0, 4)",
    ),
    (
        gc.one_hot(idx, depth=3),
        "one_hot",
        {"idx": [0.0, 3.0]},
        "one_hot: index element 1 is not an integer in [0, 3)",
    ),
    (
        gc.pick(a, idx, axis=1),
        "pick",
        {"a": normal(2, 3), "idx": [2.0, 0.5]},
        "pick: index element 1 is not an integer in [0, 3)",
    ),
]


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
@pytest.mark.parametrize(
    "symbol, op, inputs, message", BAD_INDEX_CASES, ids=[case[3] for case in BAD_INDEX_CASES]
)
def test_bad_index_raises_instead_of_clipping(symbol, op, inputs, message):
    arrays = {name: np.asarray(value, dtype=np.float64) for name, value in inputs.items()}
    with pytest.raises(ValueError):
        gc.evaluate(symbol, arrays)  # the reference refuses it too
    values = evaluate_entries(symbol, {name: np.zeros_like(v) for name, v in arrays.items()})
    node = find_node(symbol, op)
    spec = node_spec(node, values)
    kernel_inputs = [arrays[entry.node.name] for entry in node.inputs]
    with pytest.raises(ValueError) as raised:
        call_kernel(lower(spec), spec, kernel_inputs, step=0)
    assert str(raised.value) == message


# -- loss heads and copies ---------------------------------------------------------------------

SOFTMAX_CASES = [
    ((1,), {}),
    ((7, 1, 3), {}),
    ((2, 3, 5), {"preserve_shape": True}),
    ((3, 301), {}),
    ((2, 3, 5, 7), {"multi_output": True}),
    ((2, 200, 3), {"multi_output": True}),
    ((7, 1), {"multi_output": True}),
]


@pytest.mark.parametrize("shape, attrs", SOFTMAX_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_output(shape, attrs, dtype):
    symbol = gc.SoftmaxOutput(a, b, **attrs)
    # Offsets of +-1000 would overflow exp without the maximum subtracted.
    data = normal(*shape) * 5 + 1000 * np.sign(normal(*shape, seed=1))
    got, _ = check(symbol, "SoftmaxOutput", {"a": data, "b": labels_for(symbol, shape)}, dtype)
    assert np.all(np.isfinite(got[0]))


def labels_for(symbol, shape):
    (_, label_shape), _, _ = symbol.infer_shape(a=shape)
    return np.zeros(label_shape)


def test_softmax_output_of_strided_data():
    symbol = gc.SoftmaxOutput(a, b)
    check(symbol, "SoftmaxOutput", {"a": normal(5, 3).T, "b": labels_for(symbol, (3, 5))})


@pytest.mark.parametrize("head", ["LinearRegressionOutput", "LogisticRegressionOutput"])
@pytest.mark.parametrize("shape", [(1,), (7, 1, 3)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_regression_outputs(head, shape, dtype):
    data = normal(*shape) * 30  # sigmoid of +-100 must neither overflow nor lose its value
    check(getattr(gc, head)(a, b), head, {"a": data, "b": normal(*shape, seed=1)}, dtype)


@pytest.mark.parametrize("op", ["MakeLoss", "BlockGrad"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_copies(op, dtype):
    check(getattr(gc, op)(a), op, {"a": normal(7, 1, 3)}, dtype)
    check(getattr(gc, op)(a), op, {"a": normal(3, 7).T.astype(dtype)}, dtype)


# (attributes, is_train, step, shape, dtype); the step past 2**32 checks that only its
# low 32 bits enter the hash, as in the reference.
DROPOUT_CASES = [
    ({"p": 0.5}, True, 0, (40, 13), np.float32),
    ({"p": 0.5}, True, 0, (40, 13), np.float64),
    ({"p": 0.3}, True, 7, (7, 1, 3), np.float32),
    ({"p": 0.3}, False, 7, (7, 1, 3), np.float64),
    ({"p": 0.25, "mode": "always"}, False, 3, (1,), np.float32),
    ({"p": 0.25, "mode": "always"}, True, 2**33 + 5, (40, 13), np.float32),
    ({"p": 0.0}, True, 4, (7, 1, 3), np.float32),
]


@pytest.mark.parametrize("attrs, is_train, step, shape, dtype", DROPOUT_CASES, ids=str)
def test_dropout_mask_is_the_reference_mask(attrs, is_train, step, shape, dtype):
    symbol = gc.Dropout(a, seed=12345, name="drop", **attrs)
    got, want = run_kernel(
        symbol, "Dropout", {"a": normal(*shape)}, is_train=is_train, step=step, dtype=dtype
    )
    for value, expected in zip(got, want):
        assert value.dtype == expected.dtype
        assert value.tobytes() == expected.tobytes()


def test_dropout_masks_differ_between_steps_and_inference_is_identity():
    symbol = gc.Dropout(a, p=0.5, name="drop")
    data = {"a": normal(50, 20)}
    first, _ = run_kernel(symbol, "Dropout", data, is_train=True, step=1)
    second, _ = run_kernel(symbol, "Dropout", data, is_train=True, step=2)
    inference, _ = run_kernel(symbol, "Dropout", data, is_train=False)
    assert not np.array_equal(first[1], second[1])
    assert 0.4 < np.mean(first[1] == 0) < 0.6
    assert np.array_equal(inference[0], data["a"]) and np.all(inference[1] == 1)


# -- no allocation -----------------------------------------------------------------------------

# One kernel of each shape of code path, strided inputs included.
ALLOCATION_CASES = [
    (gc.sum(a, axis=(0, 2)), {"a": normal(3, 4, 200)}),
    (gc.sum(a, axis=0), {"a": normal(300, 4)}),
    (gc.max(a, axis=1), {"a": normal(3, 4, 5).transpose(2, 1, 0)}),
    (gc.sum_to_like(a, b), {"a": normal(3, 4), "b": np.zeros(4)}),
    (gc.size_array(a, axis=0), {"a": normal(3, 4)}),
    (gc.add_n(a, b), {"a": normal(3, 4), "b": normal(4, 3).T}),
    (gc.Embedding(idx, a, input_dim=5, output_dim=3), {"idx": [1.0, 4.0], "a": normal(5, 3)}),
    (
        apply_op("_embedding_backward", [a, idx], {"input_dim": 5, "output_dim": 3}),
        {"a": normal(2, 3), "idx": [1.0, 1.0]},
    ),
    (gc.one_hot(idx, depth=4), {"idx": [1.0, 3.0]}),
    (gc.pick(a, idx, axis=1), {"a": normal(2, 3), "idx": [1.0, 2.0]}),
    (
        apply_op("_pick_backward", [b, idx, a], {"axis": 1}),
        {"a": normal(2, 3), "b": normal(2), "idx": [1.0, 2.0]},
    ),
    (gc.SoftmaxOutput(a, b, multi_output=True), {"a": normal(2, 300, 3), "b": np.zeros((2, 3))}),
    (gc.LogisticRegressionOutput(a, b), {"a": normal(2, 3), "b": np.zeros((2, 3))}),
    (gc.BlockGrad(a), {"a": normal(3, 2).T}),
    (gc.Dropout(a, p=0.4), {"a": normal(20, 3)}),
]


@pytest.mark.parametrize(
    "symbol, inputs",
    ALLOCATION_CASES,
    ids=[f"{symbol.entries[0].node.op}{k}" for k, (symbol, _) in enumerate(ALLOCATION_CASES)],
)
def test_kernels_allocate_nothing(symbol, inputs):
    """Numba's allocation counter grows by one per array argument (the wrapper it makes to
    pass a NumPy array in from Python) and by nothing else."""
    from numba.core.runtime import rtsys

    arrays = {name: np.asarray(value, dtype=np.float64) for name, value in inputs.items()}
    values = evaluate_entries(symbol, arrays, is_train=True, step=3)
    node = symbol.entries[0].node
    spec = node_spec(node, values)
    kernel = lower(spec)
    args = kernel_arguments(kernel, spec, [values[entry] for entry in node.inputs], step=3)
    kernel.fn(*args)
    before = rtsys.get_allocation_stats().alloc
    kernel.fn(*args)
    extra = (
        rtsys.get_allocation_stats().alloc - before - sum(isinstance(x, np.ndarray) for x in args)
    )
    assert extra == 0, f"{node.op} allocates {extra} times per call"


# -- fast_tanh, the float32 tanh of the elementwise and LSTM kernels --------------------------


@numba.njit
def _fast_tanh_of_each(values, out):
    for index in range(values.size):
        out[index] = fast_tanh(values[index])


def _every_float32(low: float, high: float) -> np.ndarray:
    """Every float32 in [low, high), for 0 <= low < high, in order of bit pattern."""
    first, last = np.float32(low).view(np.uint32), np.float32(high).view(np.uint32)
    return np.arange(first, last, dtype=np.uint32).view(np.float32)


def test_float32_fast_tanh_is_within_its_stated_bound():
    """The measured bound holds on a dense grid over the whole line, subnormals included, and
    on every float32 around the measured worst case (x = 5.827876); it is tight there."""
    grid = np.concatenate(
        [
            np.linspace(0, 12, 1_000_001),
            np.geomspace(1.4e-45, 40, 400_000),
            _every_float32(5.5, 6.0),
        ]
    ).astype(np.float32)
    values = np.concatenate([grid, -grid])
    result = np.empty_like(values)
    _fast_tanh_of_each(values, result)
    exact = np.tanh(values.astype(np.float64))
    nonzero = exact != 0
    relative = np.abs(result[nonzero] - exact[nonzero]) / np.abs(exact[nonzero])
    worst = np.max(relative)
    assert (
        0.99 * FAST_TANH_FLOAT32_MAX_RELATIVE_ERROR < worst < FAST_TANH_FLOAT32_MAX_RELATIVE_ERROR
    )
    np.testing.assert_array_equal(result[~nonzero], 0.0)
    assert np.max(np.abs(result)) <= 1.0
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype=np.float32)
    result = np.empty_like(special)
    _fast_tanh_of_each(special, result)
    np.testing.assert_array_equal(result, [0.0, -0.0, 1.0, -1.0, np.nan])
    assert np.signbit(result[1])


def test_float64_fast_tanh_is_libm_tanh():
    values = np.linspace(-20, 20, 10_001)
    result = np.empty_like(values)
    _fast_tanh_of_each(values, result)
    np.testing.assert_allclose(result, np.tanh(values), rtol=4e-16, atol=0)


def test_ranks_draw_their_own_dropout_masks():
    net = gc.Dropout(gc.Variable("data"), p=0.5)
    masks = []
    for stream in (0, 1, 0):
        exe = net.simple_bind(gc.cpu(), grad_req="null", data=(64, 8))
        exe.dropout_stream = stream  # what fit sets to the rank
        exe.arg_dict["data"][:] = 1.0
        masks.append(np.array(exe.forward(is_train=True)[0]))
    assert not np.array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], masks[2])
