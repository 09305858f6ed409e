"""Python out of the training loop: a bound executor, its optimizer and in-memory data run
as one compiled call per chunk of training steps (``codegen_cpu.train_loop``).

``CompiledTraining.unsupported(...)`` says why a model cannot take this path (``Model.fit``
then trains step by step, with the same numbers); ``run(...)`` trains a chunk: it computes
each step's optimizer scalars in Python (the schedule, Adam's bias correction) and hands the
data, the sample order of the chunk and those scalars to the compiled loop in one call. The
loop returns how many steps it completed; the loss and metric sums of every step come back
in arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from graphc.codegen_cpu.train_loop import LoopPlan, compile_training_loop
from graphc.runtime.cache import call_repairing
from graphc.runtime.executor import Executor, provenance
from graphc.runtime.optimizer import GRAD_SCALE_INDEX, Optimizer

METRICS = {
    "accuracy": "softmax",
    "perplexity": "softmax",
    "mse": "regression",
    "rmse": "regression",
    "mae": "regression",
}
"""Metrics the compiled loop computes, and the loss head each needs."""


@dataclass
class ChunkResult:
    """What one compiled call did: steps completed, and each step's loss and metric sums
    (the step that stopped the loop, if any, has its loss recorded too)."""

    completed: int
    losses: np.ndarray
    metrics: np.ndarray


class CompiledTraining:
    """One compiled training loop for a bound executor and an optimizer."""

    @staticmethod
    def unsupported(
        executor: Executor,
        heads: Sequence,
        metric_names: Sequence[str],
        grad_req: dict,
        state_outputs: int = 0,
    ) -> str | None:
        """Why this model cannot train in one compiled call per chunk, or None.
        ``state_outputs``: how many outputs are carried recurrent states."""
        if len(heads) != 1 or len(executor.outputs) != 1 + state_outputs:
            return "the compiled loop takes one loss head and carried states as its outputs"
        head = heads[0]
        if head.op == "SoftmaxOutput":
            kind = "softmax"
            attrs = head.attrs
            if attrs.get("use_ignore") or attrs.get("multi_output") or attrs.get("preserve_shape"):
                return "SoftmaxOutput with ignored labels or several outputs per sample"
            if executor.outputs[0].ndim != 2:
                return "SoftmaxOutput over more than two dimensions"
        elif head.op == "LinearRegressionOutput":
            kind = "regression"
        else:
            return f"the compiled loop has no loss for {head.op}"
        if head.label is None or head.label not in executor.arg_dict:
            return "the loss head's label is not an argument"
        if len(metric_names) != 1 or METRICS.get(metric_names[0]) != kind:
            return f"the compiled loop computes {sorted(METRICS)} for its head, not {metric_names}"
        if any(request == "add" for request in grad_req.values()):
            return "grad_req='add'"
        return None

    def __init__(
        self,
        executor: Executor,
        optimizer: Optimizer,
        states: dict[str, tuple],
        head,
        metric_name: str,
        input_names: Sequence[str],
        batch_shapes: Sequence[tuple] | None = None,
        carried: Sequence[tuple[str, int]] = (),
    ) -> None:
        """``batch_shapes``: the shape each input is cut in, when the bound array has
        another of the same size (charlm's (T * N,) label filled as (T, N)); ``carried``:
        (state input, output index) pairs the loop carries from step to step."""
        self.executor = executor
        self.optimizer = optimizer
        self.head = head
        self.input_names = list(input_names)
        shapes = batch_shapes or [executor.arg_dict[name].shape for name in self.input_names]
        self.targets = tuple(
            executor.arg_dict[name].reshape(shape)
            for name, shape in zip(self.input_names, shapes, strict=True)
        )
        self.carried = tuple(
            (executor.arg_dict[name], executor.outputs[output]) for name, output in carried
        )
        self.updates = tuple(
            (
                executor.arg_dict[name].reshape(-1),
                _gradient_buffer(executor, name).reshape(-1),
                *(state.reshape(-1) for state in states[name]),
            )
            for name in states
        )
        forward = executor._forward_run
        backward = executor._backward_run
        views = _input_views(self.targets, {"forward": forward.steps, "backward": backward.steps})
        label = executor.arg_dict[head.label]
        label_source = next(
            (j for j, target in enumerate(self.targets) if _same_buffer(target, label)), -1
        )
        plan = LoopPlan(
            head="softmax" if head.op == "SoftmaxOutput" else "regression",
            metric=metric_name,
            sources=len(self.input_names),
            parameters=len(self.updates),
            update=optimizer.kernel,
            scalars=len(optimizer.scalar_arguments(1)),
            grad_scale_index=GRAD_SCALE_INDEX,
            clip_global_norm=optimizer.clip_global_norm is not None,
            states=len(self.carried),
            views=views,
            label_source=label_source if views is not None else -1,
        )
        self.fn, self.source = compile_training_loop(
            [step.kernel for step in forward.steps],
            [provenance(step.node) for step in forward.steps],
            [step.kernel for step in backward.steps],
            [provenance(step.node) for step in backward.steps],
            plan,
        )
        self.forward_arguments = forward.arguments
        self.backward_arguments = backward.arguments
        self.grad_scale = float(head.attrs.get("grad_scale", 1.0))

    def scalars(self, count: int) -> np.ndarray:
        """Each step's optimizer scalars; with global-norm clipping the grad_scale slot holds
        the bound the loop turns into the factor."""
        first = self.optimizer.num_update + 1
        if self._constant_scalars():
            row = np.array(self.optimizer.scalar_arguments(first), dtype=np.float64)
            table = np.tile(row, (count, 1))
        else:
            rows = [self.optimizer.scalar_arguments(first + step) for step in range(count)]
            table = np.array(rows, dtype=np.float64).reshape(count, -1)
        if self.optimizer.clip_global_norm is not None:
            table[:, GRAD_SCALE_INDEX] = float(self.optimizer.clip_global_norm)
        return table

    def _constant_scalars(self) -> bool:
        """Whether every step's scalars are the same: no schedule, and a learning rate that
        does not depend on the step (Adam's bias correction does)."""
        optimizer = self.optimizer
        return (
            optimizer.lr_scheduler is None
            and type(optimizer).learning_rate_at is Optimizer.learning_rate_at
        )

    def run(
        self,
        sources: Sequence[np.ndarray],
        order: np.ndarray,
        valid_rows: np.ndarray,
        fresh: np.ndarray | None = None,
        in_place: np.ndarray | None = None,
    ) -> ChunkResult:
        """Train ``len(valid_rows)`` steps over the batches ``order`` cuts from ``sources``
        (one array per input, as ``input_names``), the carried states zeroed before the
        steps ``fresh`` marks; counts the optimizer's updates and the executor's Dropout
        step for the steps completed. ``in_place``: :func:`in_place_steps` of ``order``,
        when the caller has it (an epoch's plan repeated), else computed here."""
        count = len(valid_rows)
        batch = self.targets[0].shape[0]  # rows cut per input per step
        sources = [  # the loop reads batches in place: the data in the bound dtype
            np.ascontiguousarray(source, dtype=target.dtype)
            for source, target in zip(sources, self.targets, strict=True)
        ]
        if in_place is None:
            in_place = in_place_steps(order, batch, min(len(source) for source in sources))
        losses = np.zeros(count, dtype=np.float64)
        metrics = np.zeros(count, dtype=np.float64)
        completed = call_repairing(
            self.fn,
            self.forward_arguments,
            self.backward_arguments,
            self.updates,
            self.scalars(count),
            tuple(sources),
            self.targets,
            np.ascontiguousarray(order, dtype=np.int64),
            batch,
            count,
            np.ascontiguousarray(valid_rows, dtype=np.int64),
            self.executor._train_step,
            self.executor.outputs[self.head.output],
            self.executor.arg_dict[self.head.label].reshape(-1),
            self.grad_scale,
            losses,
            metrics,
            self.carried,
            np.zeros(count, dtype=np.bool_) if fresh is None else np.asarray(fresh, np.bool_),
            np.ascontiguousarray(in_place, dtype=np.bool_),
        )
        self.optimizer.num_update += completed
        self.executor._train_step += completed
        return ChunkResult(int(completed), losses, metrics)


def in_place_steps(order: np.ndarray, batch: int, available: int) -> np.ndarray:
    """For each step of ``order`` (``batch`` rows each), whether its rows are one run of
    consecutive rows within the first ``available`` rows of the data, so that the loop
    reads the batch in place instead of gathering it. Computed once per epoch plan, in
    NumPy, rather than in the loop at every step.

    >>> in_place_steps(np.array([0, 1, 2, 3, 5, 4, 8, 9]), 2, available=9).tolist()
    [True, True, False, False]
    """
    rows = np.asarray(order, dtype=np.int64).reshape(-1, batch)
    if rows.size == 0:
        return np.zeros(len(rows), dtype=np.bool_)
    first = rows[:, 0]
    runs = (np.diff(rows, axis=1) == 1).all(axis=1)
    return runs & (first >= 0) & (first + batch <= available)


def _same_buffer(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether two arrays are the same memory (one may be a reshaped view of the other)."""
    return (
        first.__array_interface__["data"][0] == second.__array_interface__["data"][0]
        and first.nbytes == second.nbytes
        and first.flags.c_contiguous
        and second.flags.c_contiguous
    )


def _input_views(targets, phases) -> tuple | None:
    """Where kernels take a bound input whole (``LoopPlan.views``), or None when some kernel
    takes part of one, which a view of the data could not stand in for. Arguments may be
    tuples (a fused kernel's anchor arguments), searched likewise."""
    views: list[tuple] = []
    for phase, steps in phases.items():
        for index, step in enumerate(steps):
            arguments = tuple(step.args)
            where = (phase, index, _structure(arguments))
            if not _find_inputs(arguments, (), targets, where, views):
                return None
    return tuple(views)


def _find_inputs(argument, path: tuple, targets, where: tuple, views: list) -> bool:
    """Append to ``views`` each bound input ``argument`` is or holds, at its path; False
    when it holds part of one."""
    if isinstance(argument, tuple):
        return all(
            _find_inputs(item, (*path, k), targets, where, views) for k, item in enumerate(argument)
        )
    if not isinstance(argument, np.ndarray):
        return True
    for source, target in enumerate(targets):
        if np.shares_memory(argument, target):
            if not _same_buffer(argument, target):
                return False
            views.append((*where, path, source))
    return True


def _structure(arguments: tuple) -> tuple:
    """The nesting of a kernel's arguments: None for a leaf, a tuple for a tuple."""
    return tuple(_structure(item) if isinstance(item, tuple) else None for item in arguments)


def _gradient_buffer(executor: Executor, name: str) -> np.ndarray:
    """Where the backward kernels leave a parameter's gradient: the ``grad_dict`` array
    itself when written directly, else the planned buffer ``backward`` copies from."""
    source = executor._grad_sources.get(name)
    return executor.grad_dict[name] if source is None else source
