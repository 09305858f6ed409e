"""The generated training loop: many training steps (cut the batch, forward, loss and
metric, backward, optimizer update) in one compiled call.

``train(...)`` runs ``count`` steps over in-memory data. Per step it takes the batch from
the data set by the sample order: a run of consecutive rows is read in place (a view of
the data that the kernels take instead of the bound input, no copy), any other batch is
gathered into the bound input (``gather_rows``). It then calls the forward kernels,
records the batch's loss and metric sums, stops before the backward pass when the loss or
an output is not finite (returning that step's index), calls the backward kernels, stops
likewise on a non-finite gradient, and updates every parameter with the optimizer's fused
kernel. Values that change during training (learning rate, Adam's step, the Dropout step)
are runtime arguments: ``scalars[step]`` holds the optimizer's scalars of each step and
``step0`` the first Dropout step, so a learning-rate schedule never recompiles anything.

The source is readable (``GRAPHC_DUMP=step`` prints it) and cached like every kernel;
each kernel call is commented with the user's nodes it computes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from graphc.codegen_cpu.lowering import Kernel, kernel_reference
from graphc.codegen_cpu.step import call_lines, kernel_names
from graphc.runtime.cache import load_kernel


@dataclass(frozen=True)
class LoopPlan:
    """What the generated loop calls, beside the kernels.

    ``head``: 'softmax' or 'regression' (which statistics helper computes the loss);
    ``metric``: 'accuracy' or 'perplexity' (softmax), 'mse', 'rmse' or 'mae' (regression).
    ``states``: how many recurrent states the loop carries from step to step (each zeroed
    where ``fresh[step]``, else the previous step's state output). ``sources``: how
    many arrays are cut into batches (data then labels). ``update``: the optimizer's kernel;
    ``scalars``: how many scalars it takes after its arrays, ``grad_scale_index`` where
    the global-norm factor goes among them; ``clip_global_norm``: whether to compute it.

    ``views``: where the kernels read the bound inputs, as (phase 'forward' or 'backward',
    kernel index, the nesting of its arguments, the path to the argument, source index); when
    given, a batch whose rows are consecutive in the data is read in place (a view of the
    data, no copy; ``in_place[step]`` says which, as :func:`runtime.compiled_fit.in_place_steps`
    computes it) and only a shuffled or wrapped batch is gathered into the bound input.
    None: every batch is gathered. ``label_source``: the source that is the head's label
    (read in place likewise by the loss and metric), or -1."""

    head: str
    metric: str
    sources: int
    parameters: int
    update: object
    scalars: int
    grad_scale_index: int
    clip_global_norm: bool
    states: int = 0
    views: tuple[tuple[str, int, tuple, tuple, int], ...] | None = None
    label_source: int = -1


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
        "from graphc.runtime.cache import kernel_function",
        "from graphc.runtime.optimizer_kernels import global_norm_scale, sum_of_squares\n",
        *imports,
        f"update = kernel_function({module!r}, {attribute!r})\n\n",
        "@numba.njit(cache=True)",
        "def train(forward, backward, updates, scalars, sources, targets, order, batch,"
        " count, rows, step0, head, label, grad_scale, losses, metrics, carried, fresh,"
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
    lines.append(f"{indent}step_value = step0 + step")
    if plan.states:
        lines.append(f"{indent}if fresh[step]:")
        for index in range(plan.states):
            lines.append(f"{indent}    zero_fill(carried[{index}][0])")
    lines += call_lines(
        forward, forward_comments, names, "forward", "step_value", indent, replaced["forward"]
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
        backward, backward_comments, names, "backward", "step_value", indent, replaced["backward"]
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
    them is what is compiled and cached, as in ``codegen_cpu.step``)."""
    source = render_training_loop(forward, forward_comments, backward, backward_comments, plan)
    if "step" in os.environ.get("GRAPHC_DUMP", "").split(","):
        print(source, file=sys.stderr)
    bare = render_training_loop(forward, None, backward, None, plan)
    return load_kernel(bare, "train"), source
