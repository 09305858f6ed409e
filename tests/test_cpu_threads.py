"""Threads on the CPU: the one setting (``gc.set_num_threads``, ``GRAPHC_NUM_THREADS``), the
single-threaded GEMM each part calls (``codegen_cpu/blas.py``), and training whose result
depends on the thread count only by documented reassociation and never varies between
runs at one count."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import graphc as gc
from graphc.codegen_cpu import blas, threads

MAXIMUM = numba.config.NUMBA_NUM_THREADS


@pytest.fixture
def fresh_setting(monkeypatch):
    """The thread setting as a new process has it; the caller's setting comes back after."""
    monkeypatch.setitem(threads._state, "threads", None)
    yield


@pytest.mark.unit
@pytest.mark.parametrize("bad", [0, -1, MAXIMUM + 1, 1.5, "2", None])
def test_set_num_threads_rejects_what_is_not_a_count_of_cores(bad, fresh_setting):
    with pytest.raises(ValueError, match="set_num_threads: the thread count must be"):
        gc.set_num_threads(bad)


@pytest.mark.unit
def test_the_default_is_every_core_and_the_environment_chooses_fewer(fresh_setting, monkeypatch):
    monkeypatch.delenv(threads.ENVIRONMENT, raising=False)
    assert gc.get_num_threads() == MAXIMUM
    monkeypatch.setitem(threads._state, "threads", None)
    monkeypatch.setenv(threads.ENVIRONMENT, "1")
    assert gc.get_num_threads() == 1
    gc.set_num_threads(MAXIMUM)  # the call wins over the environment
    assert gc.get_num_threads() == MAXIMUM


@pytest.mark.unit
@pytest.mark.parametrize("bad", ["0", "many", str(MAXIMUM + 1)])
def test_a_bad_environment_value_names_the_variable(bad, fresh_setting, monkeypatch):
    monkeypatch.setenv(threads.ENVIRONMENT, bad)
    with pytest.raises(ValueError, match=threads.ENVIRONMENT):
        gc.get_num_threads()


@pytest.mark.unit
def test_kernels_are_partitioned_for_the_bound_count(fresh_setting):
    gc.set_num_threads(1)
    assert threads.bind_options() == {"num_threads": 1}
    assert threads.parallel_parts({"num_threads": 1}, 100, 1e9, 1) == 1
    # below the size from which splitting pays a kernel stays serial, and never more parts
    # than rows
    assert threads.parallel_parts({"num_threads": 4}, 100, 10, 1000) == 1
    assert threads.parallel_parts({"num_threads": 4}, 3, 1e9, 1000) == 3
    assert threads.parallel_parts({"num_threads": 4, "split_small": True}, 100, 10, 1000) == 4


@numba.njit
def _gemm(alpha, a, b, beta, c):
    blas.gemm(alpha, a, b, beta, c)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_on_views_matches_numpy(dtype):
    """Row-major, transposed and strided views of a larger matrix, beta 0 and 1."""
    rng = np.random.default_rng(0)
    big_a = rng.standard_normal((9, 11)).astype(dtype)
    big_b = rng.standard_normal((11, 13)).astype(dtype)
    cases = [
        (big_a[:5, :7], big_b[:7, :6]),  # sub-blocks: leading dimension larger than the width
        (big_a[:7, :5].T, big_b[:6, :7].T),  # transposed views
        (big_a[1:6, 2:9], big_b[3:10, 1:4]),
    ]
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in cases:
        one, two, zero = dtype(1), dtype(2), dtype(0)  # alpha and beta in the arrays' dtype
        c = np.full((a.shape[0], b.shape[1]), np.nan, dtype)
        _gemm(one, a, b, zero, c)  # beta 0: the NaN c held is ignored
        np.testing.assert_allclose(c, a @ b, rtol=tolerance, atol=tolerance)
        before = c.copy()
        _gemm(two, a, b, one, c)
        np.testing.assert_allclose(c, before + 2 * (a @ b), rtol=tolerance, atol=tolerance)
        wide = np.zeros((a.shape[0], 2 * b.shape[1]), dtype)
        _gemm(one, a, b, zero, wide[:, : b.shape[1]])  # c's rows further apart than its width
        np.testing.assert_allclose(wide[:, : b.shape[1]], a @ b, rtol=tolerance, atol=tolerance)


def test_gemm_empty_sum_and_bad_operands():
    a = np.ones((3, 0))
    b = np.ones((0, 4))
    c = np.full((3, 4), 5.0)
    _gemm(1.0, a, b, 1.0, c)
    np.testing.assert_array_equal(c, 5.0)  # beta * c + nothing
    _gemm(1.0, a, b, 0.0, c)
    np.testing.assert_array_equal(c, 0.0)
    x = np.ones((4, 6))
    with pytest.raises(ValueError, match="do not chain"):
        _gemm(1.0, x, x, 0.0, np.empty((4, 6)))
    with pytest.raises(ValueError):  # no unit stride in either direction: not a BLAS operand
        _gemm(1.0, x[::2, ::2], x[::2, ::2].T.copy(), 0.0, np.empty((2, 2)))
    with pytest.raises(ValueError, match="unit stride along its rows"):
        _gemm(1.0, x, x.T, 0.0, np.empty((4, 4)).T)


# A small LeNet-like network: every kernel that splits (convolution passes, pooling, the
# fused bias gradients, the fully connected layers) does so here, as split_small asks.
def _small_lenet():
    data = gc.Variable("data")
    net = gc.Convolution(data, kernel=(3, 3), num_filter=4, name="conv1")
    net = gc.Activation(net, act_type="tanh")
    net = gc.Pooling(net, pool_type="max", kernel=(2, 2), stride=(2, 2))
    net = gc.Flatten(net)
    net = gc.FullyConnected(net, num_hidden=10, name="fc")
    return gc.SoftmaxOutput(net, name="softmax")


def _train(num_threads: int, steps: int = 20) -> dict:
    symbol = _small_lenet()
    options = {"num_threads": num_threads, "split_small": True}
    exe = symbol.simple_bind(gc.cpu(), data=(7, 3, 10, 10), options=options)
    rng = np.random.default_rng(0)
    for name, array in exe.arg_dict.items():
        if name not in ("data", "softmax_label"):
            array[:] = rng.standard_normal(array.shape).astype(array.dtype) * 0.3
    # A small step: random data and labels, and no chaos to amplify the reassociation.
    optimizer = gc.optimizer.create("sgd", learning_rate=0.01)
    names = [n for n in exe.arg_dict if n not in ("data", "softmax_label")]
    states = {n: optimizer.create_state(n, exe.arg_dict[n]) for n in names}
    for _ in range(steps):
        exe.arg_dict["data"][:] = rng.standard_normal((7, 3, 10, 10))
        exe.arg_dict["softmax_label"][:] = rng.integers(0, 10, 7)
        exe.forward(is_train=True)
        exe.backward()
        optimizer.update(exe.arg_dict, exe.grad_dict, states)
    return {name: exe.arg_dict[name].copy() for name in names}


def test_training_depends_on_the_thread_count_only_by_reassociation():
    """20 SGD steps with every kernel split in 1, 2 and 3 parts: the same parameters to
    float32 reassociation (partial sums added per part, threads.py), and the same bits on
    a second run at one count."""
    one = _train(1)
    for count in (2, 3):
        first, again = _train(count), _train(count)
        for name in one:
            np.testing.assert_allclose(
                first[name], one[name], rtol=2e-4, atol=2e-5, err_msg=f"{name} at {count}"
            )
            np.testing.assert_array_equal(again[name], first[name], err_msg=f"{name} at {count}")
