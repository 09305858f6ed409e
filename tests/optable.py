"""The table of op cases that drives forward, gradient and backend tests.

Each row builds a symbol from Variables, says how to make its inputs, and gives the
expected forward values computed independently of graphc's reference (Python's math
module element by element, explicit loops, hand-written formulas, or the loop-based
convolution, pooling and step-by-step LSTM of oracles.py). Adding an op to the test suite
is adding a row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from oracles import lstm_steps, naive_convolution, naive_pooling

import graphc as gc


@dataclass
class OpCase:
    name: str
    build: Callable[[], gc.Symbol]
    inputs: dict[str, Callable[[np.random.Generator], np.ndarray]]
    expected: Callable[[dict], list] | None = None
    differentiable: bool = True
    is_train: bool = False
    marks: list = field(default_factory=list)

    def __repr__(self) -> str:
        return self.name


def normal(*shape):
    return lambda rng: rng.standard_normal(shape)


def positive(*shape):
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def away_from_zero(*shape):
    """Values at least 0.1 from zero, so kinks (relu, abs) are never straddled."""
    return lambda rng: rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 2.0, shape)


def labels(high, *shape):
    return lambda rng: rng.integers(0, high, shape).astype(np.float64)


def elementwise(fn):
    return lambda values: np.vectorize(fn, otypes=[np.float64])


def _vec(fn, *arrays):
    return np.vectorize(fn, otypes=[np.float64])(*arrays)


a, b, c = gc.Variable("a"), gc.Variable("b"), gc.Variable("c")
idx = gc.Variable("idx")


def _unary(name, build, fn, gen=None):
    gen = gen or normal(3, 5)
    return OpCase(name, build, {"a": gen}, lambda v: [_vec(fn, v["a"])])


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _loop_sum(x, axis):
    return np.apply_along_axis(lambda row: math.fsum(row), axis, x)


def _fc(v, flatten=True):
    x = v["a"].reshape(v["a"].shape[0], -1) if flatten else v["a"]
    out = np.einsum("...k,hk->...h", x, v["fc_weight"])
    return [out + v["fc_bias"]]


def _global_mean(x):
    """The mean of each (H, W) plane of x, as an (N, C, 1, 1) array."""
    out = np.empty(x.shape[:2] + (1, 1))
    for n, c in np.ndindex(x.shape[:2]):
        out[n, c] = math.fsum(x[n, c].ravel()) / x[n, c].size
    return out


def _lstm_parameters(v):
    names = ("rnn_i2h_weight", "rnn_h2h_weight", "rnn_i2h_bias", "rnn_h2h_bias")
    return [v[name] for name in names]


def _softmax_rows(x):
    out = np.empty_like(x)
    for index in np.ndindex(x.shape[:-1]):
        row = x[index]
        exps = [math.exp(value - max(row)) for value in row]
        out[index] = [value / sum(exps) for value in exps]
    return out


CASES = [
    _unary("exp", lambda: gc.exp(a), math.exp),
    _unary("log", lambda: gc.log(a), math.log, positive(3, 5)),
    _unary("sqrt", lambda: gc.sqrt(a), math.sqrt, positive(2, 3)),
    _unary("square", lambda: gc.square(a), lambda x: x * x),
    _unary("abs", lambda: gc.abs(a), abs, away_from_zero(3, 5)),
    _unary("negative", lambda: -a, lambda x: -x),
    _unary("tanh", lambda: gc.tanh(a), math.tanh),
    _unary("sigmoid", lambda: gc.sigmoid(a), _sigmoid),
    _unary("relu", lambda: gc.relu(a), lambda x: max(x, 0.0), away_from_zero(3, 5)),
    _unary(
        "softrelu", lambda: gc.Activation(a, act_type="softrelu"), lambda x: math.log1p(math.exp(x))
    ),
    _unary(
        "leaky",
        lambda: gc.LeakyReLU(a, slope=0.1),
        lambda x: x if x > 0 else 0.1 * x,
        away_from_zero(3, 5),
    ),
    _unary(
        "elu",
        lambda: gc.LeakyReLU(a, act_type="elu", slope=0.7),
        lambda x: x if x > 0 else 0.7 * math.expm1(x),
        away_from_zero(3, 5),
    ),
    _unary("scalar_arith", lambda: 2.0 * a + 1.0 - a / 4.0, lambda x: 2 * x + 1 - x / 4),
    _unary("rsub_rdiv", lambda: 3.0 - 2.0 / a, lambda x: 3 - 2 / x, positive(3, 5)),
    _unary("pow_scalar", lambda: a**3.0, lambda x: x**3),
    OpCase(
        "add_broadcast",
        lambda: a + b,
        {"a": normal(3, 1, 5), "b": normal(4, 1)},
        lambda v: [_vec(lambda x, y: x + y, v["a"], v["b"])],
    ),
    OpCase(
        "sub_broadcast",
        lambda: a - b,
        {"a": normal(2, 3), "b": normal(3)},
        lambda v: [_vec(lambda x, y: x - y, v["a"], v["b"])],
    ),
    OpCase(
        "mul_broadcast",
        lambda: a * b,
        {"a": normal(1, 7), "b": normal(5, 1)},
        lambda v: [_vec(lambda x, y: x * y, v["a"], v["b"])],
    ),
    OpCase(
        "div_broadcast",
        lambda: a / b,
        {"a": normal(2, 3), "b": positive(2, 1)},
        lambda v: [_vec(lambda x, y: x / y, v["a"], v["b"])],
    ),
    OpCase(
        "power",
        lambda: gc.power(a, b),
        {"a": positive(2, 3), "b": normal(3)},
        lambda v: [_vec(math.pow, v["a"], v["b"])],
    ),
    OpCase(
        "maximum",
        lambda: gc.maximum(a, b),
        {"a": normal(3, 4), "b": normal(3, 4)},
        lambda v: [_vec(max, v["a"], v["b"])],
    ),
    OpCase(
        "minimum",
        lambda: gc.minimum(a, b),
        {"a": normal(3, 4), "b": normal(4)},
        lambda v: [_vec(min, v["a"], v["b"])],
    ),
    OpCase(
        "greater",
        lambda: gc.greater(a, b),
        {"a": normal(3, 4), "b": normal(4)},
        lambda v: [_vec(lambda x, y: float(x > y), v["a"], v["b"])],
        differentiable=False,
    ),
    OpCase(
        "sum_all", lambda: gc.sum(a), {"a": normal(3, 5)}, lambda v: [math.fsum(v["a"].ravel())]
    ),
    OpCase(
        "sum_axis",
        lambda: gc.sum(a, axis=1),
        {"a": normal(3, 5, 2)},
        lambda v: [_loop_sum(v["a"], 1)],
    ),
    OpCase(
        "sum_neg_axes_keepdims",
        lambda: gc.sum(a, axis=(0, -1), keepdims=True),
        {"a": normal(3, 1, 2)},
        lambda v: [np.array([[[math.fsum(v["a"][:, 0, :].ravel())]]])],
    ),
    OpCase(
        "mean",
        lambda: gc.mean(a, axis=0),
        {"a": normal(7, 3)},
        lambda v: [_loop_sum(v["a"], 0) / 7],
    ),
    OpCase(
        "max",
        lambda: gc.max(a, axis=-1),
        {"a": normal(3, 5)},
        lambda v: [np.array([max(row) for row in v["a"]])],
    ),
    OpCase(
        "min_keepdims",
        lambda: gc.min(a, axis=0, keepdims=True),
        {"a": normal(3, 5)},
        lambda v: [np.array([[min(col) for col in v["a"].T]])],
    ),
    OpCase(
        "dot",
        lambda: gc.dot(a, b),
        {"a": normal(3, 5), "b": normal(5, 2)},
        lambda v: [
            np.array([[math.fsum(v["a"][i] * v["b"][:, j]) for j in range(2)] for i in range(3)])
        ],
    ),
    OpCase(
        "dot_tt",
        lambda: gc.dot(a, b, transpose_a=True, transpose_b=True),
        {"a": normal(5, 3), "b": normal(2, 5)},
        lambda v: [v["a"].T @ v["b"].T],
    ),
    OpCase(
        # a.T @ b summing over 8 times more rows than it outputs: the kernel splits the sum
        # (codegen_cpu/gemm.py), 27 rows into 2 or 3 parts in the split tests.
        "dot_tn_long_sum",
        lambda: gc.dot(a, b, transpose_a=True),
        {"a": normal(27, 3), "b": normal(27, 2)},
        lambda v: [v["a"].T @ v["b"]],
    ),
    OpCase(
        "dot_nd",
        lambda: a @ b,
        {"a": normal(2, 3, 5), "b": normal(5, 1)},
        lambda v: [np.einsum("ijk,kl->ijl", v["a"], v["b"])],
    ),
    OpCase(
        "batch_dot",
        lambda: gc.batch_dot(a, b, transpose_b=True),
        {"a": normal(2, 3, 5), "b": normal(2, 7, 5)},
        lambda v: [np.einsum("bik,bjk->bij", v["a"], v["b"])],
    ),
    OpCase(
        "fully_connected",
        lambda: gc.FullyConnected(a, num_hidden=3, name="fc"),
        {"a": normal(2, 3, 5), "fc_weight": normal(3, 15), "fc_bias": normal(3)},
        _fc,
    ),
    OpCase(
        "fully_connected_noflat",
        lambda: gc.FullyConnected(a, num_hidden=3, flatten=False, name="fc"),
        {"a": normal(2, 1, 5), "fc_weight": normal(3, 5), "fc_bias": normal(3)},
        lambda v: _fc(v, False),
    ),
    OpCase(
        "fully_connected_nobias",
        lambda: gc.FullyConnected(a, num_hidden=1, no_bias=True, name="fc"),
        {"a": normal(1, 7), "fc_weight": normal(1, 7)},
        lambda v: [v["a"] @ v["fc_weight"].T],
    ),
    OpCase(
        "flatten", lambda: gc.Flatten(a), {"a": normal(2, 3, 5)}, lambda v: [v["a"].reshape(2, 15)]
    ),
    OpCase(
        "reshape_codes",
        lambda: gc.Reshape(a, shape=(0, -3, -1)),
        {"a": normal(2, 3, 5, 1)},
        lambda v: [v["a"].reshape(2, 15, 1)],
    ),
    OpCase(
        "reshape_split",
        lambda: gc.Reshape(a, shape=(-4, 1, -1, -2)),
        {"a": normal(6, 5)},
        lambda v: [v["a"].reshape(1, 6, 5)],
    ),
    OpCase(
        "transpose",
        lambda: gc.transpose(a, axes=(2, 0, 1)),
        {"a": normal(2, 3, 5)},
        lambda v: [
            np.array([[[v["a"][i, j, k] for j in range(3)] for i in range(2)] for k in range(5)])
        ],
    ),
    OpCase("transpose_default", lambda: gc.transpose(a), {"a": normal(2, 3)}, lambda v: [v["a"].T]),
    *[
        OpCase(
            f"elemwise_{name}",
            lambda op=op: op(a, b),
            {"a": normal(3, 4), "b": positive(3, 4)},
            lambda v, fn=fn: [fn(v["a"], v["b"])],
        )
        for name, op, fn in (
            ("add", gc.elemwise_add, np.add),
            ("sub", gc.elemwise_sub, np.subtract),
            ("mul", gc.elemwise_mul, np.multiply),
            ("div", gc.elemwise_div, np.divide),
        )
    ],
    OpCase(
        "full",
        lambda: a * gc.full((3, 5), 2.5) + gc.ones((5,)),
        {"a": normal(3, 5)},
        lambda v: [v["a"] * 2.5 + 1.0],
    ),
    OpCase(  # MXNet's 0: the size settled from the given shapes (graphc.ir.unknown_dims)
        "full_unknown_size",
        lambda: gc.zeros((0, 5)) - a,
        {"a": normal(3, 5)},
        lambda v: [-v["a"]],
    ),
    OpCase(
        "expand_dims",
        lambda: gc.expand_dims(a, axis=1),
        {"a": normal(2, 3)},
        lambda v: [v["a"][:, None, :]],
    ),
    OpCase(
        "concat",
        lambda: gc.Concat(a, b, c, dim=1),
        {"a": normal(2, 1), "b": normal(2, 3), "c": normal(2, 2)},
        lambda v: [np.hstack([v["a"], v["b"], v["c"]])],
    ),
    OpCase(
        "slice_channel",
        lambda: gc.SliceChannel(a, num_outputs=3, axis=1),
        {"a": normal(2, 3, 2)},
        lambda v: [v["a"][:, i : i + 1, :] for i in range(3)],
    ),
    OpCase(
        "split_squeeze",
        lambda: gc.split(a, num_outputs=2, axis=0, squeeze_axis=True),
        {"a": normal(2, 3)},
        lambda v: [v["a"][0], v["a"][1]],
    ),
    OpCase(
        "slice_axis",
        lambda: gc.slice_axis(a, axis=1, begin=1, end=-1),
        {"a": normal(2, 5)},
        lambda v: [v["a"][:, 1:4]],
    ),
    OpCase(
        "softmax", lambda: gc.softmax(a), {"a": normal(3, 5)}, lambda v: [_softmax_rows(v["a"])]
    ),
    OpCase(
        "softmax_axis0",
        lambda: gc.softmax(a, axis=0),
        {"a": normal(3, 2)},
        lambda v: [_softmax_rows(v["a"].T).T],
    ),
    OpCase(
        "log_softmax",
        lambda: gc.log_softmax(a),
        {"a": normal(2, 7)},
        lambda v: [np.log(_softmax_rows(v["a"]))],
    ),
    OpCase(
        "embedding",
        lambda: gc.Embedding(idx, input_dim=5, output_dim=3, name="emb"),
        {"idx": labels(5, 2, 3), "emb_weight": normal(5, 3)},
        lambda v: [np.array([[v["emb_weight"][int(i)] for i in row] for row in v["idx"]])],
    ),
    OpCase(
        "one_hot",
        lambda: gc.one_hot(idx, depth=4),
        {"idx": labels(4, 3)},
        lambda v: [np.eye(4)[v["idx"].astype(int)]],
        differentiable=False,
    ),
    OpCase(
        "pick",
        lambda: gc.pick(a, idx, axis=1),
        {"a": normal(3, 4), "idx": labels(4, 3)},
        lambda v: [np.array([v["a"][i, int(j)] for i, j in enumerate(v["idx"])])],
    ),
    OpCase(  # MXNet's index shape under keepdims: the data's without the axis
        "pick_keepdims",
        lambda: gc.pick(a, idx, axis=0, keepdims=True),
        {"a": normal(3, 4), "idx": labels(3, 4)},
        lambda v: [np.array([[v["a"][int(j), i] for i, j in enumerate(v["idx"])]])],
    ),
    OpCase(  # and with the kept axis of size 1
        "pick_keepdims_kept_axis",
        lambda: gc.pick(a, idx, axis=1, keepdims=True),
        {"a": normal(3, 4), "idx": labels(4, 3, 1)},
        lambda v: [np.array([[v["a"][i, int(j)]] for i, j in enumerate(v["idx"][:, 0])])],
    ),
    OpCase(
        "dropout_inference", lambda: gc.Dropout(a, p=0.4), {"a": normal(3, 4)}, lambda v: [v["a"]]
    ),
    OpCase(
        "dropout_train",
        lambda: gc.Dropout(a, p=0.5, seed=7),
        {"a": normal(4, 5)},
        None,
        is_train=True,
    ),
    # BlockGrad's gradient is zero on purpose, so finite differences do not apply.
    OpCase(
        "block_grad",
        lambda: gc.BlockGrad(a) * a,
        {
            "a": normal(
                3,
            )
        },
        lambda v: [v["a"] ** 2],
        differentiable=False,
    ),
    OpCase(
        "softmax_output",
        lambda: gc.SoftmaxOutput(a, idx, name="so"),
        {"a": normal(4, 3), "idx": labels(3, 4)},
        lambda v: [_softmax_rows(v["a"])],
    ),
    OpCase(
        "softmax_output_batch_ignore",
        lambda: gc.SoftmaxOutput(
            a, idx, normalization="valid", use_ignore=True, ignore_label=0, grad_scale=0.5
        ),
        {"a": normal(5, 3), "idx": labels(3, 5)},
        lambda v: [_softmax_rows(v["a"])],
    ),
    OpCase(
        "softmax_output_multi",
        lambda: gc.SoftmaxOutput(a, idx, multi_output=True, normalization="batch"),
        {"a": normal(2, 3, 5), "idx": labels(3, 2, 5)},
        lambda v: [np.moveaxis(_softmax_rows(np.moveaxis(v["a"], 1, -1)), -1, 1)],
    ),
    OpCase(  # MXNet divides by the positions per sample too (null: by them alone)
        "softmax_output_multi_null",
        lambda: gc.SoftmaxOutput(a, idx, multi_output=True),
        {"a": normal(2, 3, 5), "idx": labels(3, 2, 5)},
        lambda v: [np.moveaxis(_softmax_rows(np.moveaxis(v["a"], 1, -1)), -1, 1)],
    ),
    OpCase(  # 'batch' with preserve_shape: MXNet divides by the rows, 2 * 3 here
        "softmax_output_preserve_shape_batch",
        lambda: gc.SoftmaxOutput(a, idx, preserve_shape=True, normalization="batch"),
        {"a": normal(2, 3, 4), "idx": labels(4, 2, 3)},
        lambda v: [_softmax_rows(v["a"])],
    ),
    OpCase(
        "linear_regression_output",
        lambda: gc.LinearRegressionOutput(a, b),
        {"a": normal(4, 2), "b": normal(4, 2)},
        lambda v: [v["a"]],
    ),
    OpCase(
        "logistic_regression_output",
        lambda: gc.LogisticRegressionOutput(a, b),
        {"a": normal(4, 1), "b": lambda rng: rng.random((4, 1))},
        lambda v: [_vec(_sigmoid, v["a"])],
    ),
    OpCase(
        "make_loss",
        lambda: gc.MakeLoss(gc.square(a), normalization="batch", grad_scale=3.0),
        {"a": normal(4, 2)},
        lambda v: [v["a"] ** 2],
    ),
    OpCase(
        "softmax_cross_entropy",
        lambda: gc.softmax_cross_entropy(a, idx),
        {"a": normal(4, 3), "idx": labels(3, 4)},
        lambda v: [
            np.array(
                [
                    -math.fsum(
                        math.log(_softmax_rows(v["a"])[i, int(j)]) for i, j in enumerate(v["idx"])
                    )
                ]
            )
        ],
    ),
    OpCase(
        "convolution",
        lambda: gc.Convolution(
            a, kernel=(3, 2), num_filter=2, stride=(2, 1), pad=(1, 0), name="cv"
        ),
        {"a": normal(2, 3, 5, 4), "cv_weight": normal(2, 3, 3, 2), "cv_bias": normal(2)},
        lambda v: [naive_convolution(v["a"], v["cv_weight"], v["cv_bias"], (2, 1), (1, 0))],
    ),
    OpCase(
        "convolution_1x1_nobias",
        lambda: gc.Convolution(a, kernel=1, num_filter=3, no_bias=True, name="cv"),
        {"a": normal(1, 2, 3, 1), "cv_weight": normal(3, 2, 1, 1)},
        lambda v: [naive_convolution(v["a"], v["cv_weight"], None, (1, 1), (0, 0))],
    ),
    OpCase(
        "max_pool",
        lambda: gc.Pooling(a, kernel=(2, 2), stride=(2, 1), pad=(1, 0), pool_type="max"),
        {"a": normal(2, 3, 5, 3)},
        lambda v: [naive_pooling(v["a"], (2, 2), (2, 1), (1, 0), "max", True, "valid")[0]],
    ),
    OpCase(
        "avg_pool_exclude_pad",
        lambda: gc.Pooling(a, kernel=3, stride=2, pad=1, pool_type="avg", count_include_pad=False),
        {"a": normal(1, 2, 7, 5)},
        lambda v: [naive_pooling(v["a"], (3, 3), (2, 2), (1, 1), "avg", False, "valid")[0]],
    ),
    OpCase(
        "global_avg_pool",
        lambda: gc.Pooling(a, kernel=1, pool_type="avg", global_pool=True),
        {"a": normal(2, 3, 3, 2)},
        lambda v: [_global_mean(v["a"])],
    ),
    OpCase(
        "lstm",
        lambda: gc.LSTM(a, num_hidden=3, name="rnn"),
        {
            "a": normal(3, 2, 5),
            "rnn_i2h_weight": normal(12, 5),
            "rnn_h2h_weight": normal(12, 3),
            "rnn_i2h_bias": normal(12),
            "rnn_h2h_bias": normal(12),
        },
        lambda v: list(lstm_steps(v["a"], *_lstm_parameters(v))),
    ),
    OpCase(
        "lstm_with_state",
        lambda: gc.LSTM(a, num_hidden=2, state=b, state_cell=c, name="rnn"),
        {
            "a": normal(2, 1, 3),
            "b": normal(1, 2),
            "c": normal(1, 2),
            "rnn_i2h_weight": normal(8, 3),
            "rnn_h2h_weight": normal(8, 2),
            "rnn_i2h_bias": normal(8),
            "rnn_h2h_bias": normal(8),
        },
        lambda v: list(lstm_steps(v["a"], *_lstm_parameters(v), state=v["b"], state_cell=v["c"])),
    ),
]
