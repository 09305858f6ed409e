"""``Model.fit`` without Python in the loop: epochs over in-memory data trained by the
compiled training loop (``graphc.training.compiled_loop``), a chunk of batches per call.

When the training data are in memory (an ``NDArrayIter``, or a time-major ``BPTTIter``
whose windows carry the LSTM state through ``state_names``), no ``batch_end_callback`` asks
for Python after every batch, and the model has one loss head the compiled loop knows
(``SoftmaxOutput`` with accuracy or perplexity, ``LinearRegressionOutput`` with MSE, RMSE or
MAE), ``fit`` hands the compiled loop the data arrays, the epoch's sample order (shuffled
or not, exactly as iterating would give it, padding included) or windows, and the number
of batches. Chunks are sized so that the progress bar still refreshes about every 0.1 s; with
no validation data and no ``epoch_end_callback`` a chunk may span epochs, so LinReg's
10,000 one-batch epochs take a few calls, not 10,000. Everything else trains step by step
(``graphc.training.fit_loop``), with the same numbers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from graphc.data.io import BPTTIter, NDArrayIter
from graphc.training.compiled_loop import METRICS, CompiledTraining, in_place_steps
from graphc.training.fit_loop import diverged

CHUNK_SECONDS = 0.1
"""How long one compiled call should run: the progress bar's refresh interval."""

MAX_CHUNK_STEPS = 1 << 16


@dataclass
class EpochResult:
    """One epoch trained by the compiled loop: loss and metric sums over its samples."""

    loss_sum: float
    metric_sum: float
    samples: int
    seconds: float


@dataclass
class EpochResults:
    """The epochs of one compiled call, as arrays (one entry per epoch), so that 10,000
    one-batch epochs cost Python a few array operations, not an object each. Indexing
    gives an :class:`EpochResult`, slicing another ``EpochResults``."""

    loss_sums: np.ndarray
    metric_sums: np.ndarray
    samples: np.ndarray
    seconds: np.ndarray

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return EpochResults(
                self.loss_sums[key], self.metric_sums[key], self.samples[key], self.seconds[key]
            )
        return EpochResult(
            float(self.loss_sums[key]),
            float(self.metric_sums[key]),
            int(self.samples[key]),
            float(self.seconds[key]),
        )

    def losses(self) -> list[float]:
        """Each epoch's mean loss (NaN for an epoch without samples)."""
        return [
            loss / samples if samples else math.nan
            for loss, samples in zip(self.loss_sums.tolist(), self.samples.tolist())
        ]

    def metric_values(self, name: str) -> list[float]:
        """Each epoch's metric, as :func:`metric_value` gives it."""
        return [
            metric_value(name, metric, samples)
            for metric, samples in zip(self.metric_sums.tolist(), self.samples.tolist())
        ]


def compiled_trainer(model, executor, train_data, heads, metric, batch_end_callback, states):
    """A :class:`CompiledTraining` for this fit, or None with the reason in
    ``model.fit_path``."""
    reason = None
    windows = isinstance(train_data, BPTTIter)
    if not isinstance(train_data, NDArrayIter) and not windows:
        reason = "the training data are not in memory (NDArrayIter or BPTTIter)"
    elif windows and train_data.layout != "TN":
        reason = "a BPTTIter with layout 'NT' (the compiled loop cuts time-major windows)"
    elif batch_end_callback:
        reason = "a batch_end_callback asks for Python after every batch"
    elif model.state_names and not windows:
        reason = "recurrent state is carried only between the windows of a BPTTIter"
    names = [name for name, _ in metric.get_name_value()]
    if reason is None:
        reason = CompiledTraining.unsupported(
            executor, heads, names, executor.grad_req, len(model.state_names)
        )
    if reason is not None:
        model.fit_path = f"step by step: {reason}"
        return None
    described = train_data.provide_data + train_data.provide_label
    outputs = model.symbol.list_outputs()
    carried = [(name, outputs.index(output)) for name, output in model.state_names.items()]
    model.fit_path = "compiled"
    return CompiledTraining(
        executor,
        model._optimizer,
        states,
        heads[0],
        names[0],
        [name for name, _ in described],
        batch_shapes=[tuple(shape) for _, shape in described],
        carried=carried,
    )


def sources_of(train_data) -> list[np.ndarray]:
    """The arrays the compiled loop cuts batches from, one per input, rows first. A
    BPTTIter's streams are laid out time-major (row t holds every stream's token t), so a
    window is a run of rows, and the label source starts one token later."""
    if isinstance(train_data, BPTTIter):
        by_time = np.ascontiguousarray(train_data.streams.T, dtype=np.float32)
        return [by_time, np.ascontiguousarray(by_time[1:])]
    return [
        np.ascontiguousarray(array) for array in train_data.data_arrays + train_data.label_arrays
    ]


Plan = tuple[np.ndarray, np.ndarray, np.ndarray]
"""One epoch for the compiled loop: the rows to cut (concatenated over its steps), each
step's count of real head rows (padding left out), and where the carried state restarts."""


def take_epochs(train_data, count: int) -> list[Plan]:
    """The plans of ``count`` epochs, resetting the iterator after each as ``fit`` does.

    An unshuffled iterator without roll-over gives every epoch the same plan and the same
    state after ``reset``, so one epoch is taken and repeated."""
    if isinstance(train_data, BPTTIter):
        plan = _window_plan(train_data)
        train_data.reset()
        return [plan] * count
    if not train_data.shuffle and train_data.last_batch_handle != "roll_over":
        plan = _sample_plan(train_data)
        train_data.reset()
        return [plan] * count
    plans = []
    for _ in range(count):
        plans.append(_sample_plan(train_data))
        train_data.reset()
    return plans


def _sample_plan(train_data: NDArrayIter) -> Plan:
    order, pads = train_data.take_epoch()
    rows = train_data.batch_size - pads
    return order, rows, np.zeros(len(pads), dtype=np.bool_)


def _window_plan(train_data: BPTTIter) -> Plan:
    """Every remaining window of the epoch; the state restarts at the epoch's first."""
    first = train_data._next_batch
    batches = np.arange(first, train_data.num_batches)
    length = train_data.seq_len
    order = (batches[:, None] * length + np.arange(length)[None, :]).reshape(-1)
    rows = np.full(len(batches), length * train_data.batch_size, dtype=np.int64)
    fresh = batches == 0
    train_data._next_batch = train_data.num_batches
    return order.astype(np.int64), rows, fresh


class CompiledEpochs:
    """Runs epochs through the compiled loop, timing steps to size the chunks."""

    def __init__(
        self, trainer: CompiledTraining, train_data: NDArrayIter, bindings, metric_name: str
    ) -> None:
        self.trainer = trainer
        self.metric_name = metric_name
        self.sources = [  # in the bound dtype once, so the loop can read batches in place
            np.ascontiguousarray(source, dtype=target.dtype)
            for source, target in zip(sources_of(train_data), trainer.targets, strict=True)
        ]
        self.batch = trainer.targets[0].shape[0]  # rows cut per input per step
        self.bindings = bindings
        self.seconds_per_step = None

    def chunk_steps(self) -> int:
        if self.seconds_per_step is None:
            return 1
        return int(max(1, min(MAX_CHUNK_STEPS, CHUNK_SECONDS / self.seconds_per_step)))

    def run(self, plans, first_epoch: int, display) -> EpochResults:
        """Train the epochs of ``plans`` (from :func:`take_epochs`), a chunk at a time; a
        chunk spans epochs when there are several. Raises TrainingDivergedError."""
        available = min(len(source) for source in self.sources)
        if all(plan is plans[0] for plan in plans):  # one plan, repeated
            order = np.tile(plans[0][0], len(plans))
            rows = np.tile(plans[0][1], len(plans))
            fresh = np.tile(plans[0][2], len(plans))
            in_place = np.tile(in_place_steps(plans[0][0], self.batch, available), len(plans))
            lengths = np.full(len(plans), len(plans[0][1]), dtype=np.int64)
        else:
            order = np.concatenate([plan[0] for plan in plans])
            rows = np.concatenate([plan[1] for plan in plans])
            fresh = np.concatenate([plan[2] for plan in plans])
            in_place = in_place_steps(order, self.batch, available)
            lengths = np.array([len(plan[1]) for plan in plans], dtype=np.int64)
        epoch_index = np.repeat(np.arange(len(plans)), lengths)
        epoch_of = epoch_index + first_epoch
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        batch_in_epoch = np.arange(len(rows)) - np.repeat(starts, lengths)
        steps = len(rows)
        losses = np.zeros(steps)
        metrics = np.zeros(steps)
        seconds = np.zeros(steps)
        done = 0
        while done < steps:
            count = min(self.chunk_steps(), steps - done)
            start = time.perf_counter()
            result = self.trainer.run(
                self.sources,
                order[done * self.batch : (done + count) * self.batch],
                rows[done : done + count],
                fresh[done : done + count],
                in_place[done : done + count],
            )
            elapsed = time.perf_counter() - start
            losses[done : done + count] = result.losses
            metrics[done : done + count] = result.metrics
            if result.completed < count:
                stop = done + result.completed
                raise self._diverged(int(epoch_of[stop]), int(batch_in_epoch[stop]), losses[stop])
            seconds[done : done + count] = elapsed / count
            self.seconds_per_step = elapsed / count
            done += count
            if len(plans) == 1:
                samples = int(rows[:done].sum())
                mean = float(losses[:done].sum() / samples) if samples else None
                value = metric_value(self.metric_name, float(metrics[:done].sum()), samples)
                display.batch(done, samples, [(self.metric_name, value)], mean)
        count = len(plans)
        loss_sums = np.bincount(epoch_index, weights=losses, minlength=count)
        metric_sums = np.bincount(epoch_index, weights=metrics, minlength=count)
        samples = np.bincount(epoch_index, weights=rows, minlength=count)
        times = np.bincount(epoch_index, weights=seconds, minlength=count)
        return EpochResults(loss_sums, metric_sums, samples.astype(np.int64), times)

    def _diverged(self, epoch: int, nbatch: int, loss: float):
        executor = self.trainer.executor
        bad = [
            name
            for name in self.bindings.param_names
            if not np.isfinite(executor.gradient_buffer(name)).all()
        ]
        return diverged(
            self.bindings, executor, epoch, nbatch, loss, bad if np.isfinite(loss) else ()
        )


def epochs_per_call(trainer_epochs: CompiledEpochs, batches_per_epoch: int, spans: bool) -> int:
    """How many epochs the next call may take: one, or as many as fit in a chunk."""
    if not spans or batches_per_epoch == 0:
        return 1
    return max(1, trainer_epochs.chunk_steps() // batches_per_epoch)


def metric_value(name: str, metric_sum: float, samples: int) -> float:
    """The metric's value from its sums, as ``EvalMetric.get`` computes it."""
    if not samples:
        return float("nan")
    value = metric_sum / samples
    if name == "rmse":
        return float(np.sqrt(value))
    if name == "perplexity":
        return float(np.exp(value))
    return float(value)


def set_metric(metric, metric_sum: float, samples: int) -> None:
    """Give ``metric`` the sums the compiled loop computed (``sum_metric``, ``num_inst``)."""
    metric.reset()
    metric.sum_metric = metric_sum
    metric.num_inst = samples


__all__ = [
    "METRICS",
    "CompiledEpochs",
    "EpochResults",
    "compiled_trainer",
    "epochs_per_call",
    "take_epochs",
]
