"""The gradient transform: fan-out, shared parameters, head gradients, second order."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

pytestmark = pytest.mark.unit

rng = np.random.default_rng(3)


def test_fan_out_accumulates():
    x = gc.Variable("x")
    y = gc.sum(x * x + gc.exp(x) + x)
    (dx,) = gc.grad(y, [x])
    value = rng.standard_normal(5)
    (got,) = gc.evaluate(dx, {"x": value})
    np.testing.assert_allclose(got, 2 * value + np.exp(value) + 1, rtol=1e-6)


def test_shared_parameter_gets_both_uses():
    x = gc.Variable("x")
    w = gc.Variable("w")
    first = gc.FullyConnected(x, weight=w, no_bias=True, num_hidden=3, name="fc_a")
    second = gc.FullyConnected(gc.tanh(first), weight=w, no_bias=True, num_hidden=3, name="fc_b")
    assert second.list_arguments() == ["x", "w"]
    errors = gc.gradcheck(
        second, {"x": rng.standard_normal((2, 3)), "w": rng.standard_normal((3, 3))}
    )
    assert max(errors.values()) < 1e-6


def test_head_gradient_is_used():
    x = gc.Variable("x")
    head = gc.Variable("head")
    (dx,) = gc.grad(gc.square(x), [x], head_grads=[head])
    (got,) = gc.evaluate(dx, {"x": np.array([1.0, 2.0]), "head": np.array([3.0, 5.0])})
    np.testing.assert_allclose(got, [6.0, 20.0])


def test_wrt_by_name_and_unrelated_variable_gets_zeros():
    x, z = gc.Variable("x"), gc.Variable("z")
    y = gc.Group([gc.sum(x * 2.0), gc.sum(z)])
    dx, dz = gc.grad(y[0], ["x", "x"])
    assert gc.evaluate(dx, {"x": np.ones(3)})[0].tolist() == [2.0, 2.0, 2.0]
    (dz_only,) = gc.grad(y, [z])
    assert gc.evaluate(dz_only, {"z": np.ones(2)})[0].tolist() == [1.0, 1.0]
    unrelated = gc.grad(gc.sum(x * 2.0) + gc.sum(z) * 0.0, [z])[0]
    assert gc.evaluate(unrelated, {"x": np.ones(3), "z": np.ones(2)})[0].tolist() == [0.0, 0.0]


def test_gradient_touches_only_what_it_needs():
    """The gradient of x builds no gradient for the branch on w (the forward dot stays only
    because the head gradient takes the output's shape from it)."""
    x, w = gc.Variable("x"), gc.Variable("w")
    y = gc.sum(x * 3.0) + gc.sum(gc.dot(w, w))
    (dx,) = gc.grad(y, [x])
    ops = [node.op for node in dx.graph.nodes]
    assert ops.count("dot") == 1
    (dw,) = gc.grad(y, [w])
    assert [node.op for node in dw.graph.nodes].count("dot") == 3


def test_loss_head_supplies_its_own_gradient():
    """SoftmaxOutput's gradient is p - onehot(label) whatever the head gradient."""
    data, label = gc.Variable("data"), gc.Variable("label")
    out = gc.SoftmaxOutput(data, label)
    (ddata,) = gc.grad(out, [data])
    x = rng.standard_normal((3, 4))
    y = np.array([0.0, 3.0, 1.0])
    (got,) = gc.evaluate(ddata, {"data": x, "label": y})
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    np.testing.assert_allclose(got, p - np.eye(4)[y.astype(int)], rtol=1e-6)


@pytest.mark.parametrize(
    "build, make_input",
    [
        (lambda x: x * x * x, lambda: rng.standard_normal(4)),
        (lambda x: gc.exp(x * 0.5), lambda: rng.standard_normal(4)),
        (lambda x: gc.tanh(x), lambda: rng.standard_normal(4)),
        (lambda x: gc.dot(x, x, transpose_b=True), lambda: rng.standard_normal((3, 2))),
        (lambda x: gc.sigmoid(x) / (x * x + 1.0), lambda: rng.standard_normal(4)),
    ],
)
def test_gradient_of_gradient(build, make_input):
    """d/dx of sum(dy/dx * r): graph-level second derivatives, checked by finite differences."""
    x = gc.Variable("x")
    r = gc.Variable("r")
    (dx,) = gc.grad(gc.sum(build(x)), [x])
    second = gc.sum(dx * r)
    value = make_input()
    errors = gc.gradcheck(second, {"x": value, "r": rng.standard_normal(value.shape)}, wrt=["x"])
    assert errors["x"] < 1e-6


def test_index_inputs_get_zero_gradient():
    x = gc.Variable("x")
    hot = gc.one_hot(x, depth=3, name="hot")
    (dx,) = gc.grad(gc.sum(hot) + gc.sum(gc.sign(x)), [x])
    assert gc.evaluate(dx, {"x": np.array([0.0, 2.0])})[0].tolist() == [0.0, 0.0]


def test_deep_chain_beyond_recursion_limit():
    x = gc.Variable("x")
    y = x
    for _ in range(3000):
        y = y * 1.0001
    (dx,) = gc.grad(gc.sum(y), [x])
    (got,) = gc.evaluate(dx, {"x": np.ones(2)})
    np.testing.assert_allclose(got, 1.0001**3000, rtol=1e-9)
