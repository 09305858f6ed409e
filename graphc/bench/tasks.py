"""The five models of Knet's benchmark table, their settings, and the task file every
system trains from.

A task file is an ``.npz`` written once per model and run by graphc's side: the data (as
arrays, already in the order batches take them), the initial weights (Glorot-uniform weights
and zero biases from one seed, under graphc's parameter names and MXNet's layouts) and
``settings``, a JSON string with the hyper-parameters. Every system, graphc included,
reads the same file, so all start from the same weights and see the same batches in the
same order; ``graphc/bench/peers/peer_protocol.py`` reads it on the peers' side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from graphc.data.datasets import fashion_mnist, housing, standardized, text
from graphc.data.io import BPTTIter
from graphc.models import charlm, lenet, linreg, mlp, softmax_regression
from graphc.training.initializer import Xavier

MODELS = ("linreg", "softmax", "mlp", "lenet", "charlm")

SEED = 0
"""Of the initial weights, the same for every system."""

SETTINGS = {
    "linreg": dict(
        title="LinReg (Housing)", data="housing", epochs=10_000, batch=506,
        optimizer="sgd", learning_rate=0.1,
    ),
    "softmax": dict(
        title="Softmax (Fashion-MNIST)", data="fashion-mnist", epochs=10, batch=100,
        optimizer="sgd", learning_rate=0.1,
    ),
    "mlp": dict(
        title="MLP 64 (Fashion-MNIST)", data="fashion-mnist", epochs=10, batch=100,
        optimizer="sgd", learning_rate=0.1, hidden=64,
    ),
    "lenet": dict(
        title="LeNet (Fashion-MNIST)", data="fashion-mnist", epochs=1, batch=100,
        optimizer="sgd", learning_rate=0.05, momentum=0.9, wd=1e-5,
    ),
    "charlm": dict(
        title="CharLM (Hiawatha)", data="hiawatha", epochs=1, batch=128, seq_len=100,
        embed=256, hidden=256, optimizer="adam", learning_rate=0.01,
    ),
}  # fmt: skip
"""Knet's table: SGD on the batch-mean loss (weight decay added to the gradient, as MXNet's
SGD), Adam with beta1 0.9, beta2 0.999, epsilon 1e-8 for CharLM; the training data in file
order every epoch (no shuffling), incomplete batches dropped."""

QUICK = {"epochs": 3, "batches": 3, "test_images": 500, "windows": 2}
"""``--quick``: LinReg trains 3 full-batch epochs; the classifiers one epoch of 3 batches,
tested on 500 images; CharLM one epoch of 2 windows. Same shapes as the full runs."""


@dataclass(frozen=True)
class TaskFile:
    """A task file written, and what its data are, for the report."""

    model: str
    path: str
    data: str
    samples: int  # per run: samples (characters predicted, for CharLM) over all epochs


def symbol_of(model: str, vocab_size: int | None = None):
    """graphc's symbol of ``model`` (CharLM carrying its state across windows)."""
    settings = SETTINGS[model]
    if model == "linreg":
        return linreg()
    if model == "softmax":
        return softmax_regression()
    if model == "mlp":
        return mlp(hidden=(settings["hidden"],))
    if model == "lenet":
        return lenet()
    return charlm(vocab_size, settings["embed"], settings["hidden"], stateful=True)


def load_fashion_mnist() -> tuple[tuple[np.ndarray, ...], str]:
    """Fashion-MNIST, the full set when installed, else graphc's bundled subset; and which."""
    try:
        return fashion_mnist(), "Fashion-MNIST, the full set"
    except FileNotFoundError:
        return fashion_mnist(bundled=True), (
            "Fashion-MNIST, the 6,000-image subset bundled with graphc (the full set is not"
            " installed: apt-get install -y dataset-fashion-mnist)"
        )


def write_task(model: str, path: str, quick: bool = False) -> TaskFile:
    """Write the task file of ``model`` to ``path``: its data, initial weights, settings."""
    settings = dict(SETTINGS[model], model=model, quick=quick)
    if model == "charlm":
        arrays, what = _text_arrays(settings, quick)
        data_shape = (settings["seq_len"], settings["batch"])
        symbol = symbol_of(model, settings["vocab_size"])
        windows = (arrays["streams"].shape[1] - 1) // settings["seq_len"]
        samples = settings["epochs"] * windows * settings["seq_len"] * settings["batch"]
    else:
        arrays, what = _table_arrays(model, settings, quick)
        data_shape = (settings["batch"], *arrays["train_x"].shape[1:])
        symbol = symbol_of(model)
        batches = len(arrays["train_x"]) // settings["batch"]
        samples = settings["epochs"] * batches * settings["batch"]
    initial = initial_weights(symbol, data_shape)
    settings["params"] = [[name, list(value.shape)] for name, value in initial.items()]
    settings["data_description"] = what
    np.savez(
        path,
        settings=np.array(json.dumps(settings)),
        **arrays,
        **{f"init_{name}": value for name, value in initial.items()},
    )
    return TaskFile(model, path, what, samples)


def initial_weights(symbol, data_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """float32 initial values of every parameter of ``symbol``, by name in
    ``list_arguments`` order: graphc's default initializer (MXNet's Xavier: Glorot-uniform
    weights, zero biases), drawn from ``SEED``."""
    arg_shapes, _, _ = symbol.infer_shape_partial(data=data_shape)
    rng = np.random.default_rng(SEED)
    values = {}
    for name, shape in zip(symbol.list_arguments(), arg_shapes):
        if not name.endswith(("_weight", "_bias")):  # data, labels, carried states
            continue
        value = np.empty(shape, np.float32)
        Xavier()(name, value, rng)
        values[name] = value
    return values


def _table_arrays(model: str, settings: dict, quick: bool) -> tuple[dict, str]:
    if model == "linreg":
        features, targets = housing()
        features = standardized(features)
        if quick:
            settings["epochs"] = QUICK["epochs"]
        arrays = {"train_x": features.astype(np.float32), "train_y": targets.astype(np.float32)}
        return arrays, f"Boston Housing, {len(targets)} districts, features standardized"
    (train_x, train_y, test_x, test_y), what = load_fashion_mnist()
    if model != "lenet":  # the dense models read rows of 784
        train_x, test_x = (x.reshape(len(x), -1) for x in (train_x, test_x))
    if quick:
        settings["epochs"] = 1
        keep = QUICK["batches"] * settings["batch"]
        train_x, train_y = train_x[:keep], train_y[:keep]
        test_x, test_y = test_x[: QUICK["test_images"]], test_y[: QUICK["test_images"]]
    arrays = {
        "train_x": np.ascontiguousarray(train_x, np.float32),
        "train_y": train_y.astype(np.int32),
        "test_x": np.ascontiguousarray(test_x, np.float32),
        "test_y": test_y.astype(np.int32),
    }
    return arrays, f"{what}: {len(train_y):,} training, {len(test_y):,} test images"


def _text_arrays(settings: dict, quick: bool) -> tuple[dict, str]:
    """The rows BPTTIter cuts the text into: window k of an epoch is columns ``k * seq_len``
    to ``(k + 1) * seq_len`` of every row, its labels one character later."""
    corpus = text()
    settings["vocab_size"] = corpus.vocab_size
    streams = BPTTIter(corpus.data, settings["batch"], settings["seq_len"]).streams
    if quick:
        streams = streams[:, : QUICK["windows"] * settings["seq_len"] + 1]
    windows = (streams.shape[1] - 1) // settings["seq_len"]
    what = (
        f"The Song of Hiawatha, {len(corpus.data):,} characters, {corpus.vocab_size} distinct:"
        f" {windows} windows of {settings['seq_len']} x {settings['batch']}"
    )
    return {"streams": np.ascontiguousarray(streams, np.int32)}, what
