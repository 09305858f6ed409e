"""graphc's side of a bench task: ``Model.fit`` on the task file, run as
``python -m graphc.bench.graphc_system --task TASK.npz --out RESULT.json --mode cpu|cuda``.

The first step is a ``Model`` built, given the task's initial weights and fitted on the
first batch (binding compiles every kernel the training loop needs, or loads it from the
cache); the timed run is a new ``Model`` with the same weights fitted on all the data: its
bind finds the kernels in memory. Threads: ``GRAPHC_NUM_THREADS`` (the runner sets it).
"""

from __future__ import annotations

import json
import time
import warnings
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from graphc.bench.peers import peer_protocol
from graphc.bench.tasks import symbol_of
from graphc.codegen_cpu.threads import get_num_threads
from graphc.data.io import BPTTIter, NDArrayIter
from graphc.models import CHARLM_STATE_NAMES
from graphc.runtime import cpu, gpu
from graphc.training import Model, StepByStepWarning


def graphc_version() -> str:
    try:
        return version("graphc")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "source tree"


def data_iterator(task: peer_protocol.Task, batches: int | None = None):
    """The task's training data as graphc's iterator, all of it or its first ``batches``."""
    if task.model == "charlm":
        streams = task.arrays["streams"]
        if batches is not None:
            streams = streams[:, : batches * task.settings["seq_len"] + 1]
        return BPTTIter(streams.ravel(), task.batch, task.settings["seq_len"], layout="TN")
    x, y = task.arrays["train_x"], task.arrays["train_y"]
    if batches is not None:
        x, y = x[: batches * task.batch], y[: batches * task.batch]
    labels = y.astype(np.float32)
    return NDArrayIter(x, labels, batch_size=task.batch, last_batch_handle="discard")


def new_model(task: peer_protocol.Task, ctx) -> Model:
    symbol = symbol_of(task.model, task.settings.get("vocab_size"))
    states = CHARLM_STATE_NAMES if task.model == "charlm" else None
    model = Model(symbol, ctx=ctx, state_names=states)
    model.set_params(task.initial())
    return model


def fit(task: peer_protocol.Task, model: Model, data, epochs: int) -> dict:
    settings = task.settings
    params = {"learning_rate": settings["learning_rate"]}
    for key in ("momentum", "wd"):
        if key in settings:
            params[key] = settings[key]
    return model.fit(
        data,
        optimizer=settings["optimizer"],
        optimizer_params=params,
        num_epoch=epochs,
        verbose=False,
    )


class _Predictor:
    """``peer_protocol.quality``'s view of a trained model."""

    def __init__(self, model: Model) -> None:
        self.model = model

    def predict(self, x):
        return self.model.predict(x, batch_size=len(x))


def main() -> None:
    args = peer_protocol.arguments(modes=("cpu", "cuda"))
    task = peer_protocol.Task(args.task)
    ctx = gpu() if args.mode == "cuda" else cpu()
    # The GPU has no compiled training loop yet: fit says so once per call, as expected.
    warnings.simplefilter("ignore", StepByStepWarning)
    start = time.perf_counter()
    model = new_model(task, ctx)
    history = fit(task, model, data_iterator(task, batches=1), epochs=1)
    result = {
        "version": f"graphc {graphc_version()}",
        "mode": args.mode,
        "threads": get_num_threads(),
        "first_step_s": time.perf_counter() - start,
        "first_loss": history["train_loss"][0],
    }
    if not args.first_step_only:
        data = data_iterator(task)
        model = new_model(task, ctx)
        start = time.perf_counter()
        history = fit(task, model, data, task.epochs)
        result["train_s"] = time.perf_counter() - start
        result["final_loss"] = history["train_loss"][-1]
        result["quality"] = peer_protocol.quality(task, _Predictor(model), result["final_loss"])
        result["fit_path"] = model.fit_path
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
