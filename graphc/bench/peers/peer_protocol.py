"""What every system's script shares: reading the task file, the timed run, the result.

It imports only NumPy, so that a peer's interpreter needs nothing of graphc: a peer script
beside this file imports it as ``peer_protocol`` (its folder is on ``sys.path`` when it
runs as a script). ``graphc bench`` runs a script as

    PYTHON SCRIPT --task TASK.npz --out RESULT.json [--mode MODE] [--first-step-only]

A script builds a trainer (an object with ``prepare``, ``step``, ``loss_value``,
``start_epoch`` and ``predict``, described at :func:`run`) and hands it to :func:`run`,
which times the first step (building the model, compiling or tracing it, one step) and
then the whole training with new weights, and writes the result as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np

QUALITY = {"linreg": "mse", "charlm": "perplexity"}
"""What says a run trained honestly, per model; the classifiers' is ``test accuracy``."""


class Task:
    """A task file: ``settings`` (dict), the initial weights by graphc's parameter names,
    and the data as batches in the order every epoch takes them."""

    def __init__(self, path: str) -> None:
        with np.load(path) as contents:
            arrays = {name: contents[name] for name in contents.files}
        self.settings = json.loads(str(arrays.pop("settings")))
        self.model = self.settings["model"]
        self.epochs = self.settings["epochs"]
        self.batch = self.settings["batch"]
        self.arrays = arrays

    def initial(self) -> dict[str, np.ndarray]:
        """Copies of the initial weights, by graphc's names (MXNet's layouts: a dense
        weight is (out, in), a convolution's (out, in, kh, kw), an LSTM's i2h (4H, in) and
        h2h (4H, H) with gates in the order i, f, g, o)."""
        return {name: self.arrays[f"init_{name}"].copy() for name, _ in self.settings["params"]}

    def batches(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every epoch's batches, in order: (data, label) slices of the training arrays;
        for CharLM, time-major (seq_len, batch) character windows and the next characters."""
        if self.model == "charlm":
            streams, length = self.arrays["streams"], self.settings["seq_len"]
            count = (streams.shape[1] - 1) // length
            return [
                (
                    np.ascontiguousarray(streams[:, k * length : (k + 1) * length].T),
                    np.ascontiguousarray(streams[:, k * length + 1 : (k + 1) * length + 1].T),
                )
                for k in range(count)
            ]
        x, y = self.arrays["train_x"], self.arrays["train_y"]
        return [
            (x[first : first + self.batch], y[first : first + self.batch])
            for first in range(0, len(x) - self.batch + 1, self.batch)
        ]


def arguments(modes: tuple[str, ...] = ()) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="one system's run of a graphc bench task")
    parser.add_argument("--task", required=True, help="the task .npz graphc bench wrote")
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    parser.add_argument("--mode", default=modes[0] if modes else None, choices=modes or None)
    parser.add_argument(
        "--first-step-only", action="store_true", help="stop after timing the first step"
    )
    return parser.parse_args()


def run(task: Task, args: argparse.Namespace, make_trainer, version: str) -> None:
    """Time building ``make_trainer(task)`` and its first step; then reset it and time a
    whole training run; write the result to ``args.out``.

    The trainer: ``prepare(x, y)`` turns a NumPy batch into the framework's arrays (before
    any clock); ``start_epoch()`` is called before each epoch (CharLM's state starts from
    zero there); ``step(x, y)`` trains one batch and returns its loss as the framework
    holds it (no synchronization needed); ``loss_value(loss)`` makes it a float;
    ``predict(x)`` returns NumPy outputs (class scores, or LinReg's predictions) for a
    NumPy batch; ``reset()`` puts back the initial weights and a new optimizer state,
    keeping what was compiled; ``sync()``, if it has one, waits for queued work.
    """
    start = time.perf_counter()
    trainer = make_trainer(task)
    build_seconds = time.perf_counter() - start
    batches = [trainer.prepare(x, y) for x, y in task.batches()]  # off the clock
    start = time.perf_counter()
    trainer.start_epoch()
    first_loss = trainer.loss_value(trainer.step(*batches[0]))
    first_step = build_seconds + time.perf_counter() - start
    result = {"version": version, "mode": args.mode, "first_step_s": first_step}
    result["first_loss"] = first_loss
    if args.first_step_only:
        _write(args.out, result)
        return
    trainer.reset()
    _sync(trainer)
    start = time.perf_counter()
    for _ in range(task.epochs):
        trainer.start_epoch()
        losses = [trainer.step(x, y) for x, y in batches]
    _sync(trainer)
    result["train_s"] = time.perf_counter() - start
    result["final_loss"] = statistics.fmean(trainer.loss_value(loss) for loss in losses)
    result["quality"] = quality(task, trainer, result["final_loss"])
    _write(args.out, result)


def quality(task: Task, trainer, final_loss: float) -> float:
    """Test accuracy (classifiers), MSE over the training data (LinReg), or the perplexity
    of the last epoch (CharLM, exp of its mean loss per character)."""
    if task.model == "charlm":
        return math.exp(final_loss)
    if task.model == "linreg":
        x, y = task.arrays["train_x"], task.arrays["train_y"]
        predictions = np.concatenate([trainer.predict(part) for part in _parts(x, task.batch)])
        return float(np.mean((predictions.reshape(-1) - y) ** 2))
    x, y = task.arrays["test_x"], task.arrays["test_y"]
    scores = np.concatenate([trainer.predict(part) for part in _parts(x, task.batch)])
    return float(np.mean(scores.argmax(axis=1) == y))


def _parts(x: np.ndarray, size: int) -> list[np.ndarray]:
    return [x[first : first + size] for first in range(0, len(x), size)]


def _sync(trainer) -> None:
    if hasattr(trainer, "sync"):
        trainer.sync()


def _write(path: str, result: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
