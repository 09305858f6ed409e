"""The generated training loop: many training steps (cut the batch, forward, loss and
metric, backward, optimizer update) in one compiled call.

``train(...)`` runs ``count`` steps over in-memory data. Per step it takes the batch from
the data set by the sample order: a run of consecutive rows is read in place (a view of
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

from graphc.backend.loop_plan import LoopPlan
from graphc.backend.lowering import Kernel
from graphc.backend.source_cache import load_kernel
from graphc.codegen_cpu.sequence import call_lines, kernel_names, kernel_reference


def render_training_loop(
    forward: Sequence[Kernel],
    forward_comments: Sequence[str] | None,
    backward: Sequence[Kernel],
    backward_comments: Sequence[str] | None,
    plan: LoopPlan,
) -> str:
    imports, names = kernel_names([*forward, *backward])
    module, attribute = kernel_reference(plan.update)
    lines = [
        "import math\n",
        "import numba\n",
        "from graphc.codegen_cpu.train_support import (",
        "    all_finite,",
        "    copy_array,",
        "    gather_rows,",
        "    perplexity_sum,",
        "    regression_stats,",
        "    softmax_stats,",
        "    zero_fill,",
        ")",
        "from graphc.backend.source_cache import kernel_function",
        "from graphc.codegen_cpu.optimizer_updates import global_norm_scale, sum_of_squares\n",
        *imports,
        f"update = kernel_function({module!r}, {attribute!r})\n\n",
        "@numba.njit(cache=True)",
        "def train(forward, backward, updates, scalars, sources, targets, order, batch,"
        " count, rows, counter0, head, label, grad_scale, losses, metrics, carried, fresh,"
        " in_place):",
        "    for step in range(count):",
        "        start = step * batch",
    ]
    indent = "        "
    replaced: dict[str, dict] = {"forward": {}, "backward": {}}
    label = "label"
    if plan.views is None:
        for index in range(plan.sources):
            lines.append(f"{indent}gather_rows(sources[{index}], targets[{index}], order, start)")
    else:
        lines += [
            f"{indent}first = order[start]",
            f"{indent}if in_place[step]:  # consecutive rows: read in place",
        ]
        for index in range(plan.sources):
            lines.append(
                f"{indent}    batch{index} = sources[{index}][first : first + batch]"
                f".reshape(targets[{index}].shape)"
            )
        lines.append(f"{indent}else:  # shuffled or wrapped: gathered into the bound input")
        for index in range(plan.sources):
            lines += [
                f"{indent}    gather_rows(sources[{index}], targets[{index}], order, start)",
                f"{indent}    batch{index} = targets[{index}]",
            ]
        for phase, kernel, structure, path, source in plan.views:
            expressions = replaced[phase].setdefault(kernel, (structure, {}))[1]
            expressions[path] = f"batch{source}.reshape({{bound}}.shape)"
        if plan.label_source >= 0:
            label = f"batch{plan.label_source}.reshape(label.shape)"
    lines.append(f"{indent}counter = counter0 + step")
    if plan.states:
        lines.append(f"{indent}if fresh[step]:")
        for index in range(plan.states):
            lines.append(f"{indent}    zero_fill(carried[{index}][0])")
    lines += call_lines(
        forward, forward_comments, names, "forward", "counter, True", indent, replaced["forward"]
    )
    if plan.head == "softmax":
        lines.append(f"{indent}loss, metric = softmax_stats(head, {label}, rows[step], grad_scale)")
        if plan.metric == "perplexity":
            lines.append(f"{indent}metric = perplexity_sum(head, {label}, rows[step])")
    else:
        lines.append(
            f"{indent}loss, metric = regression_stats(head, {label}, rows[step], grad_scale,"
            f" {plan.metric == 'mae'})"
        )
    lines += [
        f"{indent}losses[step] = loss",
        f"{indent}metrics[step] = metric",
        f"{indent}if not math.isfinite(loss) or not all_finite(head):",
        f"{indent}    return step",
    ]
    lines += call_lines(
        backward,
        backward_comments,
        names,
        "backward",
        "counter, True",
        indent,
        replaced["backward"],
    )
    for index in range(plan.parameters):
        lines += [
            f"{indent}if not all_finite(updates[{index}][1]):",
            f"{indent}    return step",
        ]
    scalars = [f"scalars[step, {k}]" for k in range(plan.scalars)]
    if plan.clip_global_norm:
        lines.append(f"{indent}total = 0.0")
        for index in range(plan.parameters):
            lines.append(f"{indent}total += sum_of_squares(updates[{index}][1])")
        lines.append(
            f"{indent}scale = global_norm_scale(total, scalars[step, 2],"
            f" scalars[step, {plan.grad_scale_index}])"
        )
        scalars[plan.grad_scale_index] = "scale"
    for index in range(plan.parameters):
        lines.append(f"{indent}update(*updates[{index}], {', '.join(scalars)})")
    for index in range(plan.states):
        lines.append(f"{indent}copy_array(carried[{index}][1], carried[{index}][0])")
    lines.append("    return count")
    return "\n".join(lines) + "\n"


def compile_training_loop(forward, forward_comments, backward, backward_comments, plan):
    """The compiled ``train`` function and its source with comments (the source without
    them is what is compiled and cached, as in ``codegen_cpu.sequence``)."""
    source = render_training_loop(forward, forward_comments, backward, backward_comments, plan)
    if "sequence" in os.environ.get("GRAPHC_DUMP", "").split(","):
        print(source, file=sys.stderr)
    bare = render_training_loop(forward, None, backward, None, plan)
    return load_kernel(bare, "train"), source
