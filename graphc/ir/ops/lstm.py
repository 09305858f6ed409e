"""LSTM: one unidirectional layer over a time-major sequence, and its backward primitive.

The whole sequence is one node, so a long sequence adds no graph depth. Its gradient is one
``_lstm_backward`` node (backpropagation through time) that reads the hidden outputs the
forward keeps: the post-activation gates and the cell state of every step.

Gates are stacked along the 4H axis in MXNet's (and PyTorch's) order: input, forget, cell,
output. For each step t, with h and c the previous hidden and cell state::

    z = x_t W_i^T + b_i + h W_h^T + b_h
    i, f, g, o = sigmoid(z[0:H]), sigmoid(z[H:2H]), tanh(z[2H:3H]), sigmoid(z[3H:4H])
    c_t = f * c + i * g
    h_t = o * tanh(c_t)
"""

from __future__ import annotations

import numpy as np

from graphc.ir.registry import Attr, OpDef, fill, known, register, require
from graphc.ir.symbol import Symbol, apply_op

_WEIGHTS_AND_BIASES = ("data", "i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")

_STATE_ATTRS = (
    Attr("num_hidden", "int", low=1, doc="H, the size of the hidden and cell state"),
    Attr("has_state", "bool", False, doc="the initial hidden state is an input (else zeros)"),
    Attr("has_state_cell", "bool", False, doc="the initial cell state is an input (else zeros)"),
)


def _state_inputs(attrs) -> tuple[str, ...]:
    """The optional initial-state inputs, in order, that these attributes include."""
    names = ()
    if attrs.get("has_state"):
        names += ("state",)
    if attrs.get("has_state_cell"):
        names += ("state_cell",)
    return names


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # tanh form: exact in float64 and never overflows, unlike 1 / (1 + exp(-x)).
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def _initial_states(attrs, state_values: list, batch: int, dtype) -> tuple:
    """(h0, c0) from the optional state inputs, zeros for the absent ones."""
    hidden = attrs["num_hidden"]
    given = dict(zip(_state_inputs(attrs), state_values, strict=True))
    zeros = np.zeros((batch, hidden), dtype=dtype)
    return given.get("state", zeros), given.get("state_cell", zeros)


# -- LSTM ----------------------------------------------------------------------------------


def _lstm_inputs(attrs) -> tuple[str, ...]:
    return _WEIGHTS_AND_BIASES + _state_inputs(attrs)


def _lstm_shape(attrs, in_shapes):
    data = known(in_shapes[0], "data")
    require(len(data) == 3, f"data must be 3-D (seq_length, batch, input_size), not {data}")
    steps, batch, features = data
    hidden = attrs["num_hidden"]
    shapes = [
        data,
        fill(in_shapes[1], (4 * hidden, features), "i2h_weight"),
        fill(in_shapes[2], (4 * hidden, hidden), "h2h_weight"),
        fill(in_shapes[3], (4 * hidden,), "i2h_bias"),
        fill(in_shapes[4], (4 * hidden,), "h2h_bias"),
    ]
    for offset, state_name in enumerate(_state_inputs(attrs)):
        shapes.append(fill(in_shapes[5 + offset], (batch, hidden), state_name))
    out = [
        (steps, batch, hidden),
        (batch, hidden),
        (batch, hidden),
        (steps, batch, 4 * hidden),
        (steps, batch, hidden),
    ]
    return shapes, out


def _lstm_forward(attrs, inputs, ctx):
    data, i2h_weight, h2h_weight, i2h_bias, h2h_bias = inputs[:5]
    steps, batch, _ = data.shape
    hidden = attrs["num_hidden"]
    dtype = np.result_type(*inputs)
    h, c = _initial_states(attrs, inputs[5:], batch, dtype)
    output = np.empty((steps, batch, hidden), dtype=dtype)
    gates = np.empty((steps, batch, 4 * hidden), dtype=dtype)
    cells = np.empty((steps, batch, hidden), dtype=dtype)
    # The input projection does not depend on h, so all steps take it in one product.
    projected = data @ i2h_weight.T + i2h_bias + h2h_bias
    for t in range(steps):
        z = projected[t] + h @ h2h_weight.T
        i = _sigmoid(z[:, :hidden])
        f = _sigmoid(z[:, hidden : 2 * hidden])
        g = np.tanh(z[:, 2 * hidden : 3 * hidden])
        o = _sigmoid(z[:, 3 * hidden :])
        c = f * c + i * g
        h = o * np.tanh(c)
        gates[t] = np.concatenate([i, f, g, o], axis=1)
        cells[t] = c
        output[t] = h
    return [output, h, c, gates, cells]


def _lstm_grad(args):
    """One ``_lstm_backward`` node gives the gradients of every input at once."""
    names = _lstm_inputs(args.attrs)
    given = dict(zip(names, args.inputs, strict=True))
    states = [given[state_name] for state_name in _state_inputs(args.attrs)]
    forward_inputs = [given["data"], given["i2h_weight"], given["h2h_weight"], *states]
    output, gates, cells = args.outputs[0], args.outputs[3], args.outputs[4]
    backward_inputs = [*args.out_grads, *forward_inputs, output, gates, cells]
    backward = apply_op("_lstm_backward", backward_inputs, dict(args.attrs))
    return [backward[index] if wanted else None for index, wanted in enumerate(args.wants)]


register(
    OpDef(
        name="LSTM",
        inputs=_lstm_inputs,
        outputs=("output", "state", "state_cell"),
        hidden_outputs=("gates", "cells"),
        params=("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias"),
        attrs=_STATE_ATTRS,
        infer_shape=_lstm_shape,
        forward=_lstm_forward,
        grad=_lstm_grad,
        doc="A single-layer unidirectional LSTM over data (T, N, I): outputs every hidden "
        "state (T, N, H) and the final state and state_cell (N, H). Gate order i, f, g, o.",
    )
)


# -- _lstm_backward --------------------------------------------------------------------------


def _backward_inputs(attrs) -> tuple[str, ...]:
    head = ("d_output", "d_state", "d_state_cell", "data", "i2h_weight", "h2h_weight")
    return head + _state_inputs(attrs) + ("output", "gates", "cells")


def _backward_outputs(attrs) -> tuple[str, ...]:
    return tuple(f"{name}_grad" for name in _WEIGHTS_AND_BIASES + _state_inputs(attrs))


def _backward_shape(attrs, in_shapes):
    data = known(in_shapes[3], "data")
    require(len(data) == 3, f"data must be 3-D (seq_length, batch, input_size), not {data}")
    steps, batch, features = data
    hidden = attrs["num_hidden"]
    weights = [(4 * hidden, features), (4 * hidden, hidden)]
    biases = [(4 * hidden,), (4 * hidden,)]
    states = [(batch, hidden)] * len(_state_inputs(attrs))
    state_grad = (batch, hidden)
    sequence = (steps, batch, hidden)
    expected = [sequence, state_grad, state_grad, data, *weights, *states]
    expected += [sequence, (steps, batch, 4 * hidden), sequence]
    names = _backward_inputs(attrs)
    shapes = [
        fill(shape, want, name)
        for shape, want, name in zip(in_shapes, expected, names, strict=True)
    ]
    return shapes, [data, *weights, *biases, *states]


def _backward_forward(attrs, inputs, ctx):
    """Backpropagation through time, last step first."""
    d_output, d_state, d_state_cell, data, i2h_weight, h2h_weight = inputs[:6]
    n_states = len(_state_inputs(attrs))
    output, gates, cells = inputs[6 + n_states :]
    steps, batch, features = data.shape
    hidden = attrs["num_hidden"]
    dtype = np.result_type(*inputs)
    h0, c0 = _initial_states(attrs, inputs[6 : 6 + n_states], batch, dtype)

    d_gates = np.empty((steps, batch, 4 * hidden), dtype=dtype)
    d_h2h_weight = np.zeros((4 * hidden, hidden), dtype=dtype)
    dh_next, dc_next = d_state.astype(dtype), d_state_cell.astype(dtype)
    for t in reversed(range(steps)):
        h_prev = output[t - 1] if t > 0 else h0
        c_prev = cells[t - 1] if t > 0 else c0
        i = gates[t, :, :hidden]
        f = gates[t, :, hidden : 2 * hidden]
        g = gates[t, :, 2 * hidden : 3 * hidden]
        o = gates[t, :, 3 * hidden :]
        tanh_c = np.tanh(cells[t])
        dh = d_output[t] + dh_next
        dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)
        # Gradients at the pre-activations z: sigmoid' = s (1 - s), tanh' = 1 - t^2.
        dz = np.concatenate(
            [
                dc * g * i * (1.0 - i),
                dc * c_prev * f * (1.0 - f),
                dc * i * (1.0 - g * g),
                dh * tanh_c * o * (1.0 - o),
            ],
            axis=1,
        )
        d_gates[t] = dz
        d_h2h_weight += dz.T @ h_prev
        dh_next = dz @ h2h_weight
        dc_next = dc * f

    dz_rows = d_gates.reshape(steps * batch, 4 * hidden)
    d_data = d_gates @ i2h_weight
    d_i2h_weight = dz_rows.T @ data.reshape(steps * batch, features)
    d_bias = dz_rows.sum(axis=0)
    results = [d_data, d_i2h_weight, d_h2h_weight, d_bias, d_bias.copy()]
    state_grads = {"state": dh_next, "state_cell": dc_next}
    results += [state_grads[name] for name in _state_inputs(attrs)]
    return results


register(
    OpDef(
        name="_lstm_backward",
        inputs=_backward_inputs,
        outputs=_backward_outputs,
        attrs=_STATE_ATTRS,
        infer_shape=_backward_shape,
        forward=_backward_forward,
        grad=None,
        doc="The gradients of LSTM's inputs (data, weights, biases, given states) from the "
        "gradients at its outputs, by backpropagation through time. Second derivatives of "
        "LSTM are not supported.",
    )
)


def LSTM(
    data: Symbol,
    num_hidden: int,
    state: Symbol | None = None,
    state_cell: Symbol | None = None,
    i2h_weight: Symbol | None = None,
    h2h_weight: Symbol | None = None,
    i2h_bias: Symbol | None = None,
    h2h_bias: Symbol | None = None,
    name: str | None = None,
) -> Symbol:
    """A single-layer unidirectional LSTM over a time-major sequence.

    ``data`` is (T, N, I). Weights and biases not given are created as variables
    ``{name}_i2h_weight`` (4H, I), ``{name}_h2h_weight`` (4H, H), ``{name}_i2h_bias`` and
    ``{name}_h2h_bias`` (4H,). ``state`` and ``state_cell`` (N, H) are the initial hidden and
    cell state; zeros when not given. Returns three outputs: ``output`` (T, N, H), every
    hidden state, and the final ``state`` and ``state_cell`` (N, H).

    >>> import graphc as gc
    >>> rnn = gc.LSTM(gc.Variable("x"), num_hidden=6, name="lstm")
    >>> rnn.infer_shape(x=(5, 4, 3))[1]
    [(5, 4, 6), (4, 6), (4, 6)]
    """
    attrs = {
        "num_hidden": num_hidden,
        "has_state": state is not None,
        "has_state_cell": state_cell is not None,
    }
    inputs = [data, i2h_weight, h2h_weight, i2h_bias, h2h_bias]
    inputs += [value for value in (state, state_cell) if value is not None]
    return apply_op("LSTM", inputs, attrs, name=name)


__all__ = ["LSTM"]
