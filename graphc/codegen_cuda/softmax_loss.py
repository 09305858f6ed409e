"""CUDA kernels for the loss heads' forwards and the ops that copy forward: ``SoftmaxOutput``,
``LinearRegressionOutput`` (a view), ``LogisticRegressionOutput``, ``MakeLoss``,
``BlockGrad`` and ``Dropout``. What each computes is its NumPy reference's (``graphc/ir/ops/loss.py``); the
heads' gradients are compositions of primitives (``fused.py`` lowers them).

SoftmaxOutput: one block per softmax row (the classes of one sample, or of one position
with ``multi_output``), a grid-stride loop over the rows. The block takes the row's maximum
and the sum of its exps as shared-memory trees, the sum in float64 and always in the same
order, so a row gives the same bits on every run. The training forward checks the labels
as the reference does; a kernel cannot raise, so a bad label's position goes to a fault
flag and the launch raises ``SoftmaxLabelError`` with that position and value
(``faults.py``) before any gradient reads the label. An inference forward ignores the
label, as MXNet's does.
"""

from __future__ import annotations

import math

import numpy as np

from graphc.backend.lowering import Kernel, NodeSpec, float_dtype, lowering
from graphc.backend.source_cache import load_kernel
from graphc.codegen_cuda.faults import FaultFlag
from graphc.codegen_cuda.loops import grid_stride_launch, grid_stride_source
from graphc.codegen_cuda.target import MAX_BLOCKS, TARGET, THREADS, Launch, blocks_for
from graphc.ir.ops.dropout import _GOLDEN, _MIX1, _MIX2
from graphc.ir.ops.loss import SoftmaxLabelError, softmax_geometry

SOFTMAX = """import math

from numba import cuda, float64, {kind}

THREADS = {threads}


@cuda.jit(cache=True)
def kernel(data, label, out, classes, inner, fault, use_ignore, ignore_label, counter, training):
    partial = cuda.shared.array(THREADS, float64)
    t = cuda.threadIdx.x
    rows = out.size // classes
    for row in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
        outer = row // inner
        base = outer * classes * inner + (row - outer * inner)
        if training and t == 0:
            value = label[row]
            ignored = use_ignore and value == ignore_label
            if not ignored and (not (value >= 0 and value < classes) or value != math.floor(value)):
                cuda.atomic.min(fault, 0, row)
        peak = -math.inf
        for c in range(t, classes, THREADS):
            value = float64(data[base + c * inner])
            if value > peak:
                peak = value
        partial[t] = peak
        cuda.syncthreads()
        half = THREADS // 2
        while half > 0:
            if t < half and partial[t + half] > partial[t]:
                partial[t] = partial[t + half]
            cuda.syncthreads()
            half //= 2
        shift = {kind}(partial[0])
        cuda.syncthreads()
        total = 0.0
        for c in range(t, classes, THREADS):
            value = math.exp(data[base + c * inner] - shift)
            out[base + c * inner] = value
            total += float64(value)
        partial[t] = total
        cuda.syncthreads()
        half = THREADS // 2
        while half > 0:
            if t < half:
                partial[t] += partial[t + half]
            cuda.syncthreads()
            half //= 2
        total = partial[0]
        for c in range(t, classes, THREADS):
            out[base + c * inner] = float64(out[base + c * inner]) / total
        cuda.syncthreads()
"""

SIGMOID = """import math

from numba import cuda


@cuda.jit(cache=True)
def kernel(data, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = 0.5 * (math.tanh(0.5 * data[i]) + 1.0)
"""
"""sigmoid as 0.5 * (tanh(x / 2) + 1), as the CPU's: no exp that can overflow."""

COPY = """from numba import cuda


@cuda.jit(cache=True)
def kernel(data, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = data[i]
"""


def _flat(array):
    return array.reshape(max(1, math.prod(array.shape)))


@lowering(TARGET, "SoftmaxOutput")
def lower_softmax_output(spec: NodeSpec) -> Kernel:
    dtype = float_dtype(spec)
    attrs = spec.attrs
    outer, classes, inner = softmax_geometry(attrs, spec.in_shapes[0])
    source = SOFTMAX.format(kind=dtype.name, threads=THREADS)
    use_ignore, ignore_label = bool(attrs["use_ignore"]), float(attrs["ignore_label"])

    def explain(position: int, arguments: tuple) -> SoftmaxLabelError:
        value = float(arguments[1][position : position + 1].copy_to_host()[0])
        return SoftmaxLabelError(position, value, classes, use_ignore, ignore_label)

    fault = FaultFlag(explain=explain)

    def check(arguments: tuple) -> None:
        if arguments[-1]:  # the training flag: an inference forward checks no label
            fault.check(arguments)

    rows = max(1, outer * inner)
    launch = Launch(
        load_kernel(source, "kernel", TARGET), (min(MAX_BLOCKS, rows),), (THREADS,), check=check
    )

    def prepare(inputs, outputs, workspace):
        return (
            _flat(inputs[0]), _flat(inputs[1]), _flat(outputs[0]), np.int64(classes),
            np.int64(inner), fault.flag, use_ignore, np.float64(ignore_label),
        )  # fmt: skip

    return Kernel(
        fn=launch, needs_counter=True, name="cuda_softmax_output", source=source, prepare=prepare
    )


def _flat_kernel(spec: NodeSpec, source: str, name: str) -> Kernel:
    float_dtype(spec)
    elements = math.prod(spec.out_shapes[0])
    launch = Launch(load_kernel(source, "kernel", TARGET), (blocks_for(elements),), (THREADS,))

    def prepare(inputs, outputs, workspace):
        return (_flat(inputs[0]), _flat(outputs[0]))

    return Kernel(fn=launch, name=name, source=source, prepare=prepare)


@lowering(TARGET, "LinearRegressionOutput")
def lower_linear_regression_output(spec: NodeSpec) -> Kernel:
    # The forward is the identity: the output is the input's buffer, and nothing runs.
    return Kernel(fn=None, view_of=0, name="view_LinearRegressionOutput")


@lowering(TARGET, "LogisticRegressionOutput")
def lower_logistic_regression_output(spec: NodeSpec) -> Kernel:
    return _flat_kernel(spec, SIGMOID, "cuda_sigmoid")


@lowering(TARGET, "MakeLoss", "BlockGrad")
def lower_copy(spec: NodeSpec) -> Kernel:
    return _flat_kernel(spec, COPY, "cuda_copy")


# -- Dropout -----------------------------------------------------------------------------------

DROPOUT = f"""

@cuda.jit(device=True, inline="always")
def splitmix64(value):
    # SplitMix64's finalizer on a uint64, wrapping, as graphc/ir/ops/dropout.py's.
    z = value + uint64({int(_GOLDEN)})
    z = (z ^ (z >> uint64(30))) * uint64({int(_MIX1)})
    z = (z ^ (z >> uint64(27))) * uint64({int(_MIX2)})
    return z ^ (z >> uint64(31))
"""
"""The hash behind Dropout's mask, with the op definition's constants."""


@lowering(TARGET, "Dropout")
def lower_dropout(spec: NodeSpec) -> Kernel:
    """Outputs (out, mask) with the reference's mask: the counter and the training flag
    come last (see ``graphc/codegen_cpu/softmax_loss.py`` for their meaning); the mask of
    element ``flat`` is a hash of (seed, counter, flat), so the threads need no order."""
    float_dtype(spec)
    attrs = spec.attrs
    body = [
        "if (not training and not always) or p == 0.0:",
        "    mask[flat] = 1",
        "    out[flat] = data[flat]",
        "    continue",
        "key = splitmix64((uint64(seed) << uint64(32)) | uint64(counter & 4294967295))",
        "bits = splitmix64(uint64(flat) ^ key)",
        "uniform = float64(bits >> uint64(11)) * (1.0 / 9007199254740992.0)",
        "mask[flat] = 1.0 / (1.0 - p) if uniform >= p else 0.0",
        "out[flat] = data[flat] * mask[flat]",
    ]
    params = ["data", "out", "mask", "p", "seed", "always", "counter", "training"]
    source = grid_stride_source(params, "out.size", body, prelude=DROPOUT)
    constants = (float(attrs["p"]), np.int64(attrs["seed"] & 0xFFFFFFFF), attrs["mode"] == "always")

    def prepare(inputs, outputs, workspace):
        return (_flat(inputs[0]), *(_flat(output) for output in outputs), *constants)

    return Kernel(
        fn=grid_stride_launch(source, math.prod(spec.out_shapes[0])),
        needs_counter=True,
        name="cuda_dropout",
        source=source,
        prepare=prepare,
    )
