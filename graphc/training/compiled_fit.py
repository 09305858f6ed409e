"""``Model.fit`` without Python in the loop: epochs over in-memory data trained by the
compiled training loop (``graphc.training.compiled_loop``), a chunk of batches per call.

When the training data are in memory (an ``NDArrayIter``, or a time-major ``BPTTIter``
whose windows carry the LSTM state through ``state_names``), no ``batch_end_callback`` asks
for Python after every batch, and the model has one loss head the compiled loop has a
statistic for with one metric it computes for that head (``SoftmaxOutput`` with accuracy,
top-k accuracy, cross-entropy or perplexity; ``LinearRegressionOutput`` and
``LogisticRegressionOutput`` with MSE, RMSE or MAE: ``CompiledTraining.unsupported``),
``fit`` hands the compiled loop the data arrays, the epoch's sample order (shuffled
or not, exactly as iterating would give it, padding included) or windows, and the number
of batches. Chunks are sized so that the progress bar still refreshes about every 0.1 s; with
no validation data and no ``epoch_end_callback`` a chunk may span epochs, so LinReg's
10,000 one-batch epochs take a few calls, not 10,000. Everything else trains step by step
(``graphc.training.fit_loop``), with the same numbers, and ``fit`` says so once with a
:class:`StepByStepWarning`. The labels a head cannot take (``heads.check_label``) are
found before the loop runs, naming the sample.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from graphc.data.io import BPTTIter, NDArrayIter
from graphc.runtime.communicator import Communicator
from graphc.training.binding import num_batches_of
from graphc.training.checkpoint import iterator_state
from graphc.training.compiled_loop import CompiledTraining, in_place_steps
from graphc.training.data_parallel import first_wait_seconds
from graphc.training.fit_loop import FitRun, as_callbacks, diverged
from graphc.training.heads import check_label
from graphc.training.metric import EvalMetric

CHUNK_SECONDS = 0.1
"""How long one compiled call should run: the progress bar's refresh interval."""

MAX_CHUNK_STEPS = 1 << 16

STEP_BY_STEP_COST = (
    "Python then runs every batch, about 0.1 ms of overhead per step instead of 1-2 us: "
    "LinReg's 10,000 one-batch epochs take about 1 s instead of 0.06 s"
)
"""What the step-by-step path costs, measured on the 2-core machine of BENCHMARKS.md
(``Model.fit`` of ``models.linreg`` on the standardized housing data, 10,000 epochs,
``eval_metric='acc'`` against the default: 0.95-1.1 s against 0.067 s, warm)."""


class StepByStepWarning(UserWarning):
    """``Model.fit`` trains step by step, not through the compiled loop; the message says
    why and what it costs. ``model.fit_path`` holds the reason too."""


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
        means = np.full(len(self.samples), math.nan)
        np.divide(self.loss_sums, self.samples, out=means, where=self.samples > 0)
        return means.tolist()

    def metric_values(self, metric: EvalMetric) -> list[float]:
        """Each epoch's value of ``metric`` (``EvalMetric.values_from`` of its sums)."""
        return metric.values_from(self.metric_sums, self.samples)


def compiled_trainer(
    model, executor, train_data, heads, metric, batch_end_callback, states, kvstore=None
):
    """A :class:`CompiledTraining` for this fit, or None with the reason in
    ``model.fit_path`` and one :class:`StepByStepWarning` saying it."""
    reason = _reason_for_steps(model, train_data, batch_end_callback)
    if reason is None:
        reason = CompiledTraining.unsupported(
            executor, heads, metric, executor.grad_req, len(model.state_names)
        )
    if reason is not None:
        model.fit_path = f"step by step: {reason}"
        warnings.warn(
            f"fit trains step by step, not in the compiled loop, because {reason}. "
            f"{STEP_BY_STEP_COST}",
            StepByStepWarning,
            stacklevel=3,
        )
        return None
    data_names, label_names = model.bindings.input_names(train_data)
    shapes = [tuple(shape) for _, shape in train_data.provide_data + train_data.provide_label]
    outputs = model.symbol.list_outputs()
    carried = [(name, outputs.index(output)) for name, output in model.state_names.items()]
    model.fit_path = "compiled"
    return CompiledTraining(
        executor,
        model._optimizer,
        states,
        heads[0],
        metric,
        data_names + label_names,
        batch_shapes=shapes,
        carried=carried,
        communicator=None if kvstore is None else kvstore.communicator,
        bucket_bytes=None if kvstore is None else kvstore.bucket_bytes,
    )


def _reason_for_steps(model, train_data, batch_end_callback) -> str | None:
    """Why the data or the callbacks ask for the step-by-step path, or None."""
    windows = isinstance(train_data, BPTTIter)
    if not isinstance(train_data, NDArrayIter) and not windows:
        return "the training data are not in memory (NDArrayIter or BPTTIter)"
    if windows and train_data.layout != "TN":
        return "a BPTTIter with layout 'NT' (the compiled loop cuts time-major windows)"
    if batch_end_callback:
        return "a batch_end_callback asks for Python after every batch"
    if model.state_names and not windows:
        return "recurrent state is carried only between the windows of a BPTTIter"
    return None


def fit_compiled(model, trainer: CompiledTraining, run: FitRun) -> None:
    """The epochs of ``model.fit`` through the compiled loop, recorded in the model's
    history as the step-by-step path records them."""
    runner = CompiledEpochs(
        trainer, run.train_data, model.bindings, run.train_metric, run.communicator
    )
    if run.communicator.size > 1:
        # Compiling the loop can take one rank much longer than another (a cold cache):
        # that wait belongs before the first step, not under the stall watchdog of a chunk.
        runner.prepare()
        run.communicator.barrier(
            "the start of training (each rank compiles its loop first)",
            first_wait_seconds(run.communicator),
        )
    callbacks = as_callbacks(run.epoch_end_callback)
    spans = run.eval_data is None and not callbacks
    batches = num_batches_of(run.train_data) or 0
    epoch = run.begin_epoch
    while epoch < run.num_epoch:
        count = min(epochs_per_call(runner, batches, spans), run.num_epoch - epoch)
        if count == 1:
            run.display.start_epoch(epoch, batches)
        results = runner.run(take_epochs(run.train_data, count), epoch, run.display)
        model._data_state = iterator_state(run.train_data)
        # Epochs that print nothing and call nothing are recorded in bulk, between the
        # ones that do: 10,000 one-batch epochs must keep Python's share small.
        if spans and run.display.bar is None:
            loud = run.display.logged(epoch, epoch + len(results))
            if not model.history.get("epoch"):
                loud = sorted({epoch, *loud})
        else:
            loud = range(epoch, epoch + len(results))
        done = 0
        for loud_epoch in loud:
            offset = loud_epoch - epoch
            _extend_history(model, results[done:offset], epoch + done, run.train_metric)
            done = offset + 1
            result = results[offset]
            loss = result.loss_sum / result.samples if result.samples else None
            set_metric(run.train_metric, result.metric_sum, result.samples)
            model._end_epoch(epoch + offset, result.seconds, loss, result.samples, run)
        _extend_history(model, results[done:], epoch + done, run.train_metric)
        epoch += count


def _extend_history(model, results: EpochResults, first_epoch: int, metric: EvalMetric) -> None:
    """Append epochs that print nothing (``first_epoch`` on) to the history, at once."""
    if not len(results):
        return
    history = model.history
    if set(history) != {"epoch", "time", "train_loss", f"train_{metric.name}"}:
        for offset in range(len(results)):
            result = results[offset]
            loss = result.loss_sum / result.samples if result.samples else None
            value = metric.value_from(result.metric_sum, result.samples)
            model._record(
                first_epoch + offset, result.seconds, [(metric.name, value)], loss, [], None, None
            )
        return
    history["epoch"].extend(range(first_epoch + 1, first_epoch + 1 + len(results)))
    history["time"].extend(results.seconds.tolist())
    history["train_loss"].extend(results.losses())
    history[f"train_{metric.name}"].extend(results.metric_values(metric))


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
        self,
        trainer: CompiledTraining,
        train_data: NDArrayIter,
        bindings,
        metric: EvalMetric,
        communicator: Communicator,
    ) -> None:
        self.trainer = trainer
        self.metric = metric
        self.windows = isinstance(train_data, BPTTIter)
        self.sources = [  # in the bound dtype once, so the loop can read batches in place
            # C-contiguous, writable and aligned: the loop's views of a batch then have the
            # Numba type of the bound input they stand in for (codegen_cpu.sequence)
            np.require(source, dtype=target.dtype, requirements=("C", "A", "W"))
            for source, target in zip(sources_of(train_data), trainer.targets, strict=True)
        ]
        self.batch = trainer.targets[0].shape[0]  # rows cut per input per step
        self.bindings = bindings
        self.communicator = communicator
        self.seconds_per_step = None

    def prepare(self) -> None:
        """Compile the loop (and find its kernels) without training a step."""
        empty = np.zeros(0, dtype=np.int64)
        self.trainer.run(self.sources, empty, empty, np.zeros(0, np.bool_), np.zeros(0, np.bool_))

    def chunk_steps(self) -> int:
        if self.seconds_per_step is None:
            return 1
        return int(max(1, min(MAX_CHUNK_STEPS, CHUNK_SECONDS / self.seconds_per_step)))

    def run(self, plans, first_epoch: int, display) -> EpochResults:
        """Train the epochs of ``plans`` (from :func:`take_epochs`), a chunk at a time; a
        chunk spans epochs when there are several. Raises TrainingDivergedError, and
        ValueError naming the sample when a label is one the head cannot take."""
        repeated = all(plan is plans[0] for plan in plans)  # one plan, repeated
        order, starts, rows, fresh, in_place, lengths = self._steps(plans, repeated)
        epoch_index = np.repeat(np.arange(len(plans)), lengths)
        epoch_of = epoch_index + first_epoch
        first_steps = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        batch_in_epoch = np.arange(len(rows)) - np.repeat(first_steps, lengths)
        self._check_labels(order, epoch_of, batch_in_epoch)  # a repeated plan: its one order
        steps = len(rows)
        losses = np.zeros(steps)
        metrics = np.zeros(steps)
        seconds = np.zeros(steps)
        done = 0
        while done < steps:
            count = min(self.chunk_steps(), steps - done)
            start = time.perf_counter()
            with self.communicator.watch(
                f"the gradient allreduce of training steps {done} to {done + count - 1} of "
                f"epoch {int(epoch_of[done])}"
            ):
                result = self.trainer.run(
                    self.sources,
                    order,
                    rows[done : done + count],
                    fresh[done : done + count],
                    in_place[done : done + count],
                    starts[done : done + count],
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
                samples = int(rows[:done].sum()) * self.trainer.workers
                mean = float(losses[:done].sum() / samples) if samples else None
                value = self.metric.value_from(float(metrics[:done].sum()), samples)
                display.batch(done, samples, [(self.metric.name, value)], mean)
        count = len(plans)
        loss_sums = np.bincount(epoch_index, weights=losses, minlength=count)
        metric_sums = np.bincount(epoch_index, weights=metrics, minlength=count)
        # every rank's rows: the loop's loss and metric sums are over the ranks (and every
        # rank's part has the same batches, which the start of fit checks)
        samples = np.bincount(epoch_index, weights=rows, minlength=count) * self.trainer.workers
        times = np.bincount(epoch_index, weights=seconds, minlength=count)
        return EpochResults(loss_sums, metric_sums, samples.astype(np.int64), times)

    def _steps(self, plans, repeated: bool) -> tuple[np.ndarray, ...]:
        """The rows to cut and where each step's rows start in them, then real rows per
        step, fresh states, in-place steps and steps per epoch, each concatenated over the
        epochs. A plan repeated is cut from one copy of its order: LinReg's 10,000 epochs
        would otherwise copy its 506 rows 10,000 times (40 MB, 10 ms of a 0.08 s fit)."""
        available = min(len(source) for source in self.sources)
        if repeated:
            order, rows, fresh = plans[0]
            epochs = len(plans)
            starts = np.tile(np.arange(len(rows), dtype=np.int64) * self.batch, epochs)
            in_place = np.tile(in_place_steps(order, self.batch, available), epochs)
            lengths = np.full(epochs, len(rows), dtype=np.int64)
            return order, starts, np.tile(rows, epochs), np.tile(fresh, epochs), in_place, lengths
        order = np.concatenate([plan[0] for plan in plans])
        rows = np.concatenate([plan[1] for plan in plans])
        starts = np.arange(len(rows), dtype=np.int64) * self.batch
        fresh = np.concatenate([plan[2] for plan in plans])
        in_place = in_place_steps(order, self.batch, available)
        lengths = np.array([len(plan[1]) for plan in plans], dtype=np.int64)
        return order, starts, rows, fresh, in_place, lengths

    def _check_labels(self, order: np.ndarray, epoch_of, batch_in_epoch) -> None:
        """The head's labels of the rows ``order`` cuts (the first epochs' when every epoch
        repeats one plan) must be values it takes: one NumPy pass before the loop runs, so
        that a bad label is named with its epoch, batch and sample (the kernel's own check
        in the loop only knows its position in the batch)."""
        trainer = self.trainer
        head = trainer.head
        if head.definition.bad_label is None or trainer.label_source < 0:
            return
        labels = self.sources[trainer.label_source][order]
        output_shape = trainer.executor.outputs[head.output].shape

        def located(index: tuple[int, ...]) -> str:
            step = index[0] // self.batch
            when = f"epoch {int(epoch_of[step])}, batch {int(batch_in_epoch[step])}"
            if self.windows:  # the label source is the streams, time-major, a token on
                return f"token {int(order[index[0]]) + 1} of stream {index[1]} ({when})"
            return f"sample {int(order[index[0]])} of the training data ({when})"

        check_label(head, labels, output_shape, "fit", located)

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


def set_metric(metric, metric_sum: float, samples: int) -> None:
    """Give ``metric`` the sums the compiled loop computed (``sum_metric``, ``num_inst``)."""
    metric.reset()
    metric.sum_metric = metric_sum
    metric.num_inst = samples


__all__ = [
    "CompiledEpochs",
    "EpochResults",
    "StepByStepWarning",
    "compiled_trainer",
    "epochs_per_call",
    "fit_compiled",
    "take_epochs",
]
