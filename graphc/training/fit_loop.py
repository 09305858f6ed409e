"""The loops over batches behind ``Model.fit``, ``Model.score`` and ``Model.predict``.

One training step, in order: copy the batch into the executor's bound arrays, set the
state inputs (zeros, or the last batch's state outputs: ``graphc.training.states``),
check the labels are values the heads take (``heads.check_label``), ``forward(is_train=True)``, keep the state outputs, the batch loss (``graphc.training.heads``)
and its finiteness, the metric (every output but the states), ``backward()`` (no gradient
from the state outputs), the finiteness of every gradient, ``optimizer.update``. A
non-finite loss or gradient raises :class:`TrainingDivergedError` before the update, so the
parameters stay those of the last good step.

>>> import numpy as np, graphc as gc
>>> from graphc.training.binding import ModelBindings
>>> bindings = ModelBindings(gc.models.linreg(), gc.cpu(), ("data",), ("lro_label",))
>>> pairs = gc.io.NDArrayIter(np.eye(2, dtype=np.float32), np.array([1.0, 3.0]),
...                           batch_size=2, label_name="lro_label")
>>> executor = bindings.executor(bindings.input_shapes(pairs, "score"), for_training=False)
>>> evaluate(bindings, executor, pairs, gc.metric.create("mae"))
([('mae', 2.0)], 2.5)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from graphc.data.io import NDArrayIter
from graphc.ir.errors import GraphcError
from graphc.runtime.arrays import asnumpy
from graphc.runtime.communicator import Communicator, LocalCommunicator
from graphc.runtime.executor import Executor
from graphc.training import metric as metrics
from graphc.training.binding import ModelBindings, batch_size_of
from graphc.training.data_parallel import (
    GradientSum,
    first_wait_seconds,
    sum_metric,
    sum_values,
)
from graphc.training.heads import LossHead, batch_loss, check_label, loss_heads, valid_rows
from graphc.training.optimizer import Optimizer
from graphc.training.progress import TrainingDisplay
from graphc.training.states import CarriedStates, state_output_positions


class TrainingDivergedError(GraphcError, FloatingPointError):
    """The training loss or a gradient became NaN or infinite; raised before that batch's
    update.

    Attributes: ``epoch`` and ``nbatch`` (both counted from 0, as callbacks count them) and
    ``loss`` (None when no loss head has its label)."""

    def __init__(self, message: str, epoch: int, nbatch: int, loss: float | None) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.nbatch = nbatch
        self.loss = loss


@dataclass(frozen=True)
class FitRun:
    """What one ``Model.fit`` call's epochs read, on either path."""

    train_data: Any
    eval_data: Any
    train_metric: metrics.EvalMetric
    val_metric: metrics.EvalMetric
    display: TrainingDisplay
    epoch_end_callback: Any
    begin_epoch: int
    num_epoch: int
    kvstore: Any = None
    """The ``KVStore`` of a data-parallel fit (``graphc.training.kvstore``); None alone."""

    @property
    def communicator(self) -> Communicator:
        return LocalCommunicator() if self.kvstore is None else self.kvstore.communicator


class BatchEndParam(NamedTuple):
    """What ``batch_end_callback`` receives, as MXNet's (``loss`` in place of ``locals``)."""

    epoch: int
    nbatch: int
    eval_metric: metrics.EvalMetric
    loss: float | None


def train_epoch(
    bindings: ModelBindings,
    executor: Executor,
    optimizer: Optimizer,
    opt_states: dict[str, tuple],
    train_data,
    metric: metrics.EvalMetric,
    display: TrainingDisplay,
    callbacks: Sequence[Callable],
    epoch: int,
    communicator: Communicator | None = None,
) -> tuple[float | None, int]:
    """One pass over ``train_data``; returns the mean loss per sample and the samples seen
    (padding left out). With a ``communicator`` of several ranks every step's gradients are
    summed over them before the update, every rank stops at a step where any rank's loss is
    not finite, and the loss, samples and metric returned are every rank's."""
    heads, batch_size, (data_names, label_names), states = _pass_setup(
        bindings, executor, train_data, metric
    )
    together = communicator is not None and communicator.size > 1
    gradients = [executor.grad_dict[name] for name in bindings.param_names]
    summed = GradientSum(communicator, gradients) if together else None
    loss_sum, loss_samples, samples = 0.0, 0, 0
    for nbatch, batch in enumerate(train_data):
        bindings.copy_batch(executor, batch, data_names, label_names)
        check_labels(heads, executor, "fit", f"batch {nbatch} of epoch {epoch}")
        states.before_forward(train_data)
        executor.forward(is_train=True)
        states.after_forward()
        outputs, labels = host_results(bindings, executor, heads)
        loss = batch_loss(heads, outputs, labels, batch_size, batch.pad)
        bad_loss = loss is not None and not math.isfinite(loss)
        if bad_loss and not together:
            raise diverged(bindings, executor, epoch, nbatch, loss)
        if not bad_loss:
            update_metric(bindings, outputs, labels, metric, batch_size, batch.pad)
            executor.backward(states.out_grads)
        if summed is not None and summed(
            gradients, bad_loss, f"the gradient allreduce of epoch {epoch}, batch {nbatch}"
        ):
            raise diverged(bindings, executor, epoch, nbatch, loss if bad_loss else math.nan)
        # A finite loss does not make the gradients finite: the backward pass can overflow
        # on its own, and a NaN weight that max pooling passes over leaves the forward
        # finite. The target checks them all at once (on a GPU, without copying them).
        flagged = executor.target.arrays.nonfinite(gradients)
        bad_grads = [name for name, bad in zip(bindings.param_names, flagged) if bad]
        if bad_grads:
            raise diverged(bindings, executor, epoch, nbatch, loss, bad_grads)
        optimizer.update(executor.arg_dict, executor.grad_dict, opt_states, executor.target)
        real = batch_size - batch.pad
        samples += real
        if loss is not None:
            loss_sum += loss * real
            loss_samples += real
        mean_loss = loss_sum / loss_samples if loss_samples else None
        display.batch(nbatch + 1, samples, metric.get_name_value(), mean_loss)
        for callback in callbacks:
            callback(BatchEndParam(epoch, nbatch, metric, loss))
    if together:
        what = f"the sums of epoch {epoch}'s loss and metric"
        loss_sum, loss_samples, samples = sum_values(
            communicator, [loss_sum, loss_samples, samples], what
        )
        loss_samples, samples = int(loss_samples), int(samples)
        sum_metric(communicator, metric, what)
    return (loss_sum / loss_samples if loss_samples else None), samples


def _pass_setup(bindings: ModelBindings, executor: Executor, data, metric) -> tuple:
    """What a pass over ``data`` needs before its first batch: the loss heads, the batch
    size, the iterator's (data, label) names as bound, the carried states; the metric is
    reset."""
    metric.reset()
    return (
        loss_heads(bindings.symbol),
        batch_size_of(data),
        bindings.input_names(data),
        CarriedStates(executor, bindings.state_names),
    )


def diverged(
    bindings: ModelBindings,
    executor: Executor,
    epoch: int,
    nbatch: int,
    loss: float | None,
    bad_grads: Sequence[str] = (),
) -> TrainingDivergedError:
    """The error for a non-finite loss or, with ``bad_grads``, non-finite gradients; it
    says whether the batch's inputs were finite, which tells bad data from divergence."""
    inputs = bindings.data_names + bindings.label_names
    bad = sum(
        int(np.count_nonzero(~np.isfinite(asnumpy(executor.arg_dict[name])))) for name in inputs
    )
    what = f"the loss is {loss}"
    if bad_grads:
        what = f"the gradient of {', '.join(bad_grads)} is not finite (the loss is {loss})"
    cause = (
        f"the batch holds {bad} non-finite input values"
        if bad
        else "the batch's inputs are finite, so the parameters diverged: lower the learning "
        "rate or clip the gradient (clip_gradient in optimizer_params)"
    )
    return TrainingDivergedError(
        f"fit: training diverged at epoch {epoch}, batch {nbatch} (both counted from 0): "
        f"{what}; training stopped before that batch's update. {cause}",
        epoch,
        nbatch,
        loss,
    )


def evaluate(
    bindings: ModelBindings,
    executor: Executor,
    eval_data,
    metric: metrics.EvalMetric,
    communicator: Communicator | None = None,
) -> tuple[list[tuple[str, float]], float | None]:
    """The metric's name-values over ``eval_data`` (from where it stands) and the mean loss
    per sample (None when no loss head has its label); padding rows left out. With a
    ``communicator`` of several ranks, over every rank's ``eval_data``."""
    heads, batch_size, (data_names, label_names), states = _pass_setup(
        bindings, executor, eval_data, metric
    )
    loss_sum, loss_samples = 0.0, 0
    for nbatch, batch in enumerate(eval_data):
        bindings.copy_batch(executor, batch, data_names, label_names)
        check_labels(heads, executor, "evaluate", f"batch {nbatch}")
        states.before_forward(eval_data)
        executor.forward(is_train=False)
        states.after_forward()
        outputs, labels = host_results(bindings, executor, heads)
        update_metric(bindings, outputs, labels, metric, batch_size, batch.pad)
        loss = batch_loss(heads, outputs, labels, batch_size, batch.pad)
        if loss is not None:
            loss_sum += loss * (batch_size - batch.pad)
            loss_samples += batch_size - batch.pad
    if communicator is not None and communicator.size > 1:
        # the ranks evaluate apart: the first time, one may still be compiling its kernels
        what = "the sums of the validation loss and metric"
        limit = first_wait_seconds(communicator)
        loss_sum, loss_samples = sum_values(communicator, [loss_sum, loss_samples], what, limit)
        sum_metric(communicator, metric, what, limit)
    return metric.get_name_value(), (loss_sum / loss_samples if loss_samples else None)


def predict_outputs(bindings: ModelBindings, executor: Executor, data_iter) -> list[np.ndarray]:
    """Every output for every sample of ``data_iter`` (from where it stands), concatenated
    over the batches with the padding rows left out."""
    rows_per_batch = batch_size_of(data_iter)
    data_names, _ = bindings.input_names(data_iter)
    parts: list[list[np.ndarray]] = [[] for _ in executor.outputs]
    states = CarriedStates(executor, bindings.state_names)
    for batch in data_iter:
        bindings.copy_batch(executor, batch, data_names, [])
        states.before_forward(data_iter)
        executor.forward(is_train=False)
        states.after_forward()
        for collected, output in zip(parts, executor.outputs):
            rows = valid_rows(output.shape[0], rows_per_batch, batch.pad)
            collected.append(np.array(asnumpy(output)[slice(rows)]))
    if not parts[0]:
        raise ValueError("predict: the iterator gave no batch (reset it, or pass reset=True)")
    return [np.concatenate(collected) for collected in parts]


def check_labels(heads: Sequence[LossHead], executor: Executor, where: str, batch: str) -> None:
    """Raise ValueError, before the forward pass, when a head's bound label holds a value
    the head cannot take, naming the head, its label, the value and its element in
    ``batch`` (the executor's kernel would stop on it too, knowing less to say)."""
    for head in heads:
        if head.definition.bad_label is None or head.label not in executor.arg_dict:
            continue
        check_label(
            head,
            asnumpy(executor.arg_dict[head.label]),
            executor.outputs[head.output].shape,
            where,
            lambda index: f"element {_spelled_index(index)} of {batch}",
        )


def _spelled_index(index: tuple[int, ...]) -> str:
    return str(index[0]) if len(index) == 1 else str(index)


DEFAULT_PREDICT_BATCH = 128


def prediction_iter(data, batch_size: int | None, data_name: str):
    """``Model.predict``'s iterator: ``data`` itself when it is one, else an ``NDArrayIter``
    over the arrays in order, ``data_name`` naming the first, in batches of ``batch_size``
    (default ``min(128, number of samples)``)."""
    if hasattr(data, "provide_data"):
        if batch_size is not None:
            raise ValueError("predict: batch_size is for arrays; an iterator has its own")
        return data
    if isinstance(data, Mapping):
        first = next(iter(data.values()), None)
    elif isinstance(data, (list, tuple)):
        first = data[0] if data else None
    else:
        first = data
    count = len(np.asarray(first)) if first is not None else 0
    size = batch_size or max(1, min(DEFAULT_PREDICT_BATCH, count))
    return NDArrayIter(data, batch_size=size, data_name=data_name)


def host_results(
    bindings: ModelBindings, executor: Executor, heads: Sequence[LossHead]
) -> tuple[list, dict]:
    """The outputs of the batch the executor last ran and its labels (the model's and the
    heads'), as NumPy arrays: the bound arrays themselves on the CPU, copies from the device
    on a GPU."""
    outputs = [asnumpy(output) for output in executor.outputs]
    names = [*bindings.label_names, *(head.label for head in heads if head.label is not None)]
    labels = {name: asnumpy(executor.arg_dict[name]) for name in names if name in executor.arg_dict}
    return outputs, labels


def update_metric(
    bindings: ModelBindings,
    outputs: Sequence[np.ndarray],
    labels: Mapping[str, np.ndarray],
    metric: metrics.EvalMetric,
    batch_size: int,
    pad: int,
) -> None:
    """Add one batch's ``outputs`` (``host_results``) to ``metric``: every output but the
    state outputs, against the labels in order."""
    skipped = state_output_positions(bindings.symbol, bindings.state_names)
    preds = [output for index, output in enumerate(outputs) if index not in skipped]
    label_list = [labels[name] for name in bindings.label_names]
    rows = valid_rows(preds[0].shape[0], batch_size, pad) if preds[0].ndim else None
    metric.update(label_list, preds, rows)


def as_callbacks(callbacks) -> list[Callable]:
    """A callback or a list of them (MXNet accepts both) as a list.

    >>> as_callbacks(None), len(as_callbacks(print)), len(as_callbacks([print, print]))
    ([], 1, 2)
    """
    if callbacks is None:
        return []
    return list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
