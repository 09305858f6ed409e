"""The LSTM on the GPU (``graphc/ir/ops/lstm.py`` defines it): the forward and the
backpropagation through time as plans of launches, each launch a kernel of this backend.

Forward: the input projection of every step is one GEMM (``FullyConnected`` over the T*N
rows, with b_i); then, step by step, the recurrent product h W_h^T (a GEMM)
and one gate kernel that adds the two, applies the gates and writes the gates, the cell
and the hidden state of that step. Backward, last step first: a gate kernel turns the
incoming gradients into the gradient at the pre-activations (kept for every step) and the
cell gradient, then a GEMM carries the hidden gradient to the step before; after the loop
the weight gradients are one GEMM each over all T*N rows (the recurrent one reading the
previous hidden states where the forward left them) and the bias gradient one tree sum.
The gate kernels run one thread per (sample, hidden unit), so each element has one writer;
nothing is added by atomics, and a run gives the same bits every time.
"""

from __future__ import annotations

import numpy as np

from graphc.backend.lowering import Kernel, NodeSpec, lower, lowering, uniform_float_dtype
from graphc.codegen_cuda.gemm import GemmForm, tiled_launch
from graphc.codegen_cuda.loops import grid_stride_launch, grid_stride_source, unravel
from graphc.codegen_cuda.target import TARGET

SIGMOID = "HALF * (math.tanh(HALF * {0}) + ONE)"
"""The reference's sigmoid (tanh form: no exp to overflow)."""

FORWARD_GATES = [
    "z_i = (proj[n, j] + b_h[j]) + (rec[n, j] if use_rec else ZERO)",
    "z_f = (proj[n, H + j] + b_h[H + j]) + (rec[n, H + j] if use_rec else ZERO)",
    "z_g = (proj[n, 2 * H + j] + b_h[2 * H + j]) + (rec[n, 2 * H + j] if use_rec else ZERO)",
    "z_o = (proj[n, 3 * H + j] + b_h[3 * H + j]) + (rec[n, 3 * H + j] if use_rec else ZERO)",
    "i = " + SIGMOID.format("z_i"),
    "f = " + SIGMOID.format("z_f"),
    "g = math.tanh(z_g)",
    "o = " + SIGMOID.format("z_o"),
    "c = f * c_prev[n, j] + i * g if use_c else i * g",
    "gates[n, j] = i",
    "gates[n, H + j] = f",
    "gates[n, 2 * H + j] = g",
    "gates[n, 3 * H + j] = o",
    "cells[n, j] = c",
    "out[n, j] = o * math.tanh(cells[n, j])",
]
"""One step at (n, j): ``proj`` holds x W_i^T + b_i, to which b_h is added as the
reference adds it, ``rec`` h W_h^T (absent at a first step from zeros), ``c_prev`` the last
cell (absent likewise). The constants are the arrays' dtype (``HALF``, ``ONE``, ``ZERO``),
so float32 is computed in float32, and the cell is stored before tanh reads it back, as
the reference's arrays round them."""

BACKWARD_GATES = [
    "i = gates[n, j]",
    "f = gates[n, H + j]",
    "g = gates[n, 2 * H + j]",
    "o = gates[n, 3 * H + j]",
    "tanh_c = math.tanh(cells[n, j])",
    "dh = d_out[n, j] + dh_next[n, j]",
    "dc = dc_next[n, j] + dh * o * (ONE - tanh_c * tanh_c)",
    "previous = c_prev[n, j] if use_c else ZERO",
    "dz[n, j] = dc * g * i * (ONE - i)",
    "dz[n, H + j] = dc * previous * f * (ONE - f)",
    "dz[n, 2 * H + j] = dc * i * (ONE - g * g)",
    "dz[n, 3 * H + j] = dh * tanh_c * o * (ONE - o)",
    "dc_next[n, j] = dc * f",
]
"""One step back at (n, j): the gradients at the pre-activations (sigmoid' = s (1 - s),
tanh' = 1 - t^2) and the cell gradient for the step before, in place (this thread's
element only)."""


class Plan:
    """A kernel that is several launches: ``plan(steps)`` runs each ``(launch, args)`` of
    ``steps`` (bound at bind by the kernel's ``prepare``) in order."""

    grid = "per launch"
    block = "per launch"

    def __call__(self, steps) -> None:
        for launch, args in steps:
            launch(*args)


def _gate_kernel(body: list[str], params: list[str], hidden: int, batch: int, dtype):
    """One thread per (n, j) of a (batch, hidden) step; ``H`` and the dtype's ``ZERO``,
    ``HALF`` and ``ONE`` are constants of the source (bare literals would turn float32
    arithmetic into float64)."""
    kind = np.dtype(dtype).name
    prelude = f"\nH = {hidden}\nZERO = {kind}(0)\nHALF = {kind}(0.5)\nONE = {kind}(1.0)\n"
    lines = [*unravel(["n", "j"], [str(batch), "H"]), *body]
    source = grid_stride_source(params, f"{batch * hidden}", lines, prelude=prelude)
    return grid_stride_launch(source, batch * hidden), source


def _sub(op: str, attrs: dict, in_shapes, out_shapes, dtype) -> Kernel:
    """A kernel of this backend for one step of the plan, lowered as any node is."""
    return lower(
        NodeSpec(
            op,
            f"lstm_{op}",
            attrs,
            tuple(in_shapes),
            (dtype,) * len(in_shapes),
            tuple(out_shapes),
            (dtype,) * len(out_shapes),
        ),  # fmt: skip
        TARGET,
    )


def _call(kernel: Kernel, inputs, outputs) -> tuple:
    return (kernel.fn, kernel.arguments(tuple(inputs), tuple(outputs), ()))


DOT = {"transpose_a": False, "transpose_b": False}


@lowering(TARGET, "LSTM")
def lower_lstm(spec: NodeSpec) -> Kernel:
    dtype = uniform_float_dtype(spec)
    steps, batch, features = spec.in_shapes[0]
    hidden = spec.attrs["num_hidden"]
    has_state, has_cell = spec.attrs["has_state"], spec.attrs["has_state_cell"]
    rows, width = steps * batch, 4 * hidden
    fc_attrs = {"num_hidden": width, "no_bias": False, "flatten": False}
    shapes = [(rows, features), (width, features), (width,)]
    project = _sub("FullyConnected", fc_attrs, shapes, [(rows, width)], dtype)
    recur = _sub("dot", {**DOT, "transpose_b": True}, [(batch, hidden), (width, hidden)],
                 [(batch, width)], dtype)  # fmt: skip
    copy = _sub("BlockGrad", {}, [(batch, hidden)], [(batch, hidden)], dtype)
    params = ["proj", "b_h", "rec", "c_prev", "gates", "cells", "out", "use_rec", "use_c"]
    gate, source = _gate_kernel(FORWARD_GATES, params, hidden, batch, dtype)

    def prepare(inputs, outputs, workspace):
        data, w_i, w_h, b_i, b_h = inputs[:5]
        states = dict(zip([k for k, on in (("h", has_state), ("c", has_cell)) if on], inputs[5:]))
        output, state, state_cell, gates, cells = outputs
        proj, rec = workspace
        plan = [_call(project, [data.reshape(rows, features), w_i, b_i], [proj])]
        proj = proj.reshape(steps, batch, width)
        for t in range(steps):
            h_prev = output[t - 1] if t else states.get("h")
            c_prev = cells[t - 1] if t else states.get("c")
            if h_prev is not None:
                plan.append(_call(recur, [h_prev, w_h], [rec]))
            plan.append(
                (gate, (proj[t], b_h, rec, cells[t] if c_prev is None else c_prev, gates[t],
                        cells[t], output[t], h_prev is not None, c_prev is not None))
            )  # fmt: skip
        plan.append(_call(copy, [output[steps - 1]], [state]))
        plan.append(_call(copy, [cells[steps - 1]], [state_cell]))
        return (tuple(plan),)

    workspace = (((rows, width), dtype), ((batch, width), dtype))
    return Kernel(fn=Plan(), workspace=workspace, name="cuda_lstm", source=source, prepare=prepare)


def _recurrent_weight_gradient(dtype, steps: int, batch: int, hidden: int, has_state: bool):
    """dW_h (4H x H) = dz^T (4H x T*N) @ the previous hidden state of every row: row k's is
    output row k - N, or for the first step h0 (zero without a state input)."""
    kind = np.dtype(dtype).name
    first = "h0[k, n]" if has_state else f"{kind}(0)"
    form = GemmForm(
        params="dz, output, h0, dw",
        sizes=("dw.shape[0]", "dw.shape[1]", str(steps * batch)),
        a_at="dz[k, m]",
        b_at=f"(output[k - {batch}, n] if k >= {batch} else {first})",
        a_k_fast=False,
        b_k_fast=False,
        store="dw[m, n] = value",
    )
    return tiled_launch(dtype, form, 4 * hidden, hidden)


@lowering(TARGET, "_lstm_backward")
def lower_lstm_backward(spec: NodeSpec) -> Kernel:
    dtype = uniform_float_dtype(spec)
    steps, batch, features = spec.in_shapes[3]
    hidden = spec.attrs["num_hidden"]
    has_state, has_cell = spec.attrs["has_state"], spec.attrs["has_state_cell"]
    rows, width = steps * batch, 4 * hidden
    params = ["d_out", "dh_next", "dc_next", "gates", "cells", "c_prev", "dz", "use_c"]
    gate, source = _gate_kernel(BACKWARD_GATES, params, hidden, batch, dtype)
    carry = _sub("dot", DOT, [(batch, width), (width, hidden)], [(batch, hidden)], dtype)
    d_data = _sub("dot", DOT, [(rows, width), (width, features)], [(rows, features)], dtype)
    d_i2h = _sub("dot", {**DOT, "transpose_a": True}, [(rows, width), (rows, features)],
                 [(width, features)], dtype)  # fmt: skip
    d_bias = _sub("sum", {"axis": 0, "keepdims": False}, [(rows, width)], [(width,)], dtype)
    copy_bias = _sub("BlockGrad", {}, [(width,)], [(width,)], dtype)
    copy_state = _sub("BlockGrad", {}, [(batch, hidden)], [(batch, hidden)], dtype)
    d_h2h = _recurrent_weight_gradient(dtype, steps, batch, hidden, has_state)
    states = [name for name, on in (("h", has_state), ("c", has_cell)) if on]

    def prepare(inputs, outputs, workspace):
        d_output, d_state, d_state_cell, data, w_i, w_h = inputs[:6]
        given = dict(zip(states, inputs[6 : 6 + len(states)]))
        output, gates, cells = inputs[6 + len(states) :]
        grads = dict(zip(["data", "w_i", "w_h", "b_i", "b_h", *states], outputs))
        dh, dc, dz = workspace
        plan = [_call(copy_state, [d_state], [dh]), _call(copy_state, [d_state_cell], [dc])]
        for t in reversed(range(steps)):
            c_prev = cells[t - 1] if t else given.get("c")
            plan.append(
                (gate, (d_output[t], dh, dc, gates[t], cells[t],
                        cells[t] if c_prev is None else c_prev, dz[t], c_prev is not None))
            )  # fmt: skip
            plan.append(_call(carry, [dz[t], w_h], [dh]))
        flat_dz = dz.reshape(rows, width)
        flat_out = output.reshape(rows, hidden)
        plan.append((d_h2h, (flat_dz, flat_out, given.get("h", flat_out), grads["w_h"])))
        plan.append(_call(d_data, [flat_dz, w_i], [grads["data"].reshape(rows, features)]))
        plan.append(_call(d_i2h, [flat_dz, data.reshape(rows, features)], [grads["w_i"]]))
        plan.append(_call(d_bias, [flat_dz], [grads["b_i"]]))
        plan.append(_call(copy_bias, [grads["b_i"]], [grads["b_h"]]))
        for name, source_array in (("h", dh), ("c", dc)):
            if name in grads:
                plan.append(_call(copy_state, [source_array], [grads[name]]))
        return (tuple(plan),)

    workspace = (((batch, hidden), dtype), ((batch, hidden), dtype), ((steps, batch, width), dtype))
    return Kernel(
        fn=Plan(), workspace=workspace, name="cuda_lstm_backward", source=source, prepare=prepare
    )
