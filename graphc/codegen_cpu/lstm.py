"""CPU kernels for ``LSTM`` and ``_lstm_backward``: the whole time loop in one Numba function.

What the ops compute is defined by their NumPy references in ``graphc/ir/ops/lstm.py``; these
kernels follow them operation for operation (same sigmoid, same order of additions; float32
tanh is ``fast_tanh``, a rational approximation) and differ only in where the work happens:

- the input projection of every step is one GEMM, (T*N, I) x (I, 4H);
- each step is one recurrent GEMM, (N, H) x (H, 4H), into a preallocated buffer, then one
  fused loop over (N, H) for the gate nonlinearities and the cell update;
- backward through time is one loop of the same shape, and the weight and data gradients
  are one GEMM each over all steps once the loop has produced every step's dz.

All functions are ``numba.njit(cache=True)`` at module level, so Numba's on-disk cache
keeps them between processes, and a sequence length is a run-time value: T=1 and T=200 run
the same compiled specialisation (one per dtype and input layout). ``np.dot(a, b, out)``
writes into ``out``, so a call allocates nothing: the contiguous copies of the inputs that
BLAS needs and every temporary are workspace buffers whose shapes the lowering declares.

Inputs may have any strides; outputs must be C-contiguous, as the calling convention in
``lowering.py`` promises, because the GEMMs write into 2-D views of them.

The optional initial states change the node's argument list; each kernel's ``prepare``
turns it into one fixed signature at bind: the states (or, where absent, a workspace
buffer standing in that is never read) and two flags, so one entry point per op fills the
``h_initial`` and ``c_initial`` workspace buffers (from the input or with zeros) and calls
the shared body.
"""

from __future__ import annotations

import inspect

import numba
import numpy as np

from graphc.backend.lowering import Kernel, NodeSpec, lowering, uniform_float_dtype
from graphc.codegen_cpu.scalar_functions import fast_tanh
from graphc.codegen_cpu.target import TARGET

# -- shared helpers ----------------------------------------------------------------------------


@numba.njit(cache=True)
def _copy_rows(sequence, rows):
    """rows (T*N, F) <- sequence (T, N, F) of any strides."""
    steps, batch, features = sequence.shape
    for t in range(steps):
        for n in range(batch):
            for k in range(features):
                rows[t * batch + n, k] = sequence[t, n, k]


@numba.njit(cache=True)
def _copy_transposed(matrix, transposed):
    """transposed (K, R) <- matrix (R, K)^T, so that BLAS reads a contiguous operand."""
    for r in range(matrix.shape[0]):
        for k in range(matrix.shape[1]):
            transposed[k, r] = matrix[r, k]


@numba.njit(cache=True)
def _sigmoid(x, half, one):
    # The reference's tanh form: never overflows, unlike 1 / (1 + exp(-x)). The constants
    # arrive typed as the data so that float32 math stays float32.
    return half * (fast_tanh(half * x) + one)


@numba.njit(cache=True)
def _pre_activation(gates, recurrent, i2h_bias, h2h_bias, t, n, r):
    """z[t, n, r] from the projection held in gates; the reference's order of additions."""
    return gates[t, n, r] + i2h_bias[r] + h2h_bias[r] + recurrent[n, r]


# -- LSTM --------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _forward_steps(
    data,
    i2h_weight,
    h2h_weight,
    i2h_bias,
    h2h_bias,
    output,
    final_state,
    final_cell,
    gates,
    cells,
    data_rows,
    i2h_weight_t,
    h2h_weight_t,
    recurrent,
    h_initial,
    c_initial,
):
    """The forward over all steps from h_initial, c_initial (already filled)."""
    steps, batch, _ = data.shape
    hidden = h2h_weight.shape[1]
    half = gates.dtype.type(0.5)
    one = gates.dtype.type(1.0)
    _copy_rows(data, data_rows)
    _copy_transposed(i2h_weight, i2h_weight_t)
    _copy_transposed(h2h_weight, h2h_weight_t)
    if steps > 0:
        # The projections land in the gates output, which each step then overwrites with
        # its activations: one (T*N, 4H) buffer serves both, instead of a workspace as big.
        np.dot(data_rows, i2h_weight_t, gates.reshape((steps * batch, 4 * hidden)))
    for t in range(steps):
        h_prev = h_initial if t == 0 else output[t - 1]
        np.dot(h_prev, h2h_weight_t, recurrent)
        for n in range(batch):
            for j in range(hidden):
                zi = _pre_activation(gates, recurrent, i2h_bias, h2h_bias, t, n, j)
                zf = _pre_activation(gates, recurrent, i2h_bias, h2h_bias, t, n, hidden + j)
                zg = _pre_activation(gates, recurrent, i2h_bias, h2h_bias, t, n, 2 * hidden + j)
                zo = _pre_activation(gates, recurrent, i2h_bias, h2h_bias, t, n, 3 * hidden + j)
                i = _sigmoid(zi, half, one)
                f = _sigmoid(zf, half, one)
                g = fast_tanh(zg)
                o = _sigmoid(zo, half, one)
                c_prev = c_initial[n, j] if t == 0 else cells[t - 1, n, j]
                c = f * c_prev + i * g
                gates[t, n, j] = i
                gates[t, n, hidden + j] = f
                gates[t, n, 2 * hidden + j] = g
                gates[t, n, 3 * hidden + j] = o
                cells[t, n, j] = c
                output[t, n, j] = o * fast_tanh(c)
    if steps > 0:
        final_state[:] = output[steps - 1]
        final_cell[:] = cells[steps - 1]
    else:
        final_state[:] = h_initial
        final_cell[:] = c_initial


@numba.njit(cache=True)
def _initial_state(target, source, given):
    """target = source where the state was given, else zeros."""
    if given:
        target[:] = source
    else:
        target[:] = 0


# The last six parameters are the workspace that lower_lstm declares, in that order.


@numba.njit(cache=True)
def lstm_forward(
    data, i2h_weight, h2h_weight, i2h_bias, h2h_bias, state, state_cell, has_state, has_state_cell,
    output, final_state, final_cell, gates, cells,
    data_rows, i2h_weight_t, h2h_weight_t, recurrent, h_initial, c_initial,
):  # fmt: skip
    _initial_state(h_initial, state, has_state)
    _initial_state(c_initial, state_cell, has_state_cell)
    _forward_steps(
        data, i2h_weight, h2h_weight, i2h_bias, h2h_bias,
        output, final_state, final_cell, gates, cells,
        data_rows, i2h_weight_t, h2h_weight_t, recurrent, h_initial, c_initial,
    )  # fmt: skip


# -- _lstm_backward ----------------------------------------------------------------------------


@numba.njit(cache=True)
def _backward_steps(
    d_output,
    d_state,
    d_state_cell,
    data,
    i2h_weight,
    h2h_weight,
    output,
    gates,
    cells,
    data_grad,
    i2h_weight_grad,
    h2h_weight_grad,
    i2h_bias_grad,
    h2h_bias_grad,
    d_gates,
    data_rows,
    h_prev_rows,
    i2h_weight_c,
    h2h_weight_c,
    h_initial,
    c_initial,
    dh_next,
    dc_next,
):
    """Backpropagation through time from h_initial, c_initial (already filled). Leaves the
    gradients at the initial states in dh_next and dc_next."""
    steps, batch, features = data.shape
    hidden = h2h_weight.shape[1]
    one = d_gates.dtype.type(1.0)
    _copy_rows(data, data_rows)
    h_prev_rows[:batch] = h_initial
    if steps > 1:
        _copy_rows(output[: steps - 1], h_prev_rows[batch:])
    i2h_weight_c[:] = i2h_weight
    h2h_weight_c[:] = h2h_weight
    dh_next[:] = d_state
    dc_next[:] = d_state_cell
    for t in range(steps - 1, -1, -1):
        for n in range(batch):
            for j in range(hidden):
                i = gates[t, n, j]
                f = gates[t, n, hidden + j]
                g = gates[t, n, 2 * hidden + j]
                o = gates[t, n, 3 * hidden + j]
                c_prev = c_initial[n, j] if t == 0 else cells[t - 1, n, j]
                tanh_c = fast_tanh(cells[t, n, j])
                dh = d_output[t, n, j] + dh_next[n, j]
                dc = dc_next[n, j] + dh * o * (one - tanh_c * tanh_c)
                # Gradients at the pre-activations: sigmoid' = s (1 - s), tanh' = 1 - t^2.
                d_gates[t, n, j] = dc * g * i * (one - i)
                d_gates[t, n, hidden + j] = dc * c_prev * f * (one - f)
                d_gates[t, n, 2 * hidden + j] = dc * i * (one - g * g)
                d_gates[t, n, 3 * hidden + j] = dh * tanh_c * o * (one - o)
                dc_next[n, j] = dc * f
        np.dot(d_gates[t], h2h_weight_c, dh_next)

    rows = steps * batch
    dz_rows = d_gates.reshape((rows, 4 * hidden))
    if steps > 0:
        np.dot(dz_rows, i2h_weight_c, data_grad.reshape((rows, features)))
        np.dot(dz_rows.T, data_rows, i2h_weight_grad)
        np.dot(dz_rows.T, h_prev_rows, h2h_weight_grad)
    else:
        i2h_weight_grad[:] = 0
        h2h_weight_grad[:] = 0
    i2h_bias_grad[:] = 0
    for row in range(rows):
        for r in range(4 * hidden):
            i2h_bias_grad[r] += dz_rows[row, r]
    h2h_bias_grad[:] = i2h_bias_grad


# The last nine parameters are the workspace that lower_lstm_backward declares, in order.


@numba.njit(cache=True)
def lstm_backward(
    d_output, d_state, d_state_cell, data, i2h_weight, h2h_weight,
    state, state_cell, has_state, has_state_cell, output, gates, cells,
    data_grad, i2h_weight_grad, h2h_weight_grad, i2h_bias_grad, h2h_bias_grad,
    state_grad, state_cell_grad,
    d_gates, data_rows, h_prev_rows, i2h_weight_c, h2h_weight_c,
    h_initial, c_initial, dh_next, dc_next,
):  # fmt: skip
    _initial_state(h_initial, state, has_state)
    _initial_state(c_initial, state_cell, has_state_cell)
    _backward_steps(
        d_output, d_state, d_state_cell, data, i2h_weight, h2h_weight, output, gates, cells,
        data_grad, i2h_weight_grad, h2h_weight_grad, i2h_bias_grad, h2h_bias_grad,
        d_gates, data_rows, h_prev_rows, i2h_weight_c, h2h_weight_c,
        h_initial, c_initial, dh_next, dc_next,
    )  # fmt: skip
    if has_state:
        state_grad[:] = dh_next
    if has_state_cell:
        state_cell_grad[:] = dc_next


# -- lowerings ---------------------------------------------------------------------------------


def _flags(spec: NodeSpec) -> tuple[bool, bool]:
    return bool(spec.attrs["has_state"]), bool(spec.attrs["has_state_cell"])


def _optional(values: list, given: bool, stand_in):
    """The next of ``values`` when it was given, else ``stand_in`` (never read)."""
    return values.pop(0) if given else stand_in


def _forward_prepare(has_state: bool, has_state_cell: bool):
    def prepare(inputs, outputs, workspace):
        states = list(inputs[5:])
        h_initial, c_initial = workspace[-2], workspace[-1]
        state = _optional(states, has_state, h_initial)
        state_cell = _optional(states, has_state_cell, c_initial)
        flags = (has_state, has_state_cell)
        return (*inputs[:5], state, state_cell, *flags, *outputs, *workspace)

    return prepare


def _backward_prepare(has_state: bool, has_state_cell: bool):
    def prepare(inputs, outputs, workspace):
        states = list(inputs[6:-3])
        grads = list(outputs[5:])
        h_initial, c_initial, dh_next, dc_next = workspace[-4:]
        state = _optional(states, has_state, h_initial)
        state_cell = _optional(states, has_state_cell, c_initial)
        state_grad = _optional(grads, has_state, dh_next)
        state_cell_grad = _optional(grads, has_state_cell, dc_next)
        flags = (has_state, has_state_cell)
        return (
            *inputs[:6], state, state_cell, *flags, *inputs[-3:],
            *outputs[:5], state_grad, state_cell_grad, *workspace,
        )  # fmt: skip

    return prepare


def _source(*functions) -> str:
    return "\n\n".join(inspect.getsource(function.py_func) for function in functions)


@lowering(TARGET, "LSTM")
def lower_lstm(spec: NodeSpec) -> Kernel:
    """The forward kernel of one LSTM node; its workspace is data as (T*N, I) rows, both
    weights transposed, one step's recurrent product (N, 4H) and the initial states.

    >>> import numpy as np
    >>> spec = NodeSpec("LSTM", "rnn", {"num_hidden": 2, "has_state": False,
    ...     "has_state_cell": False}, ((3, 1, 5), (8, 5), (8, 2), (8,), (8,)),
    ...     (np.dtype("float64"),) * 5, ((3, 1, 2), (1, 2), (1, 2), (3, 1, 8), (3, 1, 2)),
    ...     (np.dtype("float64"),) * 5)
    >>> [shape for shape, dtype in lower_lstm(spec).workspace]
    [(3, 5), (5, 8), (2, 8), (1, 8), (1, 2), (1, 2)]
    """
    dtype = uniform_float_dtype(spec)
    steps, batch, features = spec.in_shapes[0]
    hidden = spec.attrs["num_hidden"]
    workspace = (
        ((steps * batch, features), dtype),
        ((features, 4 * hidden), dtype),
        ((hidden, 4 * hidden), dtype),
        ((batch, 4 * hidden), dtype),
        ((batch, hidden), dtype),
        ((batch, hidden), dtype),
    )
    return Kernel(
        fn=lstm_forward, workspace=workspace, name="lstm_forward",
        source=_source(lstm_forward, _forward_steps), prepare=_forward_prepare(*_flags(spec)),
    )  # fmt: skip


@lowering(TARGET, "_lstm_backward")
def lower_lstm_backward(spec: NodeSpec) -> Kernel:
    """The backward kernel of one _lstm_backward node; its workspace is every step's dz
    (T, N, 4H), data and the previous hidden states as rows, contiguous copies of both
    weights, the initial states and the gradients flowing to the previous step.

    >>> import numpy as np
    >>> spec = NodeSpec("_lstm_backward", "rnn_backward", {"num_hidden": 2,
    ...     "has_state": False, "has_state_cell": False},
    ...     ((3, 1, 2), (1, 2), (1, 2), (3, 1, 5), (8, 5), (8, 2), (3, 1, 2), (3, 1, 8),
    ...     (3, 1, 2)), (np.dtype("float32"),) * 9, ((3, 1, 5), (8, 5), (8, 2), (8,), (8,)),
    ...     (np.dtype("float32"),) * 5)
    >>> [shape for shape, dtype in lower_lstm_backward(spec).workspace][:3]
    [(3, 1, 8), (3, 5), (3, 2)]
    """
    dtype = uniform_float_dtype(spec)
    steps, batch, features = spec.in_shapes[3]
    hidden = spec.attrs["num_hidden"]
    workspace = (
        ((steps, batch, 4 * hidden), dtype),
        ((steps * batch, features), dtype),
        ((steps * batch, hidden), dtype),
        ((4 * hidden, features), dtype),
        ((4 * hidden, hidden), dtype),
        ((batch, hidden), dtype),
        ((batch, hidden), dtype),
        ((batch, hidden), dtype),
        ((batch, hidden), dtype),
    )
    return Kernel(
        fn=lstm_backward, workspace=workspace, name="lstm_backward",
        source=_source(lstm_backward, _backward_steps), prepare=_backward_prepare(*_flags(spec)),
    )  # fmt: skip
