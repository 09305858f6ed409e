"""The generated training loop: many training steps (cut the batch, forward, loss and
metric, backward, optimizer update) in one compiled call.

``train(...)`` runs ``count`` steps over in-memory data. Per step it takes the batch from
the data set by the sample order, from ``order[starts[step]]`` on (an epoch's order that
every epoch repeats is passed once, with a start per step, rather than copied for each of
10,000 epochs): a run of consecutive rows is read in place (a view of
the data that the kernels take instead of the bound input, no copy), any other batch is
gathered into the bound input (``gather_rows``). It then calls the forward kernels,
records the batch's loss and metric sums, stops before the backward pass when the loss or
an output is not finite (returning that step's index), calls the backward kernels, stops
likewise on a non-finite gradient, and updates every parameter with the optimizer's fused
kernel. Values that change during training (learning rate, Adam's step, the Dropout
counter) are runtime arguments: ``scalars[step]`` holds the optimizer's scalars of each step
and ``counter0`` the Dropout counter of the first, so a learning-rate schedule never
recompiles anything.

The source is readable (``GRAPHC_DUMP=sequence`` prints it) and cached like every kernel;
each kernel call is commented with the user's nodes it computes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from graphc.backend.loop_plan import LoopPlan, LoopStatistic
from graphc.backend.lowering import Kernel
from graphc.backend.source_cache import load_kernel
from graphc.codegen_cpu import train_support
from graphc.codegen_cpu.frames import frame_set
from graphc.codegen_cpu.native_call import call_rebinding
from graphc.codegen_cpu.sequence import (
    call_lines,
    find_entries,
    kernel_reference,
    placeholders,
)
from graphc.ir.errors import BackendError

INDENT = "        "

HEAD_STATISTICS = {
    "softmax": ("softmax_stats", ("correct",)),
    "regression": ("regression_stats", ("squares", "magnitudes")),
    "logistic": ("logistic_stats", ("squares", "magnitudes")),
}
"""The CPU lowering of each loss statistic (``backend.loop_plan.HEAD_STATISTICS``): the
helper of ``train_support`` called as ``helper(head, label, rows, grad_scale, *arguments)``
and the metric sums it gives beside the loss, in its order."""

METRIC_STATISTICS = {
    "accuracy": "correct",
    "squared_error": "squares",
    "absolute_error": "magnitudes",
    "perplexity": "perplexity_sum",
    "cross_entropy": "cross_entropy_sum",
    "top_k": "top_k_hits",
}
"""The CPU lowering of each metric statistic (``backend.loop_plan.METRIC_STATISTICS``): a
sum the head's helper gives already (read, no second pass over the output), or the helper
of ``train_support`` called as ``helper(head, label, rows, *arguments)``."""


def render_training_loop(
    forward: Sequence[Kernel],
    forward_comments: Sequence[str] | None,
    backward: Sequence[Kernel],
    backward_comments: Sequence[str] | None,
    plan: LoopPlan,
    slots: tuple[dict, dict] = ({}, {}),
) -> str:
    """The source of ``train``: per step, the batch, the forward kernels, the loss and
    metric, the finiteness checks, the backward kernels and the updates. ``slots``: the
    forward and backward kernels called on frames (``FrameSet.slots``)."""
    replaced: dict[str, dict] = {"forward": {}, "backward": {}}
    batch, label = _batch_lines(plan, replaced)
    lines = [
        *_header_lines(plan),
        *batch,
        f"{INDENT}counter = counter0 + step",
        *_state_lines(plan),
        *call_lines(
            forward,
            forward_comments,
            "forward",
            "counter, True",
            INDENT,
            replaced["forward"],
            "forward_entries",
            frames=("forward_frame", slots[0]),
        ),
        *_statistics_lines(plan, label),
        *_backward_lines(plan, backward, backward_comments, replaced["backward"], slots[1]),
        *_update_lines(plan),
        "    return count",
    ]
    return "\n".join(lines) + "\n"


def _backward_lines(plan: LoopPlan, backward, comments, replaced, slots) -> list[str]:
    """Stop on a non-finite loss or output, else the backward kernels; a data-parallel loop
    (``plan.allreduce``) then sums the gradients over the ranks, and every rank stops when
    any rank's loss was not finite."""
    if not plan.allreduce:
        return [
            f"{INDENT}if not math.isfinite(loss) or not all_finite(head.ravel()):",
            f"{INDENT}    return step",
            *_backward_calls(backward, comments, replaced, slots, INDENT),
        ]
    if plan.buckets is not None:
        return _bucketed_backward_lines(plan, backward, comments, replaced, slots)
    if plan.in_place:
        return _in_place_backward_lines(plan, backward, comments, replaced, slots)
    lines = [
        *_unless_bad(_backward_calls(backward, comments, replaced, slots, INDENT + "    ")),
        f"{INDENT}offset = 0",
    ]
    lines += [
        f"{INDENT}offset = pack_into(packed, offset, updates[{index}][1])"
        for index in range(plan.parameters)
    ]
    lines += [
        f"{INDENT}packed[offset] = losses[step]",
        f"{INDENT}packed[offset + 1] = metrics[step]",
        f"{INDENT}packed[offset + 2] = 1.0 if bad else 0.0",
        f"{INDENT}if allreduce_sum(reduce_call, packed, reduced, offset + 3) != 0:",
        f"{INDENT}    raise RuntimeError('MPI_Allreduce of the gradients failed')",
        f"{INDENT}losses[step] = reduced[offset]  # every rank's sums, from here on",
        f"{INDENT}metrics[step] = reduced[offset + 1]",
        f"{INDENT}if reduced[offset + 2] > 0.0:  # a rank's loss was not finite",
        f"{INDENT}    return step",
        f"{INDENT}offset = 0",
    ]
    lines += [
        f"{INDENT}offset = unpack_from(reduced, offset, updates[{index}][1])"
        for index in range(plan.parameters)
    ]
    return lines


def _backward_calls(backward, comments, replaced, slots, indent: str, after=None) -> list[str]:
    """The backward kernels' calls at ``indent``, those with ``slots`` on their frames;
    ``after``: lines following a kernel's."""
    return call_lines(
        backward,
        comments,
        "backward",
        "counter, True",
        indent,
        replaced,
        "backward_entries",
        after=after,
        frames=("backward_frame", slots),
    )


def _unless_bad(body: list[str]) -> list[str]:
    """``body`` run only when the step's loss and outputs are finite (a data-parallel loop
    goes on to the sums either way, so that every rank calls them)."""
    return [
        f"{INDENT}bad = not math.isfinite(loss) or not all_finite(head.ravel())",
        f"{INDENT}if not bad:",
        *(body or [f"{INDENT}    pass"]),
    ]


def _in_place_backward_lines(plan: LoopPlan, backward, comments, replaced, slots) -> list[str]:
    """``plan.in_place``: the loss, metric and flag summed first (every rank stops together
    before summing gradients a rank did not compute), then the gradient block in place."""
    return [
        *_unless_bad(_backward_calls(backward, comments, replaced, slots, INDENT + "    ")),
        f"{INDENT}packed[0] = losses[step]",
        f"{INDENT}packed[1] = metrics[step]",
        f"{INDENT}packed[2] = 1.0 if bad else 0.0",
        f"{INDENT}if allreduce_sum(reduce_call, packed, reduced, 3) != 0:",
        f"{INDENT}    raise RuntimeError('MPI_Allreduce of the loss failed')",
        f"{INDENT}losses[step] = reduced[0]  # every rank's sums, from here on",
        f"{INDENT}metrics[step] = reduced[1]",
        f"{INDENT}if reduced[2] > 0.0:  # a rank's loss was not finite",
        f"{INDENT}    return step",
        f"{INDENT}if allreduce_sum_in_place(reduce_call, block, block.size) != 0:",
        f"{INDENT}    raise RuntimeError('MPI_Allreduce of the gradients failed')",
    ]


def _bucketed_backward_lines(plan: LoopPlan, backward, comments, replaced, slots) -> list[str]:
    """``plan.buckets``: each bucket's gradients packed and their sum started
    (``MPI_Iallreduce``) right after the backward kernel that completes them; then the
    loss, metric and flag summed, every bucket waited for, and the sums unpacked. A rank
    whose loss is not finite skips the backward kernels but starts the same sums in the
    same order, as MPI's collectives must be."""
    indent = INDENT + "    "
    starts: dict[int, list[str]] = {}
    for number, (after, members) in enumerate(plan.buckets):
        starts.setdefault(after, []).extend(_bucket_start_lines(number, members, indent))
    calls = _backward_calls(backward, comments, replaced, slots, indent, starts)
    total = sum(size for _, members in plan.buckets for _, _, size in members)
    lines = [
        *_unless_bad(starts.get(-1, []) + calls),
        f"{INDENT}else:  # no backward pass, but the same sums in the same order",
    ]
    for number, (_, members) in enumerate(plan.buckets):
        lines += _bucket_start_lines(number, members, indent)
    if not plan.buckets:
        lines.append(f"{indent}pass")
    lines += [
        f"{INDENT}packed[{total}] = losses[step]",
        f"{INDENT}packed[{total + 1}] = metrics[step]",
        f"{INDENT}packed[{total + 2}] = 1.0 if bad else 0.0",
        f"{INDENT}if allreduce_sum(reduce_call, packed[{total}:], reduced[{total}:], 3) != 0:",
        f"{INDENT}    raise RuntimeError('MPI_Allreduce of the loss failed')",
        f"{INDENT}if wait_all(reduce_call, requests, statuses, {len(plan.buckets)}) != 0:",
        f"{INDENT}    raise RuntimeError('MPI_Waitall of the gradient sums failed')",
        f"{INDENT}losses[step] = reduced[{total}]  # every rank's sums, from here on",
        f"{INDENT}metrics[step] = reduced[{total + 1}]",
        f"{INDENT}if reduced[{total + 2}] > 0.0:  # a rank's loss was not finite",
        f"{INDENT}    return step",
    ]
    for _, members in plan.buckets:
        lines += [
            f"{INDENT}unpack_from(reduced, {offset}, updates[{index}][1])"
            for index, offset, _ in members
        ]
    return lines


def _bucket_start_lines(number: int, members, indent: str) -> list[str]:
    low = min(offset for _, offset, _ in members)
    high = max(offset + size for _, offset, size in members)
    lines = [
        f"{indent}pack_into(packed, {offset}, updates[{index}][1])" for index, offset, _ in members
    ]
    lines += [
        f"{indent}if iallreduce_sum(reduce_call, packed[{low}:{high}], reduced[{low}:{high}],"
        f" {high - low}, requests, {number}) != 0:",
        f"{indent}    raise RuntimeError('MPI_Iallreduce of a gradient bucket failed')",
    ]
    return lines


def _header_lines(plan: LoopPlan) -> list[str]:
    """The imports and the signature of ``train``, up to the first line of a step."""
    module, attribute = kernel_reference(plan.update)
    return [
        "import math\n",
        "import numba\n",
        "from graphc.codegen_cpu.train_support import (",
        *(f"    {name}," for name in sorted(train_support.NAMES)),
        ")",
        "from graphc.backend.source_cache import kernel_function",
        "from graphc.codegen_cpu.collective_call import (",
        "    allreduce_sum,",
        "    allreduce_sum_in_place,",
        "    iallreduce_sum,",
        "    wait_all,",
        ")",
        "from graphc.codegen_cpu.frames import call_frame, call_frame_counted",
        "from graphc.codegen_cpu.native_call import call_native, call_native_counted",
        "from graphc.codegen_cpu.optimizer_updates import global_norm_scale, sum_of_squares\n",
        f"update = kernel_function({module!r}, {attribute!r})\n\n",
        # nogil: a data-parallel loop may wait in MPI_Allreduce, and the stall watchdog
        # (runtime.communicator) must be able to run meanwhile
        "@numba.njit(cache=True, nogil=True)" if plan.allreduce else "@numba.njit(cache=True)",
        "def train(forward_entries, backward_entries, forward_frame, backward_frame, forward,"
        " backward, updates, scalars,"
        " sources, targets, order, starts, batch, count, rows, counter0, head, label, grad_scale,"
        " losses, metrics, carried, fresh, in_place, reduce_call, packed, reduced, requests,"
        " statuses, block):",
        "    for step in range(count):",
        "        start = starts[step]",
    ]


def _batch_lines(plan: LoopPlan, replaced: dict[str, dict]) -> tuple[list[str], str]:
    """Cutting the step's batch: gathered into the bound inputs, or with ``plan.views``
    read in place when its rows are consecutive (the kernels' arguments at those views
    are spelled out in ``replaced``). Also the spelling of the label the statistics read."""
    if plan.views is None:
        lines = [
            f"{INDENT}gather_rows(sources[{index}], targets[{index}], order, start)"
            for index in range(plan.sources)
        ]
        return lines, "label"
    lines = [
        f"{INDENT}first = order[start]",
        f"{INDENT}if in_place[step]:  # consecutive rows: read in place",
    ]
    for index in range(plan.sources):
        lines.append(
            f"{INDENT}    batch{index} = sources[{index}][first : first + batch]"
            f".reshape(targets[{index}].shape)"
        )
    lines.append(f"{INDENT}else:  # shuffled or wrapped: gathered into the bound input")
    for index in range(plan.sources):
        lines += [
            f"{INDENT}    gather_rows(sources[{index}], targets[{index}], order, start)",
            f"{INDENT}    batch{index} = targets[{index}]",
        ]
    for phase, kernel, structure, path, source in plan.views:
        expressions = replaced[phase].setdefault(kernel, (structure, {}))[1]
        expressions[path] = f"batch{source}.reshape({{bound}}.shape)"
    label = "label"
    if plan.label_source >= 0:
        label = f"batch{plan.label_source}.reshape(label.shape)"
    return lines, label


def _state_lines(plan: LoopPlan) -> list[str]:
    """Zeroing the carried states where a step starts them afresh."""
    if not plan.states:
        return []
    lines = [f"{INDENT}if fresh[step]:"]
    for index in range(plan.states):
        lines.append(f"{INDENT}    zero_fill(carried[{index}][0])")
    return lines


def _statistics_lines(plan: LoopPlan, label: str) -> list[str]:
    """The step's loss and metric sum, recorded in ``losses`` and ``metrics``."""
    helper, sums = HEAD_STATISTICS[plan.head.name]
    arguments = _spelled(plan.head)
    lines = [
        f"{INDENT}loss, {', '.join(sums)} = {helper}(head, {label}, rows[step], grad_scale"
        f"{arguments})"
    ]
    metric = METRIC_STATISTICS[plan.metric.name]
    if metric in train_support.NAMES:
        metric = f"{metric}(head, {label}, rows[step]{_spelled(plan.metric)})"
    elif metric not in sums:
        raise BackendError(
            f"the CPU training loop computes the metric statistic {plan.metric.name!r} from "
            f"class probabilities or predictions its head statistic {plan.head.name!r} "
            "does not give"
        )
    return [*lines, f"{INDENT}losses[step] = loss", f"{INDENT}metrics[step] = {metric}"]


def _spelled(statistic: LoopStatistic) -> str:
    """The statistic's arguments as source, each after a comma (repr keeps every float)."""
    return "".join(f", {argument!r}" for argument in statistic.arguments)


def _update_lines(plan: LoopPlan) -> list[str]:
    """The finiteness check of every gradient (of their block, with ``plan.finite_block``),
    global-norm clipping, the updates and the carried states' copy."""
    each = [f"updates[{index}][1]" for index in range(plan.parameters)]
    checked = ["block"] if plan.finite_block else each
    lines = []
    for gradient in checked:
        lines += [f"{INDENT}if not all_finite({gradient}):", f"{INDENT}    return step"]
    scalars = [f"scalars[step, {k}]" for k in range(plan.scalars)]
    if plan.clip_global_norm:
        lines.append(f"{INDENT}total = 0.0")
        for index in range(plan.parameters):
            lines.append(f"{INDENT}total += sum_of_squares(updates[{index}][1])")
        lines.append(
            f"{INDENT}scale = global_norm_scale(total, scalars[step, {plan.rescale_grad_index}],"
            f" scalars[step, {plan.grad_scale_index}])"
        )
        scalars[plan.grad_scale_index] = "scale"
    for index in range(plan.parameters):
        lines.append(f"{INDENT}update(*updates[{index}], {', '.join(scalars)})")
    for index in range(plan.states):
        lines.append(f"{INDENT}copy_array(carried[{index}][1], carried[{index}][0])")
    return lines


class NativeLoop:
    """``train(forward, backward, ...)``: the compiled ``train`` with the entries of its
    kernels (``sequence.native_entries``) and their frames (``frames``), found at the first
    call and again should other argument tuples come or a bound array change type; what is
    not compiled yet is compiled on every core first.

    A kernel whose arguments the loop spells out itself (a batch read in place) or whose
    types have no frame spec is passed its tuple; the others get ``()`` in its place, so
    the loop's CPython wrapper unboxes only what it reads."""

    def __init__(self, render, kernels, labels, framed) -> None:
        self.render = render
        self.kernels = tuple(tuple(group) for group in kernels)
        self.labels = tuple(tuple(group) for group in labels)
        self.framed = framed
        self.function = None
        self._slots = None
        self._bound = None
        self._frames = ()
        self._passed = ()
        self._entries = None

    def bind(self, forward, backward) -> None:
        """Pack the frames of ``forward`` and ``backward`` (argument tuples, one per kernel)
        and load the ``train`` compiled for their slots (rendered again only when they
        differ from the last ones)."""
        phases = (forward, backward)
        frames = tuple(
            frame_set(arguments, framed)
            for arguments, framed in zip(phases, self.framed, strict=True)
        )
        slots = tuple(frame.slots for frame in frames)
        if slots != self._slots:
            self.function = self.render(slots)
            self._slots = slots
        lean = tuple(
            tuple(() if index in frame.slots else args for index, args in enumerate(arguments))
            for frame, arguments in zip(frames, phases, strict=True)
        )
        self._frames = frames
        self._passed = (*(frame.address for frame in frames), *lean)
        self._bound = phases
        self._entries = None

    def __call__(self, forward, backward, *rest):
        bound = self._bound
        if (
            bound is None
            or bound[0] is not forward
            or bound[1] is not backward
            or not all(frame.still_valid() for frame in self._frames)
        ):
            self.bind(forward, backward)

        def entries(again: bool) -> tuple:
            if again or self._entries is None:
                groups = [
                    (self.kernels[0], forward, self.labels[0]),
                    (self.kernels[1], backward, self.labels[1]),
                ]
                leading = (*(placeholders(kernels) for kernels in self.kernels), *self._passed)
                self._entries = find_entries(
                    self.function, leading, groups, rest, "the training loop"
                )
            return self._entries

        return call_rebinding(self.function, entries, *self._passed, *rest)


def _framed(plan: LoopPlan, kernels: Sequence[Kernel], phase: str) -> list[bool]:
    """Which kernels of ``phase`` may be called on frames: all but those reading a batch in
    place, whose arguments the loop spells out."""
    spelled = {kernel for view_phase, kernel, *_ in plan.views or () if view_phase == phase}
    return [index not in spelled for index in range(len(kernels))]


def compile_training_loop(
    forward, forward_comments, backward, backward_comments, plan, arguments=None
):
    """The compiled ``train`` function (a :class:`NativeLoop`) and its source with comments
    (the source without them is what is compiled and cached, as in
    ``codegen_cpu.sequence``). ``arguments``: the forward and backward argument tuples the
    loop will be called with, packed into frames now (else at its first call)."""
    framed = (_framed(plan, forward, "forward"), _framed(plan, backward, "backward"))

    def render(slots):
        return load_kernel(
            render_training_loop(forward, None, backward, None, plan, slots), "train"
        )

    labels = (forward_comments, backward_comments)
    loop = NativeLoop(render, (forward, backward), labels, framed)
    slots = ({}, {})
    if arguments is not None:
        loop.bind(*arguments)
        slots = loop._slots
    source = render_training_loop(
        forward, forward_comments, backward, backward_comments, plan, slots
    )
    if "sequence" in os.environ.get("GRAPHC_DUMP", "").split(","):
        print(source, file=sys.stderr)
    return loop, source
