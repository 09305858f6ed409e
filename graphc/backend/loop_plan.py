"""The contract of a compiled training loop: what ``Model.fit``'s compiled path hands a
target's loop generator beside the forward and backward kernels (``codegen_cpu.train_loop``
renders it for the CPU).

The loop computes, after each forward, the loss of the step from the head's output and
label (a head statistic) and the sum of one metric (a metric statistic). The names below
are the vocabulary between the two sides: a loss head names its statistic in its
definition (``HeadDef.loop_statistic``, ``graphc/ir/ops/loss.py``), a metric names its own
(``EvalMetric.loop_statistic``, ``graphc/training/metric.py``), and a target implements
each name once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

HEAD_STATISTICS = {
    "softmax": (
        "the sum over rows of -log(max(p[label], floor)) times grad_scale (arguments: floor),"
        " from (rows, classes) probabilities; with 'correct', the rows whose first most"
        " probable class is the label"
    ),
    "regression": (
        "the sum over rows of half the mean squared error over the row's outputs, times"
        " grad_scale; with 'squares' and 'magnitudes', the sums over rows of the mean squared"
        " and the mean absolute error"
    ),
    "logistic": (
        "the sum over rows of the mean binary cross-entropy over the row's outputs, from"
        " probabilities clipped to [floor, 1 - floor] (arguments: floor), times grad_scale;"
        " with 'squares' and 'magnitudes' as for 'regression'"
    ),
}
"""The loss statistics a loop computes, by name."""

METRIC_STATISTICS = {
    "accuracy": "the rows whose first most probable class is the label",
    "top_k": "the rows whose label ranks among the k most probable classes, ties to the"
    " lower class (arguments: k)",
    "cross_entropy": "the sum over rows of -log(p[label] + eps) (arguments: eps)",
    "perplexity": "the sum over rows of -log(max(p[label], floor)) (arguments: floor)",
    "squared_error": "the sum over rows of the mean squared error over the row's outputs",
    "absolute_error": "the sum over rows of the mean absolute error over the row's outputs",
}
"""The metric sums a loop computes, by name: each step's sum is the metric's
``sum_metric`` over the step's rows, and the rows are its ``num_inst``."""


class CollectiveCall(NamedTuple):
    """How a data-parallel loop (``LoopPlan.allreduce``) calls MPI itself: the addresses of
    ``MPI_Allreduce``, ``MPI_Iallreduce`` and ``MPI_Waitall`` in the MPI library the process
    loaded and the handles they take, as integers of the library's handle width (``int`` in
    MPICH, a pointer in Open MPI). Run-time arguments, never constants in generated code, so
    that the code stays valid in the disk cache. ``runtime.communicator`` makes it; a
    target's loop calls through it (``codegen_cpu.collective_call``)."""

    allreduce: np.int64
    float32: np.integer
    float64: np.integer
    sum: np.integer
    comm: np.integer
    iallreduce: np.int64
    waitall: np.int64
    in_place: np.int64  # the value of MPI_IN_PLACE, a pointer constant


NO_COLLECTIVES = CollectiveCall(np.int64(0), *(np.int32(0),) * 4, *(np.int64(0),) * 3)
"""The loop's argument in a one-process fit, which never calls MPI."""


@dataclass(frozen=True)
class LoopStatistic:
    """One statistic of the loop: a name of :data:`HEAD_STATISTICS` or
    :data:`METRIC_STATISTICS` and its arguments (numbers written into the loop).

    >>> LoopStatistic("top_k", (5,))
    LoopStatistic(name='top_k', arguments=(5,))
    """

    name: str
    arguments: tuple[float, ...] = ()


@dataclass(frozen=True)
class LoopPlan:
    """What the generated loop calls, beside the kernels.

    ``head``: the loss statistic (a name of :data:`HEAD_STATISTICS`); ``metric``: the metric
    statistic (a name of :data:`METRIC_STATISTICS`).
    ``states``: how many recurrent states the loop carries from step to step (each zeroed
    where ``fresh[step]``, else the previous step's state output). ``sources``: how
    many arrays are cut into batches (data then labels). ``update``: the optimizer's kernel;
    ``scalars``: how many scalars it takes after its arrays, ``grad_scale_index`` where
    the global-norm factor goes among them (``rescale_grad_index``: where rescale_grad is); ``clip_global_norm``: whether to compute it.

    ``views``: where the kernels read the bound inputs, as (phase 'forward' or 'backward',
    kernel index, the nesting of its arguments, the path to the argument, source index); when
    given, a batch whose rows are consecutive in the data is read in place (a view of the
    data, no copy; ``in_place[step]`` says which, as :func:`training.compiled_loop.in_place_steps`
    computes it) and only a shuffled or wrapped batch is gathered into the bound input.
    None: every batch is gathered. ``label_source``: the source that is the head's label
    (read in place likewise by the loss and metric), or -1.

    ``allreduce``: a data-parallel loop. After the backward pass of every step it packs the
    gradients, the step's loss and metric sums and whether its loss was finite into one
    buffer, sums it over the ranks with one allreduce (``reduce_call``, ``packed`` and
    ``reduced`` are the loop's arguments for it), and goes on with the sums: every rank
    then applies the same update and stops at the same step.

    ``buckets``: with ``allreduce``, the gradients summed in buckets started as the backward
    pass completes them (``MPI_Iallreduce``, overlapping the rest of the backward pass, as
    DDP and Horovod do), then waited for before the update; each bucket is (the backward
    kernel after which its gradients are final, -1 for before the first, and its
    (parameter index, offset in the packed buffer, size) triples). None: one allreduce of
    everything after the backward pass. ``in_place``: with ``allreduce`` and no buckets, the
    gradients lie in one block of the arena (``Executor.gradient_block``, the loop's
    ``block`` argument), summed there in place, no copy; the loss, metric and flag first,
    in a call of their own. ``finite_block``: ``block`` holds exactly the gradients the loop
    updates (and zeros between them), so the loop checks their finiteness with one pass
    over it."""

    head: LoopStatistic
    metric: LoopStatistic
    sources: int
    parameters: int
    update: object
    scalars: int
    grad_scale_index: int
    clip_global_norm: bool
    states: int = 0
    views: tuple[tuple[str, int, tuple, tuple, int], ...] | None = None
    label_source: int = -1
    rescale_grad_index: int = 2
    allreduce: bool = False
    in_place: bool = False
    finite_block: bool = False
    buckets: tuple[tuple[int, tuple[tuple[int, int, int], ...]], ...] | None = None

    def __post_init__(self) -> None:
        if self.head.name not in HEAD_STATISTICS:
            raise ValueError(
                f"LoopPlan: no head statistic {self.head.name!r}; known: {sorted(HEAD_STATISTICS)}"
            )
        if self.metric.name not in METRIC_STATISTICS:
            raise ValueError(
                f"LoopPlan: no metric statistic {self.metric.name!r}; known: "
                f"{sorted(METRIC_STATISTICS)}"
            )
