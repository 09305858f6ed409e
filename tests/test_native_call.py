"""Generated functions call kernels through their addresses (codegen_cpu/native_call.py):
results, errors and a change of argument types behave as direct calls do."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import graphc as gc
from graphc.backend.lowering import Kernel
from graphc.codegen_cpu.native_call import call_native, entry
from graphc.codegen_cpu.sequence import compile_sequence
from graphc.ir.ops.loss import SoftmaxLabelError


@numba.njit(cache=True)
def scaled_sum(a, b, out, scale):
    for i in range(out.size):
        out[i] = (a[i] + b[i]) * scale


@numba.njit(cache=True)
def counted_fill(out, counter, training):
    out[0] = counter if training else -1
    if counter == 99:
        raise SoftmaxLabelError(2, 7.5, 3, False, -1.0)


def test_a_sequence_calls_its_kernels_in_order_with_the_counter():
    kernels = [Kernel(scaled_sum), Kernel(counted_fill, needs_counter=True)]
    run, source = compile_sequence(kernels, ["sum (test)", "fill (test)"])
    assert "scaled_sum" in source and "call_native(" in source
    a, b, out, filled = np.arange(4.0), np.ones(4), np.zeros(4), np.zeros(1)
    arguments = ((a, b, out, 2.0), (filled,))
    run(arguments, 5, True)
    np.testing.assert_array_equal(out, (a + 1) * 2)
    assert filled[0] == 5
    run(arguments, 6, 1)  # a truthy int for the flag, as exe.forward(is_train=1) gives
    assert filled[0] == 6
    with pytest.raises(SoftmaxLabelError, match="label element 2 is 7.5"):
        run(arguments, 99, True)


def test_a_sequence_follows_a_change_of_argument_types():
    """A bound array made read-only: Numba compiles the sequence for the new types, and the
    entries are found again instead of calling code compiled for the old ones."""
    run, _ = compile_sequence([Kernel(scaled_sum)], ["sum (test)"])
    a, b, out = np.arange(3.0), np.ones(3), np.zeros(3)
    arguments = ((a, b, out, 1.0),)
    run(arguments, 0, False)
    a.flags.writeable = False
    run(arguments, 0, False)
    np.testing.assert_array_equal(out, a + 1)


def test_an_entry_compiled_for_other_types_is_refused():
    @numba.njit
    def caller(pair, arguments):
        call_native(pair, arguments)

    a, b, out = np.arange(3.0), np.ones(3), np.zeros(3)
    address, check = entry(scaled_sum, (a, b, out, 1.0))
    with pytest.raises(RuntimeError, match="bound for other argument types"):
        caller((address, check ^ 1), (a, b, out, 1.0))
    caller((address, check), (a, b, out, 1.0))
    np.testing.assert_array_equal(out, a + 1)


def test_dropout_forward_with_an_integer_training_flag():
    net = gc.Dropout(gc.Variable("x"), p=0.5)
    exe = net.simple_bind(gc.cpu(), x=(4, 5), grad_req="null")
    exe.arg_dict["x"][:] = 1.0
    out = exe.forward(is_train=1)[0]
    assert set(np.unique(out)) <= {0.0, 2.0}


def _conv_tanh():
    data = gc.Variable("data")
    conv = gc.Convolution(data, kernel=(3, 3), num_filter=4, name="conv")
    return gc.Activation(conv, act_type="tanh", name="act")


def test_a_fused_kernel_calls_its_anchor_through_an_address_filled_before_it_runs():
    """conv + tanh fuse with the convolution as anchor: the generated kernel calls it
    through the entry in its first argument, which the compiled sequence fills."""
    exe = _conv_tanh().simple_bind(gc.cpu(), data=(2, 3, 6, 6))
    launch = next(launch for launch in exe._forward_launches if launch.node.op == "_fused")
    kernel = launch.kernel
    assert "call_native((anchor_entry[0], anchor_entry[1]), anchor_args)" in kernel.source
    assert "kernel_function" not in kernel.source  # the anchor is not linked in
    call, parts = kernel.address_calls(launch.args)
    assert call.cell is launch.args[0]
    assert parts.cell is launch.args[1][-1]  # the convolution's own, for its part function
    # The executor binds without filling; a call then refuses rather than jump to 0.
    fresh = (np.zeros(2, dtype=np.int64), *launch.args[1:])
    with pytest.raises(RuntimeError, match="a kernel was bound for other argument types"):
        kernel.fn(*fresh)
    rng = np.random.default_rng(0)
    exe.arg_dict["data"][:] = rng.standard_normal(exe.arg_dict["data"].shape)
    exe.arg_dict["conv_weight"][:] = rng.standard_normal(exe.arg_dict["conv_weight"].shape)
    exe.arg_dict["conv_bias"][:] = 0.5
    (out,) = exe.forward()
    assert call.cell[0] != 0  # filled by the compiled sequence's first call
    reference = gc.evaluate(_conv_tanh(), dict(exe.arg_dict))
    np.testing.assert_allclose(out, reference[0], rtol=1e-5, atol=1e-6)
    # The anchor's input made read-only is another Numba type: the sequence is compiled
    # again for it and the cell refilled, rather than the anchor called for the old types.
    before = call.cell.copy()
    launch.args[1][0].flags.writeable = False
    (again,) = exe.forward()
    assert call.cell[1] != before[1]
    np.testing.assert_allclose(again, reference[0], rtol=1e-5, atol=1e-6)
    assert [name for name, _ in exe.profile(repeats=1)]  # one by one from Python too


def test_the_profile_times_the_kernels_not_the_check_of_their_addresses(monkeypatch):
    """``Executor.profile`` fills the addresses once, before its timing: the check types
    every argument in Python (0.4 ms a fused kernel with parts), which the compiled
    sequence never pays, and counted in a kernel's time it made LeNet's pooling kernels
    look three times slower than they are."""
    from graphc.backend.lowering import Kernel

    exe = _conv_tanh().simple_bind(gc.cpu(), data=(2, 3, 6, 6))
    fills = []
    original = Kernel.fill_addresses

    def counted(self, arguments):
        fills.append(self.name)
        return original(self, arguments)

    monkeypatch.setattr(Kernel, "fill_addresses", counted)
    rows = exe.profile(repeats=5)
    launches = len(exe._forward_launches) + len(exe._backward_launches)
    assert len(rows) == launches > 1
    assert len(fills) == launches, f"filled once each, not once a repeat: {fills}"
