"""Convolution and Pooling: worked examples, a naive-loop oracle, gradients and errors."""

from __future__ import annotations

import numpy as np
import pytest
from oracles import naive_convolution, naive_pooling

import graphc as gc
from graphc.ir.node import NodeOutput
from graphc.ir.registry import get_op
from graphc.ir.symbol import Symbol, apply_op

pytestmark = pytest.mark.unit

RNG_SEED = 0


def row(values) -> np.ndarray:
    """A 1-D example as a (1, 1, 1, N) float64 image."""
    return np.asarray(values, dtype=np.float64).reshape(1, 1, 1, -1)


def flat(array: np.ndarray) -> list:
    return array.reshape(-1).tolist()


def argmax_of(pool: Symbol) -> Symbol:
    """The hidden argmax output of a max Pooling node."""
    return Symbol([NodeOutput(pool.node, 1)])


# -- (a) Knet's 1-D examples ----------------------------------------------------------------

X7 = row(range(1, 8))
W123 = row([1, 2, 3])


@pytest.mark.parametrize(
    ("weight", "pad", "expected"),
    [
        ([1, 2, 3], (0, 0), [14, 20, 26, 32, 38]),
        ([3, 2, 1], (0, 0), [10, 16, 22, 28, 34]),
        ([3, 2, 1], (0, 1), [4, 10, 16, 22, 28, 34, 32]),
    ],
)
def test_convolution_is_cross_correlation(weight, pad, expected):
    conv = gc.Convolution(
        gc.Variable("x"), kernel=(1, 3), pad=pad, num_filter=1, no_bias=True, name="conv"
    )
    (out,) = gc.evaluate(conv, {"x": X7, "conv_weight": row(weight)})
    assert flat(out) == expected


def test_convolution_adds_bias_per_filter():
    conv = gc.Convolution(gc.Variable("x"), kernel=(1, 3), num_filter=2, name="conv")
    weight = np.stack([W123, 2 * W123]).reshape(2, 1, 1, 3)
    (out,) = gc.evaluate(conv, {"x": X7, "conv_weight": weight, "conv_bias": np.array([1.0, -1.0])})
    assert flat(out[0, 0]) == [15, 21, 27, 33, 39]
    assert flat(out[0, 1]) == [27, 39, 51, 63, 75]


X6 = row(range(1, 7))
KNET_WINDOW = {"kernel": (1, 2), "stride": (1, 2), "pad": (0, 1)}


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"pool_type": "max"}, [1, 3, 5, 6]),
        ({"pool_type": "avg", "count_include_pad": True}, [0.5, 2.5, 4.5, 3.0]),
        ({"pool_type": "avg", "count_include_pad": False}, [1.0, 2.5, 4.5, 6.0]),
    ],
)
def test_pooling_knet_examples(attrs, expected):
    pool = gc.Pooling(gc.Variable("x"), **KNET_WINDOW, **attrs)
    (out,) = gc.evaluate(pool, {"x": X6})
    assert flat(out) == expected


def test_max_pooling_argmax_is_a_hidden_int32_output():
    pool = gc.Pooling(gc.Variable("x"), **KNET_WINDOW, name="pool")
    assert pool.list_outputs() == ["pool_output"]
    (argmax,) = gc.evaluate(argmax_of(pool), {"x": X6})
    assert argmax.dtype == np.int32
    assert flat(argmax) == [0, 2, 4, 5]


def test_avg_pooling_has_no_hidden_output():
    pool = gc.Pooling(gc.Variable("x"), kernel=(1, 2), pool_type="avg", name="pool")
    assert pool.node.op == "Pooling"
    assert get_op("Pooling").num_outputs(pool.node.attrs) == 1


def test_full_convention_clips_the_last_window():
    x = row(range(1, 6))
    window = {"kernel": (1, 2), "stride": (1, 2), "pooling_convention": "full"}
    (high,) = gc.evaluate(gc.Pooling(gc.Variable("x"), **window), {"x": x})
    (mean,) = gc.evaluate(gc.Pooling(gc.Variable("x"), pool_type="avg", **window), {"x": x})
    (valid,) = gc.evaluate(gc.Pooling(gc.Variable("x"), kernel=(1, 2), stride=(1, 2)), {"x": x})
    assert flat(high) == [2, 4, 5]
    assert flat(mean) == [1.5, 3.5, 5.0]
    assert flat(valid) == [2, 4]


def test_global_pooling_ignores_the_kernel():
    x = np.arange(24.0).reshape(2, 3, 2, 2)
    (high,) = gc.evaluate(gc.Pooling(gc.Variable("x"), global_pool=True), {"x": x})
    (mean,) = gc.evaluate(
        gc.Pooling(gc.Variable("x"), kernel=(1, 1), global_pool=True, pool_type="avg"), {"x": x}
    )
    assert high.shape == mean.shape == (2, 3, 1, 1)
    np.testing.assert_array_equal(high[..., 0, 0], x.max(axis=(2, 3)))
    np.testing.assert_array_equal(mean[..., 0, 0], x.mean(axis=(2, 3)))


def test_convolution_creates_its_parameters():
    conv = gc.Convolution(gc.Variable("x"), kernel=(3, 2), num_filter=4, name="conv1")
    assert conv.list_arguments() == ["x", "conv1_weight", "conv1_bias"]
    args, outs, _ = conv.infer_shape(x=(2, 3, 7, 5))
    assert args == [(2, 3, 7, 5), (4, 3, 3, 2), (4,)]
    assert outs == [(2, 4, 5, 4)]


# -- (b) against naive loops ----------------------------------------------------------------


CONV_CASES = [
    # (N, C, H, W), num_filter, kernel, stride, pad
    ((1, 1, 1, 1), 1, (1, 1), (1, 1), (0, 0)),
    ((2, 3, 5, 7), 2, (3, 2), (1, 1), (0, 0)),
    ((2, 3, 7, 5), 3, (3, 3), (2, 2), (1, 1)),
    ((1, 2, 5, 11), 5, (2, 3), (2, 1), (1, 0)),
    ((3, 1, 13, 7), 2, (5, 3), (2, 2), (1, 1)),
    ((1, 1, 2, 3), 1, (3, 3), (2, 1), (1, 1)),
]


@pytest.mark.parametrize(("shape", "num_filter", "kernel", "stride", "pad"), CONV_CASES)
def test_convolution_matches_naive_loops(shape, num_filter, kernel, stride, pad):
    rng = np.random.default_rng(RNG_SEED)
    x = rng.standard_normal(shape)
    weight = rng.standard_normal((num_filter, shape[1]) + kernel)
    bias = rng.standard_normal(num_filter)
    conv = gc.Convolution(
        gc.Variable("x"), kernel=kernel, stride=stride, pad=pad, num_filter=num_filter, name="c"
    )
    (out,) = gc.evaluate(conv, {"x": x, "c_weight": weight, "c_bias": bias})
    np.testing.assert_allclose(out, naive_convolution(x, weight, bias, stride, pad), rtol=1e-12)


POOL_CASES = [
    # (N, C, H, W), kernel, stride, pad, pooling_convention
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0), "valid"),
    ((2, 3, 5, 7), (3, 2), (1, 1), (0, 0), "valid"),
    ((2, 3, 7, 5), (3, 3), (2, 2), (1, 1), "valid"),
    ((1, 2, 6, 11), (2, 3), (2, 1), (1, 0), "full"),
    ((3, 1, 12, 7), (5, 3), (2, 2), (1, 1), "full"),
    ((1, 1, 2, 4), (2, 2), (2, 2), (1, 1), "full"),
]
POOL_KINDS = [("max", True), ("avg", True), ("avg", False)]


@pytest.mark.parametrize(("shape", "kernel", "stride", "pad", "convention"), POOL_CASES)
@pytest.mark.parametrize(("pool_type", "count_include_pad"), POOL_KINDS)
def test_pooling_matches_naive_loops(
    shape, kernel, stride, pad, convention, pool_type, count_include_pad
):
    x = np.random.default_rng(RNG_SEED).standard_normal(shape)
    pool = gc.Pooling(
        gc.Variable("x"),
        kernel=kernel,
        stride=stride,
        pad=pad,
        pool_type=pool_type,
        count_include_pad=count_include_pad,
        pooling_convention=convention,
    )
    (out,) = gc.evaluate(pool, {"x": x})
    expected, expected_argmax = naive_pooling(
        x, kernel, stride, pad, pool_type, count_include_pad, convention
    )
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    if pool_type == "max":
        (argmax,) = gc.evaluate(argmax_of(pool), {"x": x})
        np.testing.assert_array_equal(argmax, expected_argmax)


def test_padding_never_wins_a_max():
    x = -np.ones((1, 1, 2, 2))
    (out,) = gc.evaluate(gc.Pooling(gc.Variable("x"), kernel=(2, 2), pad=(1, 1)), {"x": x})
    assert (out == -1).all()


# -- (c) gradients --------------------------------------------------------------------------

GRAD_TOLERANCE = 1e-6


def random_args(shapes: dict, seed: int = RNG_SEED) -> dict:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape) for name, shape in shapes.items()}


def assert_gradients(symbol: Symbol, args: dict, wrt=None) -> dict:
    errors = gc.gradcheck(symbol, args, wrt=wrt)
    assert errors and max(errors.values()) < GRAD_TOLERANCE, errors
    return errors


@pytest.mark.parametrize(("stride", "pad"), [((1, 1), (0, 0)), ((2, 1), (1, 0)), ((2, 2), (1, 1))])
def test_convolution_gradients(stride, pad):
    conv = gc.Convolution(
        gc.Variable("x"), kernel=(3, 2), stride=stride, pad=pad, num_filter=2, name="c"
    )
    args = random_args({"x": (2, 3, 5, 7), "c_weight": (2, 3, 3, 2), "c_bias": (2,)})
    errors = assert_gradients(conv, args)
    assert set(errors) == {"x", "c_weight", "c_bias"}


POOL_GRAD_CASES = [
    {"pool_type": "max", "kernel": (3, 2), "stride": (2, 1), "pad": (1, 1)},
    {"pool_type": "max", "kernel": (2, 3), "stride": (2, 2), "pooling_convention": "full"},
    {"pool_type": "avg", "kernel": (3, 2), "stride": (2, 1), "pad": (1, 1)},
    {"pool_type": "avg", "kernel": (3, 2), "pad": (1, 1), "count_include_pad": False},
    {"pool_type": "avg", "kernel": (2, 3), "stride": (2, 2), "pooling_convention": "full"},
    {"pool_type": "max", "global_pool": True},
    {"pool_type": "avg", "global_pool": True, "kernel": (1, 1)},
]


@pytest.mark.parametrize("attrs", POOL_GRAD_CASES)
def test_pooling_gradients(attrs):
    pool = gc.Pooling(gc.Variable("x"), **attrs)
    assert_gradients(pool, random_args({"x": (2, 3, 5, 7)}))


GEOMETRY = {"kernel": (3, 2), "stride": (2, 1), "pad": (1, 1), "num_filter": 2}
# x (2, 3, 5, 7) convolved with GEOMETRY: dy is (2, 2, 3, 8), the weight (2, 3, 3, 2).
X_SHAPE, DY_SHAPE, W_SHAPE = (2, 3, 5, 7), (2, 2, 3, 8), (2, 3, 3, 2)


def test_conv_backward_data_gradients():
    dy, weight, like = gc.Variable("dy"), gc.Variable("w"), gc.Variable("like")
    back = apply_op("_conv_backward_data", [dy, weight, like], GEOMETRY)
    args = random_args({"dy": DY_SHAPE, "w": W_SHAPE, "like": X_SHAPE})
    errors = assert_gradients(back, args)
    assert errors["like"] == 0.0


def test_conv_backward_weight_gradients():
    dy, data = gc.Variable("dy"), gc.Variable("x")
    back = apply_op("_conv_backward_weight", [dy, data], GEOMETRY)
    assert_gradients(back, random_args({"dy": DY_SHAPE, "x": X_SHAPE}))


def test_convolution_second_derivatives():
    x, weight = gc.Variable("x"), gc.Variable("w")
    conv = gc.Convolution(x, weight, no_bias=True, **GEOMETRY)
    dx, dw = gc.grad(gc.sum(gc.square(conv)), [x, weight])
    args = random_args({"x": X_SHAPE, "w": W_SHAPE})
    assert_gradients(dx, args)
    assert_gradients(dw, args)


def test_avg_pool_backward_gradients():
    dy, like = gc.Variable("dy"), gc.Variable("like")
    attrs = {"pool_type": "avg", "kernel": (3, 2), "stride": (2, 1), "pad": (1, 1)}
    back = apply_op("_avg_pool_backward", [dy, like], attrs)
    assert_gradients(back, random_args({"dy": (2, 3, 3, 8), "like": X_SHAPE}))


def test_max_pooling_has_no_second_derivative():
    x = gc.Variable("x")
    (dx,) = gc.grad(gc.sum(gc.Pooling(x, kernel=(2, 2))), [x])
    with pytest.raises(gc.GradientError, match="_max_pool_backward"):
        gc.grad(gc.sum(dx), [x])


def test_gradient_skips_unwanted_inputs():
    x = gc.Variable("x")
    conv = gc.Convolution(x, kernel=(2, 2), num_filter=2, name="c")
    (dw,) = gc.grad(conv, ["c_weight"])
    ops = {node.op for node in dw.graph.nodes}
    assert "_conv_backward_weight" in ops
    assert "_conv_backward_data" not in ops


# -- (d) bad input --------------------------------------------------------------------------


def test_channel_mismatch_names_node_and_shapes():
    conv = gc.Convolution(gc.Variable("x"), kernel=(3, 3), num_filter=4, name="conv1")
    with pytest.raises(gc.ShapeError) as info:
        conv.infer_shape(x=(2, 3, 8, 8), conv1_weight=(4, 2, 3, 3))
    message = str(info.value)
    assert "conv1 (Convolution)" in message
    assert "(2, 3, 8, 8) has 3 channels but weight (4, 2, 3, 3) expects 2" in message


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ((2, 3, 8), "data must be 4-D (N, C, H, W), not (2, 3, 8)"),
        ((1, 1, 2, 8), "is 2x8, smaller than the kernel 3x3"),
    ],
)
def test_convolution_shape_errors(shape, reason):
    conv = gc.Convolution(gc.Variable("x"), kernel=(3, 3), num_filter=4, name="conv1")
    with pytest.raises(gc.ShapeError, match="conv1") as info:
        conv.infer_shape(x=shape)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("attrs", "words"),
    [
        ({"kernel": 0, "num_filter": 2}, ["kernel=0", ">= 1"]),
        ({"kernel": (3, 3), "stride": (1, 0), "num_filter": 2}, ["stride=(1, 0)"]),
        ({"kernel": (3, 3), "pad": -1, "num_filter": 2}, ["pad=-1", ">= 0"]),
        ({"kernel": (3, 3), "num_filter": 0}, ["num_filter=0"]),
        ({"kernel": (3, 3, 3), "num_filter": 2}, ["kernel", "expected 2 values"]),
    ],
)
def test_convolution_attribute_errors(attrs, words):
    with pytest.raises(ValueError) as info:
        gc.Convolution(gc.Variable("x"), name="conv1", **attrs)
    for word in words:
        assert word in str(info.value)


def test_unknown_pool_type_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="pool_type='sum'") as info:
        gc.Pooling(gc.Variable("x"), kernel=(2, 2), pool_type="sum")
    assert "allowed: 'max', 'avg'" in str(info.value)


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"kernel": (2, 2), "pad": (2, 0)}, "pad (2, 0) must be smaller than the kernel (2, 2)"),
        ({"pool_type": "avg"}, "kernel is required unless global_pool=True"),
        (
            {"kernel": (2, 2), "stride": (4, 4), "pooling_convention": "full"},
            "the last window starts at (8, 8), past the input (7, 7)",
        ),
    ],
)
def test_pooling_shape_errors(attrs, reason):
    pool = gc.Pooling(gc.Variable("x"), name="pool1", **attrs)
    with pytest.raises(gc.ShapeError, match="pool1") as info:
        pool.infer_shape(x=(1, 1, 7, 7))
    assert reason in str(info.value)
