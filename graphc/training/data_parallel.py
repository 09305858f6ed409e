"""What ``Model.fit`` does beside training when several ranks train together
(``kvstore="dist_sync"``, see ``graphc.training.kvstore``).

- At the start (:func:`start_together`): every rank describes its fit (the graph, the
  bound shapes, the parameters, the optimizer, the epochs and the batches per epoch, the
  path it trains on); rank 0 compares, and a difference is a ``DistributedError`` on every
  rank naming the rank and what differs. Then rank 0's parameters, auxiliary states and
  optimizer state are broadcast, so ranks that drew other initial weights agree.
- Each step: the gradients are summed over the ranks (in the compiled loop, or by
  :func:`sum_gradients` on the step-by-step path).
- The figures ``fit`` reports are every rank's: :func:`sum_metric` and :func:`sum_values`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence

import numpy as np

from graphc.data.io import BPTTIter, NDArrayIter
from graphc.ir.serialize import to_json
from graphc.runtime.arrays import asnumpy
from graphc.runtime.communicator import Communicator
from graphc.training.binding import num_batches_of
from graphc.training.metric import CompositeEvalMetric, EvalMetric
from graphc.training.optimizer_state import optimizer_record

COMPILE_SECONDS = 600.0
"""How long a rank waits for the others where they may still be compiling (the training
loop before the first step, an executor's kernels before its first pass): a cold compile
can take one rank much longer than another, which is not a stall."""


def first_wait_seconds(communicator: Communicator) -> float:
    """The limit of a wait that may include another rank's first compile."""
    return max(COMPILE_SECONDS, communicator.stall_timeout)


def describe_fit(model, executor, train_data, epochs: tuple[int, int], bucket_mb) -> dict:
    """What must be the same on every rank, as JSON values."""
    graph = hashlib.sha256(to_json(model.symbol).encode()).hexdigest()[:16]
    return {  # compared in this order: the first difference is named
        "bound shapes": {name: list(array.shape) for name, array in executor.arg_dict.items()},
        "graph (a hash of its JSON)": graph,
        "dtypes": {name: str(array.dtype) for name, array in executor.arg_dict.items()},
        "optimizer": json.loads(json.dumps(optimizer_record(model.optimizer), default=repr)),
        "epochs": list(epochs),
        "batches per epoch": num_batches_of(train_data),
        "training path": model.fit_path,
        "gradient buckets (MiB)": bucket_mb,
    }


def compare_fits(first: dict, rank: int, other: dict) -> str | None:
    """The message naming ``rank`` and what it has that rank 0 has not, or None."""
    for key, value in first.items():
        theirs = other.get(key)
        if theirs == value:
            continue
        if isinstance(value, dict) and isinstance(theirs, dict):
            names = sorted(
                name for name in set(value) | set(theirs) if value.get(name) != theirs.get(name)
            )
            detail = "; ".join(
                f"{name}: {value.get(name)} on rank 0, {theirs.get(name)} on rank {rank}"
                for name in names[:4]
            )
        else:
            detail = f"{value} on rank 0, {theirs} on rank {rank}"
        return (
            f"fit with kvstore 'dist_sync': rank {rank} differs from rank 0 in its {key} "
            f"({detail}); every rank must build the same model, bind the same shapes and use "
            "the same optimizer and epochs"
        )
    return None


def start_together(kvstore, model, executor, train_data, epochs, opt_states: dict) -> None:
    """The start-of-fit handshake (see the module), within the kvstore's ``timeout``:
    ``epochs`` is (begin_epoch, num_epoch), ``opt_states`` the optimizer's state arrays."""
    communicator = kvstore.communicator
    description = describe_fit(model, executor, train_data, epochs, kvstore.bucket_mb)
    communicator.exchange_checked(description, compare_fits)
    arg_values, aux_values = model.bindings.host_params()
    params = {**arg_values, **aux_values}
    values = {("param", name): asnumpy(value) for name, value in params.items()}
    for name, states in opt_states.items():
        values.update({("state", name, k): asnumpy(state) for k, state in enumerate(states)})
    received = _broadcast_packed(communicator, values)
    model.bindings.write_params(
        {key[1]: value for key, value in received.items() if key[0] == "param"}
    )
    for name, states in opt_states.items():
        for k, state in enumerate(states):
            executor.target.arrays.copy(state, received[("state", name, k)])


def _broadcast_packed(communicator: Communicator, values: dict) -> dict:
    """Rank 0's ``values`` on every rank: one broadcast per dtype of everything packed (one
    call, not one per array, each of which would wait on the slowest rank)."""
    received = {}
    for dtype in sorted({value.dtype.str for value in values.values()}):
        keys = sorted(key for key, value in values.items() if value.dtype.str == dtype)
        packed = np.concatenate([values[key].reshape(-1) for key in keys])
        communicator.broadcast(
            packed, f"the broadcast of rank 0's parameters ({np.dtype(dtype).name})"
        )
        offset = 0
        for key in keys:
            size = values[key].size
            received[key] = packed[offset : offset + size].reshape(values[key].shape)
            offset += size
    return received


def warn_unsharded(train_data, workers: int) -> None:
    """Every rank reading all the samples is almost always a forgotten ``num_parts``."""
    if isinstance(train_data, (NDArrayIter, BPTTIter)) and train_data.num_parts == 1:
        warnings.warn(
            f"fit: {workers} workers train on the same {type(train_data).__name__} data: pass "
            "num_parts=kv.num_workers, part_index=kv.rank to give each rank its part",
            stacklevel=3,
        )


class GradientSum:
    """The step-by-step path's allreduce: every gradient and this rank's 'loss not finite'
    flag packed in one buffer, summed over the ranks in one call, unpacked."""

    def __init__(self, communicator: Communicator, gradients: Sequence[np.ndarray]) -> None:
        self.communicator = communicator
        dtype = np.result_type(*(gradient.dtype for gradient in gradients))
        self.buffer = np.zeros(sum(gradient.size for gradient in gradients) + 1, dtype=dtype)
        self.first = True  # the first sum also waits for the others' first compile

    def __call__(self, gradients: Sequence[np.ndarray], bad: bool, what: str) -> bool:
        """Sum ``gradients`` over the ranks in place; whether any rank's loss was bad."""
        offset = 0
        for gradient in gradients:
            self.buffer[offset : offset + gradient.size] = asnumpy(gradient).reshape(-1)
            offset += gradient.size
        self.buffer[offset] = 1.0 if bad else 0.0
        limit = first_wait_seconds(self.communicator) if self.first else None
        self.first = False
        with self.communicator.watch(what, limit):
            self.communicator.allreduce(self.buffer)
        if self.buffer[offset] > 0:
            return True
        offset = 0
        for gradient in gradients:
            gradient[...] = self.buffer[offset : offset + gradient.size].reshape(gradient.shape)
            offset += gradient.size
        return False


def sum_values(
    communicator: Communicator, values: Sequence[float], what: str, seconds: float | None = None
) -> list[float]:
    """``values`` summed over the ranks (waiting at most ``seconds``, by default the
    stall timeout)."""
    buffer = np.array(values, dtype=np.float64)
    if communicator.size > 1:
        with communicator.watch(what, seconds):
            communicator.allreduce(buffer)
    return buffer.tolist()


def sum_metric(
    communicator: Communicator, metric: EvalMetric, what: str, seconds: float | None = None
) -> None:
    """Give ``metric`` (and a composite's children) its sums over every rank."""
    if communicator.size == 1:
        return
    parts = metric.metrics if isinstance(metric, CompositeEvalMetric) else [metric]
    sums = sum_values(
        communicator,
        [value for part in parts for value in (part.sum_metric, part.num_inst)],
        what,
        seconds,
    )
    for index, part in enumerate(parts):
        part.sum_metric = sums[2 * index]
        part.num_inst = int(round(sums[2 * index + 1]))


__all__ = [
    "COMPILE_SECONDS",
    "GradientSum",
    "compare_fits",
    "describe_fit",
    "first_wait_seconds",
    "start_together",
    "sum_metric",
    "sum_values",
    "warn_unsharded",
]
