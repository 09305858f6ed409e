"""CPU kernels for ``LSTM`` and ``_lstm_backward``: the whole time loop in one Numba function.

What the ops compute is defined by their NumPy references in ``graphc/ir/ops/lstm.py``; these
kernels follow them operation for operation (same sigmoid, same order of additions; float32
tanh is ``fast_tanh``, a rational approximation) and differ only in where the work happens:

- the input projection of every step is one GEMM, (T*N, I) x (I, 4H);
- each step is one recurrent GEMM, (N, H) x (H, 4H), into a preallocated buffer, then
  loops over (N, H) for the gate nonlinearities and the cell update; with several threads
  each takes a block of hidden units, all four gates of them (below, "LSTM");
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
buffer standing in that is never read) and two flags, so one kernel per op fills the
``h_initial`` and ``c_initial`` workspace buffers (from the input or with zeros) and runs
the steps itself (a wrapper calling a separate body optimized that body again).
"""

from __future__ import annotations

import inspect

import numba
import numpy as np

from graphc.backend.lowering import Kernel, NodeSpec, lowering, uniform_float_dtype
from graphc.codegen_cpu.blas import gemm, row_range
from graphc.codegen_cpu.parts import (
    frame_arguments,
    part_frame,
    parts_call,
    parts_cell,
    run_parts,
)
from graphc.codegen_cpu.scalar_functions import fast_tanh
from graphc.codegen_cpu.target import TARGET
from graphc.codegen_cpu.threads import parallel_parts

# Forward GEMM flops of one LSTM node from which it splits its work over threads.
PARALLEL_FLOPS = 2_000_000

# -- shared helpers ----------------------------------------------------------------------------

# Gate loops index with unsigned integers: with signed ones Numba adds a wraparound select
# to every access and LLVM does not vectorize the loop (as in conv.py). They are compiled
# with NumPy's error model, because Python's adds a division-by-zero check to fast_tanh's
# quotient, which also stops vectorization.
_u = numba.uint64
_GATES = {"cache": True, "error_model": "numpy"}


@numba.njit(cache=True)
def _copy_rows(sequence, rows, first, last):
    """rows[r] <- sequence[r // N, r % N] for r in [first, last): (T, N, F) of any strides
    into (T*N, F) rows."""
    batch, features = sequence.shape[1], sequence.shape[2]
    for r in range(first, last):
        t, n = divmod(r, batch)
        for k in range(features):
            rows[r, k] = sequence[t, n, k]


@numba.njit(cache=True)
def _copy_transposed(matrix, transposed):
    """transposed (K, R) <- matrix (R, K)^T, so that BLAS reads a contiguous operand."""
    for r in range(matrix.shape[0]):
        for k in range(matrix.shape[1]):
            transposed[k, r] = matrix[r, k]


# -- LSTM --------------------------------------------------------------------------------------
#
# The time loop splits the hidden units into ``parts`` ranges, one per thread: at each step
# a part computes the recurrent product of all four gates of its units, (N, H) x (H, 4 u),
# from a contiguous block of the weight laid out for it (``_copy_unit_blocks``), and runs
# the gate loop over its units for every row. The next step reads every unit of h, so each
# step is one parallel region. Splitting the batch instead needed no step-by-step
# synchronisation, but gave each thread the less efficient GEMM: CharLM's
# (64, 256) x (256, 1024) ran at 103 GFLOP/s on one core against 141 for
# (128, 256) x (256, 512), and 100 steps of a two-thread loop took 36 ms split by rows
# against 29 ms split by units, region per step included. The GEMMs over all steps split
# their output rows.


@numba.njit(cache=True)
def _units(part, parts, hidden):
    """Hidden units [first, last) of part ``part``."""
    return row_range(part, parts, hidden)


# Widths of a block per unit, typed int64: a literal 4 or 1 in the calls made Numba compile
# _unit_block once for each.
_GATE_COUNT = np.int64(4)
_ONE_COLUMN = np.int64(1)


@numba.njit(cache=True)
def _unit_block(blocks, rows, width, part, parts):
    """Part ``part``'s block of the flat buffer ``blocks``, which holds for every part in
    order a contiguous (rows, width * its units) matrix (``_units``). The buffers are
    declared flat, so this is one reshape of a slice."""
    first, last = _units(part, parts, blocks.size // (rows * width))
    return blocks[rows * width * first : rows * width * last].reshape(rows, width * (last - first))


@numba.njit(cache=True)
def _copy_unit_blocks(h2h_weight, blocks, parts):
    """Part p's block of ``blocks`` (H, 4 u): column g*u + k is h2h_weight's row for gate g
    of unit first + k, so that the part's recurrent GEMM yields its units' four gates."""
    hidden = h2h_weight.shape[1]
    for part in range(parts):
        first, last = _units(part, parts, hidden)
        units = last - first
        block = _unit_block(blocks, hidden, _GATE_COUNT, part, parts)
        for k in range(hidden):
            for gate in range(4):
                for j in range(units):
                    block[k, gate * units + j] = h2h_weight[gate * hidden + first + j, k]


@numba.njit(**_GATES)
def _gate_units(z, recurrent, i2h_bias, h2h_bias, c_prev, cells, output, first, last):
    """Step activations of units [first, last) for every row: z (N, 4H) holds the input
    projection and receives i, f, g, o; ``recurrent`` (N, 4 u) is the part's recurrent
    product, gate by gate, and is overwritten with the activations; the reference's order
    of additions.

    One loop per gate and row, each writing one run of memory: written as one loop over the
    units writing four gates of z, LLVM could not tell the writes from the reads apart and
    left it scalar (352 us a step for CharLM's 128 rows x 128 units on one core, 63 us
    so). Rows are indexed in place, never taken as views: a view counts a reference on its
    array, and two threads counting on one array row after row contend for it (pool.py)."""
    hidden = cells.shape[1]
    units = last - first
    zero = z.dtype.type(0.0)
    half = z.dtype.type(0.5)
    one = z.dtype.type(1.0)
    own = _u(first)
    for n in range(z.shape[0]):
        row = _u(n)
        for gate in range(4):
            column = _u(gate * hidden + first)
            line = _u(gate * units)
            # One loop for both nonlinearities: sigmoid(x) = 0.5 tanh(0.5 x) + 0.5, the same
            # bits as the reference's 0.5 (tanh(0.5 x) + 1), which never overflows, unlike
            # 1 / (1 + exp(-x)) (halving is exact); tanh(x) = 1 tanh(1 x) + 0. A loop for
            # each cost a second vectorized copy to compile. The constants are typed as the
            # data, so that float32 math stays float32.
            scale = one if gate == 2 else half
            shift = zero if gate == 2 else half
            for k in range(units):
                u = _u(k)
                total = z[row, column + u] + i2h_bias[column + u] + h2h_bias[column + u]
                total = total + recurrent[row, line + u]
                recurrent[row, line + u] = scale * fast_tanh(scale * total) + shift
            for k in range(units):
                z[row, column + _u(k)] = recurrent[row, line + _u(k)]
        forget, cell_gate, out_gate = _u(units), _u(2 * units), _u(3 * units)
        for k in range(units):
            u = _u(k)
            i = recurrent[row, u]
            c = (
                recurrent[row, forget + u] * c_prev[row, own + u]
                + i * recurrent[row, cell_gate + u]
            )
            cells[row, own + u] = c
            output[row, own + u] = recurrent[row, out_gate + u] * fast_tanh(c)


@numba.njit(cache=True)
def _forward_step(
    gates, output, cells, recurrent, h2h_blocks, i2h_bias, h2h_bias, h_initial, c_initial,
    step, part, parts,
):  # fmt: skip
    """Step ``step`` for part ``part``'s hidden units."""
    one = gates.dtype.type(1.0)
    zero = gates.dtype.type(0.0)
    batch, hidden = h_initial.shape
    first, last = _units(part, parts, hidden)
    product = _unit_block(recurrent, batch, _GATE_COUNT, part, parts)
    weight = _unit_block(h2h_blocks, hidden, _GATE_COUNT, part, parts)
    if step == 0:
        gemm(one, h_initial, weight, zero, product)
        _gate_units(
            gates[0], product, i2h_bias, h2h_bias, c_initial, cells[0], output[0], first, last
        )
    else:
        gemm(one, output[step - 1], weight, zero, product)
        _gate_units(
            gates[step], product, i2h_bias, h2h_bias, cells[step - 1], cells[step],
            output[step], first, last,
        )  # fmt: skip


@numba.njit(cache=True)
def _copy(source, target):
    """target[...] = source for 2-D arrays of one shape, any strides. A loop rather than
    ``target[:] = source``, whose broadcasting check Numba compiles with its error
    formatting: 0.6-2.2 s of a cold CharLM start for the LSTM's few copies."""
    for i in range(target.shape[0]):
        for j in range(target.shape[1]):
            target[i, j] = source[i, j]


@numba.njit(cache=True)
def _initial_state(target, source, given):
    """target = source where the state was given, else zeros."""
    if given:
        _copy(source, target)
    else:
        target[:] = 0


# The six parameters before ``parts`` are the workspace that lower_lstm declares, in order.


@numba.njit(cache=True)
def _forward_phase(frame, part):
    """Part ``part`` of a phase of :func:`lstm_forward`: 0, the input projection of its
    block of the T*N rows; 1, step ``step`` for its block of hidden units."""
    (
        data, _, h2h_weight, i2h_bias, h2h_bias, _, _, _, _,
        output, _, _, gates, cells,
        data_rows, i2h_weight_t, h2h_blocks, recurrent, h_initial, c_initial, parts, _,
        phase, step,
    ) = frame_arguments(frame)  # fmt: skip
    steps, batch, _ = data.shape
    rows = steps * batch
    if phase == 0:
        # The projections land in the gates output, which each step then overwrites with
        # its activations: one (T*N, 4H) buffer serves both, instead of a workspace as big.
        projections = gates.reshape((rows, 4 * h2h_weight.shape[1]))
        first, last = row_range(part, parts, rows)
        _copy_rows(data, data_rows, first, last)
        one = gates.dtype.type(1.0)
        zero = gates.dtype.type(0.0)
        gemm(one, data_rows[first:last], i2h_weight_t, zero, projections[first:last])
    else:
        _forward_step(
            gates, output, cells, recurrent, h2h_blocks, i2h_bias, h2h_bias,
            h_initial, c_initial, step, part, parts,
        )  # fmt: skip


@numba.njit(cache=True)
def lstm_forward(
    data, i2h_weight, h2h_weight, i2h_bias, h2h_bias, state, state_cell, has_state, has_state_cell,
    output, final_state, final_cell, gates, cells,
    data_rows, i2h_weight_t, h2h_blocks, recurrent, h_initial, c_initial, parts, parts_entry,
):  # fmt: skip
    """The forward over all steps from the given states, or zeros: the input projection of
    every step split into ``parts`` by rows, then each step split into ``parts`` by hidden
    units (:func:`_forward_phase`, through ``parts_entry``)."""
    _initial_state(h_initial, state, has_state)
    _initial_state(c_initial, state_cell, has_state_cell)
    steps = data.shape[0]
    _copy_transposed(i2h_weight, i2h_weight_t)
    _copy_unit_blocks(h2h_weight, h2h_blocks, parts)
    for index in range(1 + steps):
        phase = min(index, 1)
        arguments = (
            data, i2h_weight, h2h_weight, i2h_bias, h2h_bias, state, state_cell, has_state,
            has_state_cell, output, final_state, final_cell, gates, cells,
            data_rows, i2h_weight_t, h2h_blocks, recurrent, h_initial, c_initial, parts,
            parts_entry, phase, index - 1,
        )  # fmt: skip
        run_parts(parts_entry, part_frame(parts_entry, arguments), parts)
    if steps > 0:
        _copy(output[steps - 1], final_state)
        _copy(cells[steps - 1], final_cell)
    else:
        _copy(h_initial, final_state)
        _copy(c_initial, final_cell)


# -- _lstm_backward ----------------------------------------------------------------------------


@numba.njit(**_GATES)
def _gate_gradient_units(d_output, gates, cells, c_prev, d_gates, dh, dc, first, last):
    """dz of units [first, last) for every row of one step, from the step's saved
    activations and the part's blocks ``dh`` and ``dc`` (N, u) of the gradients arriving
    from the next step (``dc`` is updated for the previous one). One loop per gate, each
    writing one run of memory, as in :func:`_gate_units` (118 us a step as one loop, 27 us
    so)."""
    hidden = cells.shape[1]
    units = last - first
    one = d_gates.dtype.type(1.0)
    i_, f_ = _u(first), _u(hidden + first)
    g_, o_ = _u(2 * hidden + first), _u(3 * hidden + first)
    for n in range(gates.shape[0]):
        row = _u(n)
        for k in range(units):  # dz of o, and dc through the output gate
            u = _u(k)
            o = gates[row, o_ + u]
            tanh_c = fast_tanh(cells[row, i_ + u])
            dh_value = d_output[row, i_ + u] + dh[row, u]
            # Gradients at the pre-activations: sigmoid' = s (1 - s), tanh' = 1 - t^2.
            d_gates[row, o_ + u] = dh_value * tanh_c * o * (one - o)
            dc[row, u] = dc[row, u] + dh_value * o * (one - tanh_c * tanh_c)
        for k in range(units):
            u = _u(k)
            i = gates[row, i_ + u]
            d_gates[row, i_ + u] = dc[row, u] * gates[row, g_ + u] * i * (one - i)
        for k in range(units):
            u = _u(k)
            f = gates[row, f_ + u]
            d_gates[row, f_ + u] = dc[row, u] * c_prev[row, i_ + u] * f * (one - f)
        for k in range(units):
            u = _u(k)
            g = gates[row, g_ + u]
            d_gates[row, g_ + u] = dc[row, u] * gates[row, i_ + u] * (one - g * g)
        for k in range(units):
            u = _u(k)
            dc[row, u] = dc[row, u] * gates[row, f_ + u]


@numba.njit(cache=True)
def _backward_step(d_output, gates, cells, c_initial, d_gates, dh_blocks, dc_blocks, h2h_blocks, step, part, parts):  # fmt: skip
    """Step ``step`` back through time for part ``part``'s hidden units: its block of the
    gradient at h from step + 1's dz of every unit (the next step's region wrote it), then
    its units' dz. ``step`` = -1: only the gradient at the initial h, from step 0's dz."""
    one = d_gates.dtype.type(1.0)
    zero = d_gates.dtype.type(0.0)
    steps, batch, hidden = cells.shape
    first, last = _units(part, parts, hidden)
    dh = _unit_block(dh_blocks, batch, _ONE_COLUMN, part, parts)
    dc = _unit_block(dc_blocks, batch, _ONE_COLUMN, part, parts)
    if step < steps - 1:  # the last step starts from the gradient at the final state
        weight = _unit_block(h2h_blocks, 4 * hidden, _ONE_COLUMN, part, parts)
        gemm(one, d_gates[step + 1], weight, zero, dh)
    if step == 0:
        _gate_gradient_units(
            d_output[0], gates[0], cells[0], c_initial, d_gates[0], dh, dc, first, last
        )
    elif step > 0:
        _gate_gradient_units(
            d_output[step], gates[step], cells[step], cells[step - 1], d_gates[step], dh, dc,
            first, last,
        )  # fmt: skip


# The two copies below are each other's inverse, written out: through ``_copy`` on column
# views they cost Numba two more specializations of it, 0.3 s of a cold CharLM start.


@numba.njit(cache=True)
def _copy_columns_to_blocks(matrix, blocks, parts):
    """Each part's block (R, u) of ``blocks`` <- its units' columns of ``matrix`` (R, H)
    (``_unit_block``): the recurrent weight (4H, H) for the GEMM of each step, and the
    gradients arriving at the final states."""
    rows, hidden = matrix.shape
    for part in range(parts):
        first, last = _units(part, parts, hidden)
        block = _unit_block(blocks, rows, _ONE_COLUMN, part, parts)
        for r in range(rows):
            for k in range(last - first):
                block[r, k] = matrix[r, first + k]


@numba.njit(cache=True)
def _copy_blocks_to_columns(blocks, matrix, parts):
    """The inverse of :func:`_copy_columns_to_blocks` (a function of its own: ``matrix``
    there may be read-only)."""
    rows, hidden = matrix.shape
    for part in range(parts):
        first, last = _units(part, parts, hidden)
        block = _unit_block(blocks, rows, _ONE_COLUMN, part, parts)
        for r in range(rows):
            for k in range(last - first):
                matrix[r, first + k] = block[r, k]


@numba.njit(cache=True)
def _step_rows(data, output, h_initial, data_rows, h_prev_rows, first, last):
    """Rows [first, last) of data_rows (T*N, I) and of h_prev_rows (T*N, H), whose row r
    is the hidden state step r // N started from."""
    batch = data.shape[1]
    _copy_rows(data, data_rows, first, last)
    hidden = h_initial.shape[1]
    for r in range(first, min(last, batch)):
        for k in range(hidden):
            h_prev_rows[r, _u(k)] = h_initial[r, _u(k)]
    if last > batch:
        _copy_rows(output, h_prev_rows[batch:], max(first, batch) - batch, last - batch)


@numba.njit(cache=True)
def _column_sums(matrix, sums, first, last):
    """sums[r] = the sum of column r of matrix, rows in order, for r in [first, last)."""
    sums[first:last] = 0
    for row in range(matrix.shape[0]):  # in place, no view per row (_gate_units)
        for r in range(first, last):
            sums[_u(r)] += matrix[_u(row), _u(r)]


@numba.njit(cache=True)
def _weight_rows(partials, i2h_weight_grad, h2h_weight_grad, first, last):
    """Rows [first, last) of both weight gradients: the sum of the parts' partials of
    dz.T @ [x | h_prev], in part order (the same bits on every run)."""
    features = i2h_weight_grad.shape[1]
    hidden = h2h_weight_grad.shape[1]
    for r in range(first, last):
        x_row = i2h_weight_grad[r]
        h_row = h2h_weight_grad[r]
        first_partial = partials[0, r]
        for k in range(features):
            x_row[_u(k)] = first_partial[_u(k)]
        for k in range(hidden):
            h_row[_u(k)] = first_partial[_u(features + k)]
        for part in range(1, partials.shape[0]):
            row = partials[part, r]
            for k in range(features):
                x_row[_u(k)] += row[_u(k)]
            for k in range(hidden):
                h_row[_u(k)] += row[_u(features + k)]


# The nine parameters before ``parts`` are the workspace that lower_lstm_backward declares.


@numba.njit(cache=True)
def _backward_phase(frame, part):
    """Part ``part`` of a phase of :func:`lstm_backward`: 0, its share of the step rows
    (read by the weight GEMM after the loop); 1, step ``step`` back through time for its
    block of hidden units (:func:`_backward_step`); 2, the data gradient and its partial of
    both weight gradients, ``dz.T @ [x | h_prev]``, over its block of the T*N rows; 3, its
    block of the weight gradients' rows, the partials added in part order (the same bits on
    every run), and of the bias gradient."""
    (
        d_output, _, _, data, _, h2h_weight, _, _, _, _, output, gates, cells,
        data_grad, i2h_weight_grad, h2h_weight_grad, i2h_bias_grad, _, _, _,
        d_gates, step_rows, weight_partials, i2h_weight_c, h2h_blocks,
        h_initial, c_initial, dh_blocks, dc_blocks, parts, _, phase, step,
    ) = frame_arguments(frame)  # fmt: skip
    steps, batch, features = data.shape
    rows = steps * batch
    gate_width = 4 * h2h_weight.shape[1]
    one = d_gates.dtype.type(1.0)
    zero = d_gates.dtype.type(0.0)
    if phase == 0:
        # Step r's input and the hidden state it started from, side by side: (T*N, I + H).
        first, last = row_range(part, parts, rows)
        _step_rows(
            data, output, h_initial, step_rows[:, :features], step_rows[:, features:],
            first, last,
        )  # fmt: skip
    elif phase == 1:
        _backward_step(
            d_output, gates, cells, c_initial, d_gates, dh_blocks, dc_blocks, h2h_blocks,
            step, part, parts,
        )  # fmt: skip
    elif phase == 2:
        dz_rows = d_gates.reshape((rows, gate_width))
        first, last = row_range(part, parts, rows)
        data_grad_rows = data_grad.reshape((rows, features))
        gemm(one, dz_rows[first:last], i2h_weight_c, zero, data_grad_rows[first:last])
        gemm(one, dz_rows[first:last].T, step_rows[first:last], zero, weight_partials[part])
    else:
        first, last = row_range(part, parts, gate_width)
        _weight_rows(weight_partials, i2h_weight_grad, h2h_weight_grad, first, last)
        _column_sums(d_gates.reshape((rows, gate_width)), i2h_bias_grad, first, last)


@numba.njit(cache=True)
def lstm_backward(
    d_output, d_state, d_state_cell, data, i2h_weight, h2h_weight,
    state, state_cell, has_state, has_state_cell, output, gates, cells,
    data_grad, i2h_weight_grad, h2h_weight_grad, i2h_bias_grad, h2h_bias_grad,
    state_grad, state_cell_grad,
    d_gates, step_rows, weight_partials, i2h_weight_c, h2h_blocks,
    h_initial, c_initial, dh_blocks, dc_blocks, parts, parts_entry,
):  # fmt: skip
    """Backpropagation through time from the given states, or zeros; the gradients at the
    given states last. The phases of :func:`_backward_phase`, each split into ``parts``:
    the step rows, every step from the last (and, for a given initial state, the gradient
    at it), the GEMMs over all steps, the sums of their partials."""
    _initial_state(h_initial, state, has_state)
    _initial_state(c_initial, state_cell, has_state_cell)
    _copy(i2h_weight, i2h_weight_c)
    _copy_columns_to_blocks(h2h_weight, h2h_blocks, parts)
    _copy_columns_to_blocks(d_state, dh_blocks, parts)
    _copy_columns_to_blocks(d_state_cell, dc_blocks, parts)
    steps = data.shape[0]
    # Regions: phase 0, then phase 1 for steps T-1, ..., 0 (and -1, the gradient at a given
    # initial h), then phases 2 and 3.
    time_regions = steps + 1 if has_state else steps
    for index in range(time_regions + 3):
        phase, step = 0, 0
        if 0 < index <= time_regions:
            phase, step = 1, steps - index
        elif index > time_regions:
            phase = index - time_regions + 1
        arguments = (
            d_output, d_state, d_state_cell, data, i2h_weight, h2h_weight,
            state, state_cell, has_state, has_state_cell, output, gates, cells,
            data_grad, i2h_weight_grad, h2h_weight_grad, i2h_bias_grad, h2h_bias_grad,
            state_grad, state_cell_grad,
            d_gates, step_rows, weight_partials, i2h_weight_c, h2h_blocks,
            h_initial, c_initial, dh_blocks, dc_blocks, parts, parts_entry, phase, step,
        )  # fmt: skip
        run_parts(parts_entry, part_frame(parts_entry, arguments), parts)
    for k in range(h2h_bias_grad.shape[0]):
        h2h_bias_grad[k] = i2h_bias_grad[k]
    if has_state:
        _copy_blocks_to_columns(dh_blocks, state_grad, parts)
    if has_state_cell:
        _copy_blocks_to_columns(dc_blocks, state_cell_grad, parts)


# -- lowerings ---------------------------------------------------------------------------------


def _flags(spec: NodeSpec) -> tuple[bool, bool]:
    return bool(spec.attrs["has_state"]), bool(spec.attrs["has_state_cell"])


def _optional(values: list, given: bool, stand_in):
    """The next of ``values`` when it was given, else ``stand_in`` (never read)."""
    return values.pop(0) if given else stand_in


def _parts(spec: NodeSpec, steps: int, batch: int, features: int, hidden: int) -> int:
    """Threads' parts (of the hidden units in the time loop, of rows elsewhere): the bound
    count, at most one per hidden unit, unless the forward's GEMMs are below
    ``PARALLEL_FLOPS``."""
    flops = 2 * steps * batch * (features + hidden) * 4 * hidden
    return parallel_parts(spec.options, hidden, flops, PARALLEL_FLOPS)


def _forward_prepare(has_state: bool, has_state_cell: bool, parts: int):
    def prepare(inputs, outputs, workspace):
        states = list(inputs[5:])
        h_initial, c_initial = workspace[-2], workspace[-1]
        state = _optional(states, has_state, h_initial)
        state_cell = _optional(states, has_state_cell, c_initial)
        flags = (has_state, has_state_cell)
        return (*inputs[:5], state, state_cell, *flags, *outputs, *workspace, parts, parts_cell())

    return prepare


def _backward_prepare(has_state: bool, has_state_cell: bool, parts: int):
    def prepare(inputs, outputs, workspace):
        states = list(inputs[6:-3])
        grads = list(outputs[5:])
        h_initial, c_initial = workspace[-4:-2]
        state = _optional(states, has_state, h_initial)
        state_cell = _optional(states, has_state_cell, c_initial)
        # Stand-ins of the initial states' shape, never written without the state.
        state_grad = _optional(grads, has_state, h_initial)
        state_cell_grad = _optional(grads, has_state_cell, c_initial)
        flags = (has_state, has_state_cell)
        return (
            *inputs[:6], state, state_cell, *flags, *inputs[-3:],
            *outputs[:5], state_grad, state_cell_grad, *workspace, parts, parts_cell(),
        )  # fmt: skip

    return prepare


def _phases(part_function):
    """``Kernel.address_calls``: the part function of every phase, whose frame holds the
    kernel's arguments (its cell last), the phase and the step."""

    def address_calls(arguments: tuple) -> list:
        return [parts_call(arguments[-1], part_function, (*arguments, 0, 0))]

    return address_calls


def _source(*functions) -> str:
    return "\n\n".join(inspect.getsource(function.py_func) for function in functions)


@lowering(TARGET, "LSTM")
def lower_lstm(spec: NodeSpec) -> Kernel:
    """The forward kernel of one LSTM node; its workspace is data as (T*N, I) rows, the
    input weight transposed, the recurrent weight in each part's block
    (``_copy_unit_blocks``), one step's recurrent product (N, 4H), as each part's block,
    and the initial states.

    >>> import numpy as np
    >>> spec = NodeSpec("LSTM", "rnn", {"num_hidden": 2, "has_state": False,
    ...     "has_state_cell": False}, ((3, 1, 5), (8, 5), (8, 2), (8,), (8,)),
    ...     (np.dtype("float64"),) * 5, ((3, 1, 2), (1, 2), (1, 2), (3, 1, 8), (3, 1, 2)),
    ...     (np.dtype("float64"),) * 5)
    >>> [shape for shape, dtype in lower_lstm(spec).workspace]
    [(3, 5), (5, 8), (16,), (8,), (1, 2), (1, 2)]
    """
    dtype = uniform_float_dtype(spec)
    steps, batch, features = spec.in_shapes[0]
    hidden = spec.attrs["num_hidden"]
    workspace = (
        ((steps * batch, features), dtype),
        ((features, 4 * hidden), dtype),
        ((hidden * 4 * hidden,), dtype),
        ((batch * 4 * hidden,), dtype),
        ((batch, hidden), dtype),
        ((batch, hidden), dtype),
    )
    return Kernel(
        fn=lstm_forward, workspace=workspace, name="lstm_forward",
        source=_source(lstm_forward, _forward_phase, _forward_step, _gate_units),
        prepare=_forward_prepare(*_flags(spec), _parts(spec, steps, batch, features, hidden)),
        address_calls=_phases(_forward_phase),
    )  # fmt: skip


@lowering(TARGET, "_lstm_backward")
def lower_lstm_backward(spec: NodeSpec) -> Kernel:
    """The backward kernel of one _lstm_backward node; its workspace is every step's dz
    (T, N, 4H), data and the previous hidden states side by side as rows (T*N, I + H), one
    partial sum of both weight gradients (4H, I + H) per part, a contiguous copy of the
    input weight and the recurrent weight's columns in each part's block, the initial
    states, and the gradients flowing to the previous step, in each part's block.

    >>> import numpy as np
    >>> spec = NodeSpec("_lstm_backward", "rnn_backward", {"num_hidden": 2,
    ...     "has_state": False, "has_state_cell": False},
    ...     ((3, 1, 2), (1, 2), (1, 2), (3, 1, 5), (8, 5), (8, 2), (3, 1, 2), (3, 1, 8),
    ...     (3, 1, 2)), (np.dtype("float32"),) * 9, ((3, 1, 5), (8, 5), (8, 2), (8,), (8,)),
    ...     (np.dtype("float32"),) * 5)
    >>> [shape for shape, dtype in lower_lstm_backward(spec).workspace][:3]
    [(3, 1, 8), (3, 7), (1, 8, 7)]
    """
    dtype = uniform_float_dtype(spec)
    steps, batch, features = spec.in_shapes[3]
    hidden = spec.attrs["num_hidden"]
    parts = _parts(spec, steps, batch, features, hidden)
    workspace = (
        ((steps, batch, 4 * hidden), dtype),
        ((steps * batch, features + hidden), dtype),
        ((parts, 4 * hidden, features + hidden), dtype),
        ((4 * hidden, features), dtype),
        ((4 * hidden * hidden,), dtype),
        ((batch, hidden), dtype),
        ((batch, hidden), dtype),
        ((batch * hidden,), dtype),
        ((batch * hidden,), dtype),
    )
    return Kernel(
        fn=lstm_backward, workspace=workspace, name="lstm_backward",
        source=_source(lstm_backward, _backward_phase, _backward_step, _gate_gradient_units),
        prepare=_backward_prepare(*_flags(spec), parts),
        address_calls=_phases(_backward_phase),
    )  # fmt: skip
