"""LSTM: forward against independent references, gradients by finite differences, shapes,
errors, and a long sequence."""

from __future__ import annotations

import inspect
import sys

import numpy as np
import pytest
from oracles import lstm_steps

import graphc as gc

pytestmark = pytest.mark.unit


def _random_args(name: str, T: int, N: int, I: int, H: int, states: tuple[str, ...], seed: int):
    """Values for data, the four parameters and the named initial states."""
    rng = np.random.default_rng(seed)
    args = {
        "data": rng.standard_normal((T, N, I)),
        f"{name}_i2h_weight": rng.standard_normal((4 * H, I)) * 0.7,
        f"{name}_h2h_weight": rng.standard_normal((4 * H, H)) * 0.7,
        f"{name}_i2h_bias": rng.standard_normal(4 * H) * 0.5,
        f"{name}_h2h_bias": rng.standard_normal(4 * H) * 0.5,
    }
    for state in states:
        args[state] = rng.standard_normal((N, H))
    return args


def _build(name: str, H: int, states: tuple[str, ...]) -> gc.Symbol:
    given = {state: gc.Variable(state) for state in states}
    return gc.LSTM(gc.Variable("data"), num_hidden=H, name=name, **given)


def _reference_lstm(args: dict, name: str):
    """Step by step with one matrix per gate and the textbook sigmoid (oracles.lstm_steps)."""
    return lstm_steps(
        args["data"],
        args[f"{name}_i2h_weight"],
        args[f"{name}_h2h_weight"],
        args[f"{name}_i2h_bias"],
        args[f"{name}_h2h_bias"],
        args.get("state"),
        args.get("state_cell"),
    )


STATE_CASES = [(), ("state",), ("state_cell",), ("state", "state_cell")]


@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("states", STATE_CASES)
def test_forward_matches_step_by_step_reference(T, states):
    H = 5
    args = _random_args("rnn", T, N=3, I=4, H=H, states=states, seed=T)
    output, state, state_cell = gc.evaluate(_build("rnn", H, states), args)
    expected_output, expected_state, expected_cell = _reference_lstm(args, "rnn")
    assert output.shape == (T, 3, H)
    np.testing.assert_allclose(output, expected_output, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state, expected_state, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state_cell, expected_cell, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(state, output[-1])


def test_initial_states_change_the_result():
    args = _random_args("rnn", 2, N=2, I=3, H=4, states=("state", "state_cell"), seed=1)
    with_states = gc.evaluate(_build("rnn", 4, ("state", "state_cell")), args)[0]
    zero_args = {key: value for key, value in args.items() if not key.startswith("state")}
    without = gc.evaluate(_build("rnn", 4, ()), zero_args)[0]
    assert np.max(np.abs(with_states - without)) > 1e-3


@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("states", [(), ("state", "state_cell")])
def test_forward_matches_pytorch(T, states):
    torch = pytest.importorskip("torch")
    H, N, I = 5, 3, 4
    args = _random_args("rnn", T, N, I, H, states, seed=10 + T)
    # PyTorch stacks its gates i, f, g, o and keeps two biases, exactly as MXNet does.
    layer = torch.nn.LSTM(I, H, num_layers=1).double()
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.from_numpy(args["rnn_i2h_weight"]))
        layer.weight_hh_l0.copy_(torch.from_numpy(args["rnn_h2h_weight"]))
        layer.bias_ih_l0.copy_(torch.from_numpy(args["rnn_i2h_bias"]))
        layer.bias_hh_l0.copy_(torch.from_numpy(args["rnn_h2h_bias"]))
        initial = None
        if states:
            initial = (
                torch.from_numpy(args["state"])[None],
                torch.from_numpy(args["state_cell"])[None],
            )
        expected, (h_n, c_n) = layer(torch.from_numpy(args["data"]), initial)
    output, state, state_cell = gc.evaluate(_build("rnn", H, states), args)
    np.testing.assert_allclose(output, expected.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(state, h_n[0].numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(state_cell, c_n[0].numpy(), rtol=1e-10, atol=1e-12)


def test_float32_in_float32_out():
    args = _random_args("rnn", 3, N=2, I=3, H=2, states=("state",), seed=2)
    args32 = {key: value.astype(np.float32) for key, value in args.items()}
    outputs = gc.evaluate(_build("rnn", 2, ("state",)), args32)
    assert [value.dtype for value in outputs] == [np.float32] * 3
    np.testing.assert_allclose(outputs[0], _reference_lstm(args, "rnn")[0], rtol=1e-5, atol=1e-6)


GRADCHECK_CASES = [
    # (T, N, H, initial states)
    (1, 1, 2, ()),
    (1, 2, 5, ("state", "state_cell")),
    (3, 2, 2, ()),
    (3, 1, 5, ("state",)),
    (3, 2, 2, ("state_cell",)),
    (3, 2, 5, ("state", "state_cell")),
]


@pytest.mark.parametrize(("T", "N", "H", "states"), GRADCHECK_CASES)
def test_gradcheck_every_input(T, N, H, states):
    symbol = _build("rnn", H, states)
    args = _random_args("rnn", T, N, I=3, H=H, states=states, seed=T * 10 + N + H)
    # The objective projects all three outputs (output, state, state_cell).
    assert len(symbol) == 3
    errors = gc.gradcheck(symbol, args)
    assert set(errors) == set(args)
    assert max(errors.values()) < 1e-6, errors


def test_gradcheck_through_selected_outputs():
    rnn = _build("rnn", 2, ("state", "state_cell"))
    # Only the final cell and a later op on the hidden states: the state gradient is zeros.
    objective = gc.Group([rnn[2], gc.tanh(rnn[0])])
    args = _random_args("rnn", 3, N=2, I=3, H=2, states=("state", "state_cell"), seed=5)
    errors = gc.gradcheck(objective, args)
    assert max(errors.values()) < 1e-6, errors


def test_gradient_of_data_only_uses_one_backward_node():
    rnn = _build("rnn", 2, ())
    (d_data,) = gc.grad(rnn, ["data"])
    backward_nodes = [node for node in d_data.graph.nodes if node.op == "_lstm_backward"]
    assert len(backward_nodes) == 1
    args = _random_args("rnn", 2, N=2, I=3, H=2, states=(), seed=6)
    (value,) = gc.evaluate(d_data, args)
    assert value.shape == (2, 2, 3)


def test_second_derivative_is_a_clear_gradient_error():
    rnn = _build("rnn", 2, ())
    (d_weight,) = gc.grad(gc.sum(rnn[0]), ["rnn_h2h_weight"])
    with pytest.raises(gc.GradientError, match="_lstm_backward"):
        gc.grad(gc.sum(d_weight), ["data"])


def test_infer_shape_fills_parameters():
    rnn = gc.LSTM(gc.Variable("data"), num_hidden=6, name="lstm")
    assert rnn.list_arguments() == [
        "data",
        "lstm_i2h_weight",
        "lstm_h2h_weight",
        "lstm_i2h_bias",
        "lstm_h2h_bias",
    ]
    assert rnn.list_outputs() == ["lstm_output", "lstm_state", "lstm_state_cell"]
    arg_shapes, out_shapes, aux_shapes = rnn.infer_shape(data=(5, 4, 3))
    assert arg_shapes == [(5, 4, 3), (24, 3), (24, 6), (24,), (24,)]
    assert out_shapes == [(5, 4, 6), (4, 6), (4, 6)]
    assert aux_shapes == []


def test_infer_shape_fills_initial_states():
    rnn = gc.LSTM(
        gc.Variable("data"),
        num_hidden=6,
        state=gc.Variable("h0"),
        state_cell=gc.Variable("c0"),
        name="lstm",
    )
    names = rnn.list_arguments()
    assert names[:5] == [
        "data",
        "lstm_i2h_weight",
        "lstm_h2h_weight",
        "lstm_i2h_bias",
        "lstm_h2h_bias",
    ]
    assert names[5:] == ["h0", "c0"]
    arg_shapes, _, _ = rnn.infer_shape(data=(5, 4, 3))
    assert arg_shapes[5:] == [(4, 6), (4, 6)]


def test_explicit_parameters_are_used():
    weight = gc.Variable("shared_i2h")
    rnn = gc.LSTM(gc.Variable("data"), num_hidden=2, i2h_weight=weight, name="lstm")
    assert rnn.list_arguments()[1] == "shared_i2h"
    assert rnn.infer_shape(data=(1, 1, 3))[0][1] == (8, 3)


def test_data_that_is_not_3d_is_a_shape_error_naming_the_node():
    rnn = gc.LSTM(gc.Variable("data"), num_hidden=4, name="bad_lstm")
    with pytest.raises(gc.ShapeError, match="bad_lstm") as info:
        rnn.infer_shape(data=(5, 3))
    assert "3-D" in str(info.value)


def test_state_of_wrong_shape_is_a_shape_error():
    rnn = gc.LSTM(gc.Variable("data"), num_hidden=4, state=gc.Variable("h0"), name="bad_state")
    with pytest.raises(gc.ShapeError, match="bad_state.*state has shape"):
        rnn.infer_shape(data=(5, 2, 3), h0=(2, 5))


def test_num_hidden_zero_is_a_value_error_naming_the_attribute():
    with pytest.raises(ValueError, match="num_hidden"):
        gc.LSTM(gc.Variable("data"), num_hidden=0, name="lstm")


def test_long_sequence_needs_no_recursion():
    T, H = 300, 2
    rnn = _build("rnn", H, ("state", "state_cell"))
    args = _random_args("rnn", T, N=2, I=3, H=H, states=("state", "state_cell"), seed=7)
    limit = sys.getrecursionlimit()
    # Far fewer frames than steps: anything that recursed per step would fail here.
    sys.setrecursionlimit(len(inspect.stack()) + 100)
    try:
        output, state, _ = gc.evaluate(rnn, args)
        errors = gc.gradcheck(rnn, args, wrt=["rnn_h2h_bias", "state"])
        (d_data,) = gc.grad(rnn, ["data"])
        (d_data_value,) = gc.evaluate(d_data, args)
    finally:
        sys.setrecursionlimit(limit)
    np.testing.assert_allclose(output, _reference_lstm(args, "rnn")[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(state, output[-1])
    assert max(errors.values()) < 1e-6, errors
    assert d_data_value.shape == (T, 2, 3) and np.all(np.isfinite(d_data_value))
