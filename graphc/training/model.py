"""``Model``: train, evaluate, predict with and checkpoint a symbol, as MXNet's ``Module.fit``.

``fit`` binds one executor for the training iterator's batch shape, with a gradient for
every parameter and none for data and labels, and then runs for each batch: copy the batch
into the bound arrays, ``forward(is_train=True)``, check the loss is finite, update the
metric, ``backward()``, check the gradients are finite, ``optimizer.update``
(``graphc.training.fit_loop``). The batch is copied into arrays bound once, not allocated. Evaluation and prediction bind forward-only executors for their own batch shapes that
share the parameter arrays (or reuse the training executor when the shapes are the same).

The default ``rescale_grad``, the training loss, the default metric and the label names
follow the loss heads: see ``graphc.training.heads``. Checkpoints: see ``graphc.training.checkpoint``; what ``fit`` shows:
see ``graphc.training.progress``. A recurrent state carried across batches (truncated BPTT): see
``state_names`` and ``graphc.training.states``.

>>> import numpy as np, graphc as gc
>>> x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
>>> y = (x @ np.array([1.0, -2.0, 0.5], np.float32)).reshape(64, 1)
>>> model = Model(gc.models.linreg())
>>> model.label_names
('lro_label',)
>>> history = model.fit(gc.io.NDArrayIter(x, y, batch_size=16),
...                     optimizer_params={"learning_rate": 0.1}, num_epoch=20, verbose=False)
>>> bool(history["train_mse"][-1] < 1e-3), model.fit_path, model.predict(x[:5]).shape
(True, 'compiled', (5, 1))
"""

from __future__ import annotations

import copy
import math
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from graphc.data.io import BPTTIter
from graphc.interop.mxnet import load_checkpoint as mxnet_checkpoint
from graphc.interop.mxnet import params_path as mxnet_params_path
from graphc.ir.errors import ImportFormatError
from graphc.ir.symbol import Symbol
from graphc.runtime.context import Context, cpu
from graphc.training import metric as metrics
from graphc.training.binding import ModelBindings, batch_size_of, num_batches_of
from graphc.training.checkpoint import (
    CheckpointError,
    CheckpointState,
    iterator_state,
    load_checkpoint_files,
    params_path,
    restore_iterator_state,
    save_checkpoint_files,
)
from graphc.training.compiled_fit import StepByStepWarning, compiled_trainer, fit_compiled
from graphc.training.data_parallel import start_together, warn_unsharded
from graphc.training.fit_loop import (
    BatchEndParam,
    FitRun,
    TrainingDivergedError,
    as_callbacks,
    evaluate,
    predict_outputs,
    prediction_iter,
    train_epoch,
)
from graphc.training.heads import default_metric, label_names_of, loss_heads
from graphc.training.initializer import Xavier, initialize
from graphc.training.kvstore import DistributedError, as_kvstore
from graphc.training.optimizer import Optimizer
from graphc.training.optimizer_state import (
    DEFAULT_OPTIMIZER_PARAMS,
    carry_over,
    make_optimizer,
    placed_states,
    snapshot,
)
from graphc.training.progress import TrainingDisplay

__all__ = ["BatchEndParam", "Model", "StepByStepWarning", "TrainingDivergedError"]


class Model:
    """A symbol with its parameters, trained by :meth:`fit`.

    Parameters
    ----------
    symbol : Symbol
        Every output must be a loss head to ``fit`` (``SoftmaxOutput``, ...), or an output
        named in ``state_names``.
    ctx : Context
        ``gc.cpu()``.
    data_names, label_names : sequence of str
        Arguments fed from the iterators' ``provide_data`` and ``provide_label``; every
        other argument is a parameter. Without ``label_names`` they are the variables
        that feed the loss heads' labels (``heads.label_names_of``): a
        ``LinearRegressionOutput`` named ``lro`` takes ``lro_label`` (``models.linreg``), a
        ``SoftmaxOutput`` named ``softmax`` ``softmax_label``. An iterator with one label
        feeds a model with one label whatever its name, so ``NDArrayIter``'s default
        ``softmax_label`` feeds ``lro_label``; otherwise the names must match.
    opt_level : int, optional
        The executors' optimization level (see ``simple_bind``).
    state_names : mapping of str to str, optional
        Recurrent state carried across batches: each key is an input of ``symbol`` and its
        value the output (named as in ``symbol.list_outputs()``) whose value after a batch
        becomes that input for the next batch, when the iterator's ``is_continuation`` says
        the batch continues the last one; otherwise, and at the start of every epoch,
        ``score`` and ``predict``, the input is zero. An iterator without
        ``is_continuation`` (``NDArrayIter``) starts every batch from zero. State inputs are
        not parameters (no initializer, no gradient, not in ``param_names``, not in
        checkpoints: they start from zero at every epoch anyway) and state outputs send no
        gradient back. For ``models.charlm(stateful=True)``:
        ``models.CHARLM_STATE_NAMES``. See ``graphc.training.states``.

    Attributes
    ----------
    history : dict of lists
        One entry per epoch trained: ``epoch`` (epochs completed, the number a checkpoint
        of it carries), ``train_loss``, ``train_<metric>``, ``val_loss`` and ``val_<metric>``
        with ``eval_data``, and ``time`` (training seconds). NaN where a value is missing.

    Notes
    -----
    Recurrent state: the default ``models.charlm`` has no state inputs, so every
    ``BPTTIter`` window starts from a zero LSTM state. ``models.charlm(stateful=True)``
    with ``state_names=models.CHARLM_STATE_NAMES`` carries the final state of each row into
    the next window (truncated BPTT): gradients flow through ``seq_len`` steps, the state
    through the whole epoch.

    >>> import graphc as gc
    >>> Model(gc.models.mlp()).param_names
    ['fc1_weight', 'fc1_bias', 'fc2_weight', 'fc2_bias']
    >>> Model(gc.models.mlp()).label_names, Model(gc.models.linreg()).label_names
    (('softmax_label',), ('lro_label',))
    """

    def __init__(
        self,
        symbol: Symbol,
        ctx: Context | None = None,
        data_names: Sequence[str] = ("data",),
        label_names: Sequence[str] | None = None,
        opt_level: int | None = None,
        state_names: Mapping[str, str] | None = None,
    ) -> None:
        self.symbol = symbol
        self.ctx = ctx or cpu()
        self.data_names = tuple(data_names)
        if label_names is None:
            label_names = label_names_of(loss_heads(symbol))
        self.label_names = tuple(label_names)
        self.opt_level = opt_level
        self.bindings = ModelBindings(
            symbol, self.ctx, self.data_names, self.label_names, opt_level, state_names
        )
        self.history: dict[str, list] = {"epoch": [], "time": [], "train_loss": []}
        self._initialized = False
        self._optimizer: Optimizer | None = None
        self.fit_path: str | None = None  # "compiled" or "step by step: <why>", after fit
        self._trainer = None  # the compiled training loop of the last fit, if it ran one
        self._opt_states: dict[str, tuple] = {}
        self._data_state: dict | None = None
        # Set by Model.load, used by the next fit.
        self._loaded_optimizer: tuple[dict, dict] | None = None
        self._loaded_data_state: tuple[int, dict] | None = None
        self._loaded_train_step: int | None = None
        self._kvstore = None  # the KVStore of the last fit: save_checkpoint writes on rank 0

    # -- parameters --------------------------------------------------------------------------

    @property
    def param_names(self) -> list[str]:
        """The arguments that are neither data, labels nor state inputs."""
        return self.bindings.param_names

    @property
    def state_names(self) -> dict[str, str]:
        """State input to the output that feeds it (empty for a model without state)."""
        return self.bindings.state_names

    @property
    def arg_params(self) -> dict[str, np.ndarray] | None:
        """The live parameter arrays every executor reads (None before the first bind)."""
        return self.bindings.arg_params

    @property
    def aux_params(self) -> dict[str, np.ndarray]:
        return self.bindings.aux_params

    @property
    def optimizer(self) -> Optimizer | None:
        """The optimizer of the last ``fit`` (its ``rescale_grad``, ``num_update``, ...)."""
        return self._optimizer

    def stats(self) -> dict[str, int]:
        """The training executor's ``stats()`` (nodes, kernels, planned memory) with the
        optimizer's update: ``update_kernels`` (one fused kernel per parameter) counted in
        ``kernels_per_step``. Needs a ``fit`` first."""
        executor = self.bindings.train_executor
        if executor is None:
            raise ValueError("stats: the model has not been bound for training; call fit first")
        stats = dict(executor.stats())
        stats["update_kernels"] = len(self.param_names)
        stats["kernels_per_step"] += stats["update_kernels"]
        return stats

    def get_params(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Copies of the parameters and auxiliary states, as MXNet's ``get_params``."""
        self._require_params("get_params")
        arg_values, aux_values = self.bindings.host_params()
        return (
            {name: np.array(array) for name, array in arg_values.items()},
            {name: np.array(array) for name, array in aux_values.items()},
        )

    def set_params(
        self, arg_params: Mapping[str, np.ndarray], aux_params: Mapping | None = None
    ) -> None:
        """Set every parameter (and auxiliary state); ``fit`` then does not initialize."""
        self.bindings.set(arg_params, aux_params)
        self._initialized = True

    def _require_params(self, what: str) -> None:
        if not self._initialized:
            raise ValueError(
                f"{what}: the model has no parameters yet; fit it, load a checkpoint "
                "(Model.load) or call set_params"
            )

    # -- training ----------------------------------------------------------------------------

    def fit(
        self,
        train_data,
        eval_data=None,
        eval_metric: Any = None,
        optimizer: str | Optimizer = "sgd",
        optimizer_params: Mapping | Sequence = DEFAULT_OPTIMIZER_PARAMS,
        initializer=None,
        num_epoch: int = 1,
        begin_epoch: int = 0,
        batch_end_callback: Callable | Sequence[Callable] | None = None,
        epoch_end_callback: Callable | Sequence[Callable] | None = None,
        seed: int = 0,
        quiet: bool | None = None,
        log_every: int | None = None,
        verbose: bool = True,
        kvstore: Any = "local",
    ) -> dict[str, list]:
        """Train for epochs ``begin_epoch`` to ``num_epoch - 1`` and return :attr:`history`.

        Parameters
        ----------
        train_data, eval_data : data iterator
            ``NDArrayIter`` or ``BPTTIter`` (anything with ``provide_data``,
            ``provide_label``, iteration and ``reset``). Training starts from the
            iterator's current position and resets it after every epoch.
        eval_metric : str, EvalMetric or list, optional
            As ``graphc.training.metric.create`` (the validation metric is a copy). Default:
            the loss head's (``heads.default_metric``): accuracy for ``SoftmaxOutput``,
            perplexity on a ``BPTTIter``, mse for the regression heads.
        optimizer, optimizer_params
            As ``graphc.training.optimizer.create``; an ``Optimizer`` is used as it is. The
            default ``rescale_grad`` follows the heads (``graphc.training.heads``), so the
            learning rate means what it means in MXNet.
        initializer : Initializer or str, optional
            Default ``Xavier()``, drawn with ``seed``; unused when the parameters are set.
        num_epoch, begin_epoch : int
            ``begin_epoch=epoch`` after ``Model.load(prefix, epoch)`` continues the
            optimizer state, update count, Dropout's step and shuffling order exactly.
        batch_end_callback : callable or list, optional
            Called with a :class:`BatchEndParam` after every batch.
        epoch_end_callback : callable or list, optional
            ``callback(epoch, symbol, arg_params, aux_params)`` after every epoch, with the
            live parameter arrays, as MXNet's; see :meth:`checkpoint_callback`.
        seed : int
            The initializer's seed (shuffling is the iterator's own ``seed``).
        quiet, log_every, verbose
            What is shown (``graphc.training.progress.TrainingDisplay``); ``log_every``
            defaults to a twentieth of the epochs, first and last always.
        kvstore : KVStore or str
            ``"local"`` (one process) or ``"dist_sync"`` (every MPI rank of the job trains
            together: ``graphc.training.kvstore``). With several ranks, rank 0's parameters
            are broadcast first, every step's gradients are summed over the ranks, the
            default ``rescale_grad`` is ``1 / (batch_size * num_workers)``, the history and
            the figures shown (on rank 0 only) are every rank's, and a rank that fails in
            ``fit`` ends the whole job.

        In-memory data with no ``batch_end_callback`` train in the compiled loop
        (``graphc.training.compiled_fit``) when it computes the head's loss and the metric;
        otherwise step by step, with the same numbers and one :class:`StepByStepWarning`
        saying why. ``model.fit_path`` says which path ran.

        Raises
        ------
        TrainingDivergedError
            A batch's loss or gradient is not finite (its update is not applied).
        ValueError
            A label the head cannot take, naming the head, the label, the value and where.
        """
        _check_epochs(begin_epoch, num_epoch)
        kv = self._kvstore = as_kvstore(kvstore)
        if kv.distributed and self.ctx.device_type != "cpu":
            raise ValueError(
                f"fit: kvstore {kv.type!r} sums the gradients of CPU executors; this model is "
                f"on {self.ctx} (NCCL for GPUs is not implemented)"
            )
        heads = self._training_heads()
        executor = self._bind_for_training(train_data, initializer, seed)
        self._start_optimizer(
            executor, optimizer, optimizer_params, heads, train_data, kv.num_workers
        )
        self._resume_data_order(train_data, begin_epoch)
        if eval_metric is None:
            eval_metric = default_metric(heads, stream=isinstance(train_data, BPTTIter))
        train_metric = metrics.create(eval_metric)
        if log_every is None:  # about 20 summary lines however long the run
            log_every = max(1, (num_epoch - begin_epoch) // 20)
        display = TrainingDisplay(
            num_epoch, begin_epoch, log_every, quiet, verbose and kv.rank == 0
        )
        run = FitRun(
            train_data,
            eval_data,
            train_metric,
            copy.deepcopy(train_metric),
            display,
            epoch_end_callback,
            begin_epoch,
            num_epoch,
            kv,
        )
        self._trainer = compiled_trainer(
            self,
            executor,
            train_data,
            heads,
            train_metric,
            batch_end_callback,
            self._opt_states,
            kv,
        )
        try:
            if kv.distributed:
                warn_unsharded(train_data, kv.num_workers)
                executor.dropout_stream = kv.rank  # each rank its own Dropout masks
                start_together(
                    kv, self, executor, train_data, (begin_epoch, num_epoch), self._opt_states
                )
            if self._trainer is not None:
                fit_compiled(self, self._trainer, run)
            else:
                self._fit_steps(executor, run, batch_end_callback)
        except (TrainingDivergedError, DistributedError):
            raise  # the same error on every rank, at the same step
        except BaseException as error:
            if kv.distributed:  # this rank alone: the others would wait for it forever
                traceback.print_exc()
                kv.communicator.abort(
                    f"graphc: rank {kv.rank} of {kv.num_workers} stopped in fit with "
                    f"{type(error).__name__}: {error}; aborting the job"
                )
            raise
        finally:
            display.close()
        return self.history

    def _training_heads(self) -> list:
        """The loss heads ``fit`` trains; every other output must be a carried state."""
        heads = loss_heads(self.symbol)
        outputs = self.symbol.list_outputs()
        allowed = {outputs[head.output] for head in heads} | set(self.state_names.values())
        others = [name for name in outputs if name not in allowed]
        if others:
            raise ValueError(
                f"fit: the outputs {others} are not loss heads; fit trains a symbol whose "
                "outputs are all loss heads (SoftmaxOutput, LinearRegressionOutput, "
                "LogisticRegressionOutput, MakeLoss) or recurrent states named in "
                "Model's state_names"
            )
        return heads

    def _bind_for_training(self, train_data, initializer, seed: int):
        """The training executor for the data's shapes, the parameters initialized once."""
        executor = self.bindings.executor(
            self.bindings.input_shapes(train_data, "fit"), for_training=True
        )
        self.bindings.train_executor = executor
        if self._loaded_train_step is not None:
            # The executor counts training forwards for Dropout's masks: resume the count.
            executor.dropout_counter = self._loaded_train_step
            self._loaded_train_step = None
        if not self._initialized:
            # Drawn on the host (the bound arrays themselves on the CPU), then copied in.
            arg_values, aux_values = self.bindings.host_params()
            params = {**arg_values, **aux_values}
            initialize(params, Xavier() if initializer is None else initializer, seed)
            self.bindings.write_params(params)
            self._initialized = True
        return executor

    def _start_optimizer(
        self, executor, optimizer, optimizer_params, heads, train_data, workers: int
    ) -> None:
        """The optimizer of this fit, its state placed in the executor's arena and carried
        over from the last fit or the checkpoint loaded. Its default ``rescale_grad`` is
        over the global batch: every worker's (MXNet Module's rule)."""
        previous = self._previous_optimizer()
        self._optimizer = make_optimizer(
            optimizer, optimizer_params, heads, batch_size_of(train_data), workers
        )
        self._opt_states = placed_states(
            executor, self._optimizer, {name: self.arg_params[name] for name in self.param_names}
        )
        carry_over(self._optimizer, self._opt_states, previous)
        self._loaded_optimizer = None

    def _fit_steps(self, executor, run: FitRun, batch_end_callback) -> None:
        """The epochs of ``fit`` step by step, Python running every batch (``fit_loop``)."""
        for epoch in range(run.begin_epoch, run.num_epoch):
            start = time.perf_counter()
            run.display.start_epoch(epoch, num_batches_of(run.train_data))
            train_loss, samples = train_epoch(
                self.bindings,
                executor,
                self._optimizer,
                self._opt_states,
                run.train_data,
                run.train_metric,
                run.display,
                as_callbacks(batch_end_callback),
                epoch,
                run.communicator,
            )
            seconds = time.perf_counter() - start
            run.train_data.reset()
            self._data_state = iterator_state(run.train_data)
            self._end_epoch(epoch, seconds, train_loss, samples, run)

    def _end_epoch(self, epoch, seconds, train_loss, samples, run: FitRun) -> None:
        """Validation, history, the summary line and the callbacks of one epoch."""
        val_values, val_loss = [], None
        if run.eval_data is not None:
            val_values, val_loss = self._evaluate(
                run.eval_data, run.val_metric, "fit", communicator=run.communicator
            )
        train_values = run.train_metric.get_name_value()
        self._record(epoch, seconds, train_values, train_loss, val_values, val_loss, run.eval_data)
        run.display.end_epoch(
            epoch, train_values, train_loss, val_values, val_loss, seconds, samples
        )
        for callback in as_callbacks(run.epoch_end_callback):
            callback(epoch, self.symbol, self.arg_params, self.aux_params)

    def _previous_optimizer(self) -> tuple[dict, dict] | None:
        """The optimizer state to carry on from: the live optimizer's, else a checkpoint's."""
        if self._optimizer is not None:
            return snapshot(self._optimizer, self._opt_states)
        return self._loaded_optimizer

    def _resume_data_order(self, train_data, begin_epoch: int) -> None:
        if self._loaded_data_state is None:
            return
        epoch, state = self._loaded_data_state
        self._loaded_data_state = None
        if begin_epoch != epoch:
            warnings.warn(
                f"fit: begin_epoch={begin_epoch} but the checkpoint is of epoch {epoch}; the "
                "training data order it saved is not restored",
                stacklevel=3,
            )
            return
        restore_iterator_state(train_data, state)

    def _record(self, epoch, seconds, train_values, train_loss, val_values, val_loss, eval_data):
        row = {"epoch": epoch + 1, "time": seconds, "train_loss": _or_nan(train_loss)}
        row.update({f"train_{name}": value for name, value in train_values})
        if eval_data is not None:
            row["val_loss"] = _or_nan(val_loss)
            row.update({f"val_{name}": value for name, value in val_values})
        done = len(self.history["epoch"])
        for key in row:
            self.history.setdefault(key, [math.nan] * done)
        for key, values in self.history.items():
            values.append(row.get(key, math.nan))

    # -- evaluation and prediction -----------------------------------------------------------

    def score(self, eval_data, eval_metric: Any = None, reset: bool = True) -> list:
        """``[(name, value), ...]`` of ``eval_metric`` over ``eval_data``, padding left out.

        ``eval_metric`` defaults to the loss head's, as in :meth:`fit`. ``reset`` starts
        the iterator from its first batch (as MXNet's ``score``). A
        recurrent state (``state_names``) starts from zero and is carried over the pass as
        in ``fit``.

        >>> import numpy as np, graphc as gc
        >>> model = Model(gc.models.linreg())
        >>> model.set_params({"fc_weight": np.ones((1, 2), np.float32),
        ...                   "fc_bias": np.zeros(1, np.float32)})
        >>> pairs = gc.io.NDArrayIter(np.eye(2, dtype=np.float32), np.array([1.0, 3.0]),
        ...                           batch_size=2, label_name="lro_label")
        >>> model.score(pairs), model.score(pairs, "mae")
        ([('mse', 2.0)], [('mae', 1.0)])
        """
        if eval_metric is None:
            eval_metric = default_metric(
                loss_heads(self.symbol), stream=isinstance(eval_data, BPTTIter)
            )
        values, _ = self._evaluate(eval_data, metrics.create(eval_metric), "score", reset)
        return values

    def _evaluate(self, eval_data, metric, what: str, reset: bool = True, communicator=None):
        self._require_params(what)
        shapes = self.bindings.input_shapes(eval_data, what)
        executor = self.bindings.executor(shapes, for_training=False)
        if reset:
            eval_data.reset()
        return evaluate(self.bindings, executor, eval_data, metric, communicator)

    def predict(
        self, data, batch_size: int | None = None, reset: bool = True
    ) -> np.ndarray | list[np.ndarray]:
        """The outputs for every sample of ``data``, padding rows left out.

        Parameters
        ----------
        data : ndarray, list or dict of ndarrays, or a data iterator
            Arrays are batched in order (``NDArrayIter``, named ``data_names[0]``).
        batch_size : int, optional
            For arrays only; default ``min(128, number of samples)``.
        reset : bool
            Reset an iterator before the first batch.

        Returns
        -------
        ndarray, or a list of them for a symbol with several outputs (the state outputs
        included, one row per stream per batch). A recurrent state (``state_names``)
        starts from zero and is carried over the pass as in ``fit``.
        """
        self._require_params("predict")
        data_iter = prediction_iter(data, batch_size, self.data_names[0])
        executor = self.bindings.executor(
            self.bindings.input_shapes(data_iter, "predict"), for_training=False
        )
        if reset:
            data_iter.reset()
        results = predict_outputs(self.bindings, executor, data_iter)
        return results[0] if len(results) == 1 else results

    # -- checkpoints -------------------------------------------------------------------------

    def save_checkpoint(self, prefix: str, epoch: int, save_optimizer_states: bool = True) -> None:
        """Write ``{prefix}-symbol.json`` and ``{prefix}-{epoch:04d}.npz`` (atomically).

        ``epoch`` is the number of epochs completed: ``Model.load(prefix, epoch)`` and then
        ``fit(..., begin_epoch=epoch)`` continue exactly as training would have. The file
        layout is in ``graphc.training.checkpoint``. After a data-parallel ``fit``, rank 0
        writes and every rank waits at a barrier until it has: call it on every rank (as
        ``checkpoint_callback`` does), not under ``if kv.rank == 0``.

        >>> import os, tempfile, numpy as np, graphc as gc
        >>> model = Model(gc.models.linreg())
        >>> model.set_params({"fc_weight": np.ones((1, 2), np.float32),
        ...                   "fc_bias": np.zeros(1, np.float32)})
        >>> prefix = os.path.join(tempfile.mkdtemp(), "linreg")
        >>> model.save_checkpoint(prefix, 0)
        >>> loaded = Model.load(prefix, 0)
        >>> loaded.predict(np.eye(2, dtype=np.float32)).ravel().tolist()
        [1.0, 1.0]
        """
        self._require_params("save_checkpoint")
        arg_values, aux_values = self.bindings.host_params()
        state = CheckpointState(
            symbol=self.symbol,
            epoch=epoch,
            arg_params=arg_values,
            aux_params=aux_values,
            train_step=self._train_step(),
            data_state=self._data_state,
            history=self.history,
        )
        if self._loaded_data_state is not None:
            state.data_state = self._loaded_data_state[1]
        previous = self._previous_optimizer() if save_optimizer_states else None
        if previous is not None:
            state.optimizer, state.optimizer_state = previous
        kv = self._kvstore
        if kv is None or kv.rank == 0:
            save_checkpoint_files(prefix, state)
        if kv is not None and kv.distributed:  # the file exists for every rank after this
            kv.communicator.barrier(f"save_checkpoint({prefix!r}, {epoch}) on rank {kv.rank}")

    def _train_step(self) -> int:
        if self.bindings.train_executor is not None:
            return self.bindings.train_executor.dropout_counter
        return self._loaded_train_step or 0

    def checkpoint_callback(self, prefix: str, period: int = 1) -> Callable:
        """An ``epoch_end_callback`` saving a checkpoint every ``period`` epochs, numbered by
        epochs completed (MXNet's ``mx.callback.module_checkpoint``)."""

        def callback(epoch: int, symbol, arg_params, aux_params) -> None:
            if (epoch + 1) % period == 0:
                self.save_checkpoint(prefix, epoch + 1)

        return callback

    @classmethod
    def load(
        cls,
        prefix: str,
        epoch: int,
        ctx: Context | None = None,
        data_names: Sequence[str] = ("data",),
        label_names: Sequence[str] | None = None,
        opt_level: int | None = None,
        state_names: Mapping[str, str] | None = None,
    ) -> Model:
        """The model saved by ``save_checkpoint(prefix, epoch)``, ready to predict or to
        resume with ``fit(..., begin_epoch=epoch)``. A checkpoint holds no recurrent state
        (it starts from zero at every epoch); pass the ``state_names`` the model had.

        Raises FileNotFoundError or ``CheckpointError``, naming the file."""
        state = load_checkpoint_files(prefix, epoch)
        model = cls(state.symbol, ctx, data_names, label_names, opt_level, state_names)
        source = params_path(prefix, epoch)
        model._set_stored_params(
            source,
            state.arg_params,
            state.aux_params,
            lambda missing: CheckpointError(
                f"{source}: no 'arg:' entry for the parameters {missing}"
            ),
        )
        if state.optimizer is not None:
            model._loaded_optimizer = (state.optimizer, state.optimizer_state)
        if state.data_state is not None:
            model._loaded_data_state = (state.epoch, state.data_state)
        model._loaded_train_step = state.train_step
        if state.history:
            model.history = {key: list(values) for key, values in state.history.items()}
        return model

    def export_onnx(
        self, path: str, input_shapes: Mapping[str, tuple] | None = None, opset: int | None = None
    ):
        """Write the model's inference graph with its parameters to the ONNX file ``path``
        (``gc.onnx.export``) and return the ONNX model. ``input_shapes`` gives the data's
        shapes; by default those of the model's last binding (a ``fit``, ``score`` or
        ``predict``)."""
        from graphc.interop.onnx import export

        self._require_params("export_onnx")
        if input_shapes is None:
            bound = [dict(key) for _, key in self.bindings.executors]
            if not bound:
                raise ValueError(
                    "export_onnx: the model has not been bound yet; give input_shapes, e.g."
                    f" {{{self.data_names[0]!r}: (1, ...)}}"
                )
            input_shapes = {name: bound[-1][name] for name in self.data_names}
        arg_params, _ = self.get_params()
        return export(self.symbol, arg_params, input_shapes, path, opset=opset)

    @classmethod
    def load_mxnet(
        cls,
        prefix: str,
        epoch: int,
        ctx: Context | None = None,
        data_names: Sequence[str] = ("data",),
        label_names: Sequence[str] | None = None,
        opt_level: int | None = None,
    ) -> Model:
        """The model of an MXNet 1.x checkpoint (``<prefix>-symbol.json`` and
        ``<prefix>-<epoch:04d>.params``, as ``mx.model.save_checkpoint`` writes them),
        ready to ``predict``, ``score`` and ``fit``; ``save_checkpoint`` then writes it in
        graphc's format. No MXNet is needed (``gc.mxnet.load_checkpoint``).

        As in MXNet's ``Module``, every argument that is neither data nor a label (by
        default the variables the loss heads read as labels) is a parameter, and the
        checkpoint must hold it.

        >>> import graphc as gc
        >>> model = gc.Model.load_mxnet("tests/fixtures/mxnet/mlp", 3)
        >>> model.param_names, model.label_names
        (['fc1_weight', 'fc1_bias', 'fc2_weight', 'fc2_bias'], ('softmax_label',))
        """
        symbol, arg_params, aux_params = mxnet_checkpoint(prefix, epoch)
        model = cls(symbol, ctx, data_names, label_names, opt_level)
        source = mxnet_params_path(prefix, epoch)
        model._set_stored_params(
            source,
            arg_params,
            aux_params,
            lambda missing: ImportFormatError(
                f"{source}: no 'arg:' entry for {missing}, which are neither data"
                f" {list(model.data_names)} nor labels {list(model.label_names)}"
            ),
        )
        return model

    def _set_stored_params(self, source: str, arg_params, aux_params, missing_error) -> None:
        """Set the parameters a file holds (``source``, named when one does not fit at a
        bind); ``missing_error(names)`` is the error for parameters it lacks."""
        missing = sorted(set(self.param_names) - set(arg_params))
        if missing:
            raise missing_error(missing)
        self.bindings.param_source = source
        self.set_params({name: arg_params[name] for name in self.param_names}, aux_params)


def _check_epochs(begin_epoch: int, num_epoch: int) -> None:
    for name, value in (("begin_epoch", begin_epoch), ("num_epoch", num_epoch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"fit: {name} must be an integer >= 0, got {value!r}")
    if num_epoch <= begin_epoch:
        raise ValueError(
            f"fit: num_epoch={num_epoch} is the epoch to stop before, so it must exceed "
            f"begin_epoch={begin_epoch} (MXNet's convention: epochs begin_epoch..num_epoch-1)"
        )


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
