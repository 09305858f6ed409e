"""CPU kernels for the loss heads' forwards and the ops that copy forward: ``SoftmaxOutput``,
``LinearRegressionOutput``, ``LogisticRegressionOutput``, ``MakeLoss``, ``BlockGrad`` and
``Dropout``.

What each op computes is defined by its NumPy reference (``graphc/ir/ops/loss.py`` and
``graphc/ir/ops/dropout.py``); the heads' gradients are compositions of primitives and need
no kernel here. Labels are inputs of the heads; only ``SoftmaxOutput``'s training forward
reads its label, to check, as the reference does, that every value is a class index (or,
with use_ignore, ignore_label): a bad one raises ValueError naming the label element and
its value, before any gradient indexes with it (the executor's note names the head's node;
the kernel, shared by every node of its key, cannot). An inference forward ignores the
label, as MXNet's does, so its kernel takes the training flag (``needs_counter``). Inputs may have any strides: they are
read through ``.flat`` in C order.

Dropout's kernel has ``needs_counter=True``: the runtime passes the Dropout counter and the
training flag as its last two arguments. The counter numbers the training forwards (the
reference's ``step``); the runtime passes -1 at inference. So one kernel serves both, and
the runtime need not lower the forward twice:

- training, or mode='always': mask = 1/(1-p) where the SplitMix64 counter hash of (seed,
  counter, element index) is >= p, else 0 (``dropout_mask`` in the reference, reproduced
  exactly with uint64 arithmetic), and out = data * mask;
- not training with mode='training', or p == 0: out = data and mask = 1.

With mode='always' at inference the mask is the one of counter -1, which is what the
reference gives for ``evaluate(..., is_train=False, step=-1)``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from graphc.backend.lowering import Kernel, NodeSpec, float_dtype, lowering
from graphc.codegen_cpu.blas import row_range
from graphc.codegen_cpu.parts import (
    frame_arguments,
    part_frame,
    parts_call,
    parts_cell,
    run_parts,
)
from graphc.codegen_cpu.reduce import sum_workspace, tree_sum, tree_sum_rows
from graphc.codegen_cpu.target import TARGET
from graphc.codegen_cpu.threads import parallel_parts

# The hash's constants come from the op's definition, so the two cannot drift apart.
from graphc.ir.ops.dropout import _GOLDEN, _MIX1, _MIX2
from graphc.ir.ops.loss import SoftmaxLabelError, softmax_geometry

# Softmax rows (an exp per value) from which the rows split over threads: 20,000 values
# take about 0.1 ms on one core here, 50 times a parallel region's cost.
PARALLEL_ELEMENTS = 20_000

# -- SoftmaxOutput -----------------------------------------------------------------------------


@numba.njit(cache=True)
def copy_kernel(data, out):
    """out = data, element by element in C order."""
    flat_out = out.reshape(out.size)
    position = 0
    for value in data.flat:
        flat_out[position] = value
        position += 1


@numba.njit(cache=True)
def check_class_labels(label, classes, use_ignore, ignore_label):
    """SoftmaxLabelError unless every label is an integer in [0, classes) or, with
    ``use_ignore``, ``ignore_label``: the rule of ``_softmax_bad_label`` in
    ``graphc/ir/ops/loss.py``, whose exception builds the message from the numbers."""
    position = 0
    for value in label.flat:
        ignored = use_ignore and value == ignore_label
        if not ignored and (not (value >= 0 and value < classes) or value != math.floor(value)):
            raise SoftmaxLabelError(
                position, float(value), classes, use_ignore, float(ignore_label)
            )
        position += 1


@numba.njit(cache=True)
def _softmax_rows_part(frame, part):
    """Part ``part`` of :func:`softmax_rows_kernel`: its rows, with its own slice of the
    tree sum's partials."""
    _, _, out, outer, classes, partials, _, _, parts, _ = frame_arguments(frame)
    blocks = partials.shape[0] // parts
    first, last = row_range(part, parts, outer)
    flat = out.reshape(outer * classes)
    softmax_rows(flat, first, last, classes, partials[part * blocks : (part + 1) * blocks])


@numba.njit(cache=True)
def softmax_rows_kernel(
    data, label, out, outer, classes, partials, use_ignore, ignore_label, parts, parts_entry,
    counter, training,
):  # fmt: skip
    """Data and out as (outer, classes) rows, one per sample: out = softmax of data over
    classes, after checking ``label`` (:func:`check_class_labels`) when ``training``;
    ``counter`` is the Dropout counter, unused. The rows split into ``parts``
    (:func:`_softmax_rows_part`; each row's values are its own, so no result depends on the
    count). Half the time of the general walk, and a kernel of its own (not a branch of
    :func:`softmax_kernel`) so that a model with rows compiles only this."""
    if training:
        check_class_labels(label, classes, use_ignore, ignore_label)
    copy_kernel(data, out)
    arguments = (
        data, label, out, outer, classes, partials, use_ignore, ignore_label, parts, parts_entry
    )  # fmt: skip
    run_parts(parts_entry, part_frame(parts_entry, arguments), parts)


@numba.njit(cache=True)
def softmax_kernel(
    data,
    label,
    out,
    outer,
    classes,
    inner,
    lanes,
    partials,
    column_max,
    column_sum,
    use_ignore,
    ignore_label,
    counter,
    training,
):
    """With data and out as (outer, classes, inner): out = softmax of data over classes,
    after checking ``label`` (:func:`check_class_labels`) when ``training``; ``counter`` is
    the Dropout counter, unused.

    The maximum over classes is subtracted before exp (it cancels in the ratio, and no exp
    overflows); the sum of the exps is a tree sum (``reduce.py``). ``column_max`` has
    ``inner`` values of data's dtype, ``column_sum`` ``inner`` float64 values, ``lanes``
    and ``partials`` are the tree sum's scratch for ``classes`` rows of ``inner``."""
    if training:
        check_class_labels(label, classes, use_ignore, ignore_label)
    copy_kernel(data, out)
    probabilities = out.reshape((outer, classes, inner))
    for o in range(outer):
        block = probabilities[o]
        for i in range(inner):
            column_max[i] = block[0, i]
        for c in range(1, classes):
            for i in range(inner):
                value = block[c, i]
                if value > column_max[i] or value != value:
                    column_max[i] = value
        for c in range(classes):
            for i in range(inner):
                block[c, i] = math.exp(block[c, i] - column_max[i])
        tree_sum_rows(block.flat, 0, classes, lanes, partials, column_sum)
        for c in range(classes):
            for i in range(inner):
                block[c, i] = block[c, i] / column_sum[i]


@numba.njit(cache=True)
def softmax_rows(flat, first, last, classes, partials):
    """Softmax in place over rows [first, last) of ``classes`` values of ``flat``, with
    the sums in the tree order. The maximum needs no NaN test: a NaN anywhere in a row
    makes its exp, the row's sum and so every probability of the row NaN, as the
    reference's does."""
    for o in range(first, last):
        base = o * classes
        peak = flat[base]
        for c in range(base + 1, base + classes):
            if flat[c] > peak:
                peak = flat[c]
        for c in range(base, base + classes):
            flat[c] = math.exp(flat[c] - peak)
        total = tree_sum(flat, base, classes, partials)
        for c in range(base, base + classes):
            flat[c] = flat[c] / total


@lowering(TARGET, "SoftmaxOutput")
def lower_softmax_output(spec: NodeSpec) -> Kernel:
    """Softmax probabilities, the label checked in training; workspace: the tree sum's
    partials of each part (rows), or its lanes and partials and the maximum and the sum of
    each column, inner values each (the general layout)."""
    dtype = float_dtype(spec)
    attrs = spec.attrs
    outer, classes, inner = softmax_geometry(attrs, spec.in_shapes[0])
    label_rule = (bool(attrs["use_ignore"]), float(attrs["ignore_label"]))
    lanes, (partial_shape, partial_dtype) = sum_workspace(classes, inner)
    if inner == 1:  # one row per sample
        parts = parallel_parts(spec.options, outer, outer * classes, PARALLEL_ELEMENTS)
        workspace = (((partial_shape[0] * parts, 1), partial_dtype),)

        def prepare(inputs, outputs, workspace):
            # The geometry is bound here, at bind, so one compiled kernel serves every shape.
            return (
                *inputs[:2], outputs[0], outer, classes, *workspace, *label_rule, parts,
                parts_cell(),
            )  # fmt: skip

        def address_calls(arguments):
            return [parts_call(arguments[-1], _softmax_rows_part, arguments)]

        fn = softmax_rows_kernel
    else:
        workspace = (
            lanes,
            (partial_shape, partial_dtype),
            ((inner,), dtype),
            ((inner,), np.float64),
        )

        def prepare(inputs, outputs, workspace):
            return (*inputs[:2], outputs[0], outer, classes, inner, *workspace, *label_rule)

        fn = softmax_kernel
        address_calls = None
    return Kernel(
        fn=fn,
        workspace=workspace,
        needs_counter=True,
        name="softmax_output",
        prepare=prepare,
        address_calls=address_calls,
    )


# -- regression heads and copies ---------------------------------------------------------------


@numba.njit(cache=True)
def logistic_kernel(data, label, out):
    """out = sigmoid(data), as 0.5 * (tanh(x / 2) + 1): no exp that can overflow."""
    flat_out = out.reshape(out.size)
    position = 0
    for value in data.flat:
        flat_out[position] = 0.5 * (math.tanh(0.5 * value) + 1.0)
        position += 1


@lowering(TARGET, "LinearRegressionOutput")
def lower_linear_regression_output(spec: NodeSpec) -> Kernel:
    # The forward is the identity: the head's output is its input's buffer, bound as a view,
    # and nothing runs (LinReg's step copied 506 values per step for nothing).
    return Kernel(fn=None, view_of=0, name="view_LinearRegressionOutput")


@lowering(TARGET, "LogisticRegressionOutput")
def lower_logistic_regression_output(spec: NodeSpec) -> Kernel:
    return Kernel(fn=logistic_kernel, name="sigmoid")


@lowering(TARGET, "MakeLoss", "BlockGrad")
def lower_copy(spec: NodeSpec) -> Kernel:
    return Kernel(fn=copy_kernel, name="copy")


# -- Dropout -----------------------------------------------------------------------------------

_LOW_32_BITS = 0xFFFFFFFF


@numba.njit(cache=True)
def splitmix64(value):
    """SplitMix64's finalizer on a uint64 (wrapping), as ``graphc.ir.ops.dropout``."""
    z = value + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def dropout_kernel(data, out, mask, p, seed, always, counter, training):
    """out = data * mask with the reference's mask; see the module docstring for ``counter``
    and ``training``.

    ``seed`` is the attribute's low 32 bits; ``always`` is mode == 'always'."""
    flat_out = out.reshape(out.size)
    flat_mask = mask.reshape(mask.size)
    position = 0
    if (not training and not always) or p == 0.0:
        for value in data.flat:
            flat_out[position] = value
            flat_mask[position] = 1
            position += 1
        return
    key = splitmix64((np.uint64(seed) << np.uint64(32)) | np.uint64(counter & _LOW_32_BITS))
    scale = 1.0 / (1.0 - p)
    unit = 1.0 / 9007199254740992.0  # 2**-53: 53 random bits become a float in [0, 1)
    for value in data.flat:
        bits = splitmix64(np.uint64(position) ^ key)
        uniform = float(bits >> np.uint64(11)) * unit
        flat_mask[position] = scale if uniform >= p else 0.0
        flat_out[position] = value * flat_mask[position]
        position += 1


@lowering(TARGET, "Dropout")
def lower_dropout(spec: NodeSpec) -> Kernel:
    """Outputs (out, mask); the counter and the training flag come last."""
    float_dtype(spec)
    attrs = spec.attrs
    constants = (float(attrs["p"]), attrs["seed"] & _LOW_32_BITS, attrs["mode"] == "always")

    def prepare(inputs, outputs, workspace):
        return (inputs[0], *outputs, *constants)

    return Kernel(fn=dropout_kernel, needs_counter=True, name="dropout", prepare=prepare)
