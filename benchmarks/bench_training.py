"""Knet's benchmark: whole training runs of the seed models, graphc next to PyTorch eager
in the same run, and the per-step overhead of a trivial model.

    apt-get install -y dataset-fashion-mnist       # the full data set
    .venv/bin/pip install torch==2.13.0            # the peer only
    .venv/bin/python benchmarks/bench_training.py --repeats 3              # every core
    .venv/bin/python benchmarks/bench_training.py --repeats 3 --threads 1  # one thread each

Seconds for the whole training run (data already in memory, model built and compiled
before the clock starts: graphc's first run of each model warms its kernel cache), median
of ``--repeats``: LinReg on Housing (10,000 full-batch epochs, SGD lr 0.1), softmax and MLP
(64 relu) on Fashion-MNIST (10 epochs, batch 100, SGD lr 0.1), LeNet (1 epoch, batch 100,
SGD lr 0.05 momentum 0.9), CharLM on Hiawatha (1 epoch, BPTT 100, batch 128, Adam).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch_models
from common import print_table

import graphc as gc

MODELS = ("linreg", "softmax", "mlp", "lenet", "charlm")


def _data(name: str):
    if name == "linreg":
        features, targets = gc.datasets.housing()
        features = (features - features.mean(0)) / features.std(0)
        return features.astype(np.float32), targets.astype(np.float32)
    if name == "charlm":
        return gc.datasets.text(), None
    train_x, train_y, _, _ = gc.datasets.fashion_mnist()
    if name != "lenet":
        train_x = train_x.reshape(len(train_x), -1)
    return train_x, train_y


SETTINGS = {
    "linreg": dict(epochs=10_000, batch=506, optimizer="sgd", params={"learning_rate": 0.1}),
    "softmax": dict(epochs=10, batch=100, optimizer="sgd", params={"learning_rate": 0.1}),
    "mlp": dict(epochs=10, batch=100, optimizer="sgd", params={"learning_rate": 0.1}),
    "lenet": dict(
        epochs=1,
        batch=100,
        optimizer="sgd",
        params={"learning_rate": 0.05, "momentum": 0.9, "wd": 1e-5},
    ),
    "charlm": dict(epochs=1, batch=128, optimizer="adam", params={"learning_rate": 0.01}),
}


def graphc_run(name: str, x, y) -> tuple[float, str]:
    settings = SETTINGS[name]
    if name == "charlm":
        net = gc.models.charlm(x.vocab_size, stateful=True)
        model = gc.Model(net, state_names=gc.models.CHARLM_STATE_NAMES)
        data = gc.io.BPTTIter(x.data, settings["batch"], 100, layout="TN")
    elif name == "linreg":
        model = gc.Model(gc.models.linreg())  # label lro_label and metric mse, from the head
        data = gc.io.NDArrayIter(x, y, batch_size=settings["batch"])
    else:
        symbol = {
            "softmax": gc.models.softmax_regression,
            "mlp": gc.models.mlp,
            "lenet": gc.models.lenet,
        }[name]()
        model = gc.Model(symbol)
        data = gc.io.NDArrayIter(x, y, batch_size=settings["batch"])
    start = time.perf_counter()
    model.fit(  # the head's default metric: mse, accuracy, perplexity (BPTTIter)
        data,
        optimizer=settings["optimizer"],
        optimizer_params=dict(settings["params"]),
        num_epoch=settings["epochs"],
        verbose=False,
    )
    return time.perf_counter() - start, model.fit_path


def torch_run(name: str, x, y) -> float:
    import torch
    from torch import nn

    settings = SETTINGS[name]
    torch.manual_seed(0)
    if name == "charlm":
        return _torch_charlm(x, settings)
    if name == "linreg":
        model, loss_fn = nn.Linear(13, 1), nn.MSELoss()
        inputs, labels = torch.from_numpy(x), torch.from_numpy(y).reshape(-1, 1)
    else:
        if name == "softmax":
            model = nn.Linear(784, 10)
        elif name == "mlp":
            model = torch_models.mlp()
        else:
            model = torch_models.lenet()
        loss_fn = nn.CrossEntropyLoss()
        inputs, labels = torch.from_numpy(x), torch.from_numpy(y).long()
    params = settings["params"]
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=params["learning_rate"],
        momentum=params.get("momentum", 0.0),
        weight_decay=params.get("wd", 0.0),
    )
    batch = settings["batch"]
    start = time.perf_counter()
    for _ in range(settings["epochs"]):
        for first in range(0, len(inputs) - batch + 1, batch):
            optimizer.zero_grad()
            loss = loss_fn(model(inputs[first : first + batch]), labels[first : first + batch])
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def _torch_charlm(text, settings) -> float:
    import torch
    from torch import nn

    vocab, batch, length = text.vocab_size, settings["batch"], 100
    columns = len(text.data) // batch
    streams = text.data[: columns * batch].reshape(batch, columns)
    embed, lstm, decoder = nn.Embedding(vocab, 256), nn.LSTM(256, 256), nn.Linear(256, vocab)
    params = [*embed.parameters(), *lstm.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=settings["params"]["learning_rate"])
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    state = None
    for first in range(0, columns - length, length):
        window = torch.from_numpy(streams[:, first : first + length + 1].T.astype(np.int64))
        _, state = torch_models.charlm_step(
            embed, lstm, decoder, optimizer, loss_fn, window, state, vocab
        )
    return time.perf_counter() - start


def overhead(steps: int) -> list[list[object]]:
    """Microseconds per training step of FullyConnected(1 -> 1) with a regression head on
    one sample: through fit (the compiled loop), and through the executor with the
    optimizer called from Python, as a user's own loop would."""
    x = np.ones((1, 1), np.float32)
    y = np.ones(1, np.float32)
    model = gc.Model(gc.models.linreg(), label_names=("lro_label",))
    data = gc.io.NDArrayIter(x, y, batch_size=1, label_name="lro_label")
    fit = dict(eval_metric="mse", optimizer_params={"learning_rate": 0.01}, verbose=False)
    model.fit(data, num_epoch=10, **fit)
    start = time.perf_counter()
    model.fit(data, num_epoch=steps, **fit)
    fit_us = (time.perf_counter() - start) / steps * 1e6
    exe = gc.models.linreg().simple_bind(gc.cpu(), data=(1, 1), grad_req="write")
    optimizer = gc.optimizer.create("sgd", learning_rate=0.01)
    states = {n: optimizer.create_state(n, exe.arg_dict[n]) for n in ("fc_weight", "fc_bias")}
    for _ in range(10):
        exe.forward(is_train=True)
        exe.backward()
        optimizer.update(exe.arg_dict, exe.grad_dict, states)
    start = time.perf_counter()
    for _ in range(steps):
        exe.forward(is_train=True)
        exe.backward()
        optimizer.update(exe.arg_dict, exe.grad_dict, states)
    exe_us = (time.perf_counter() - start) / steps * 1e6
    return [
        ["Model.fit (compiled loop, epochs chunked)", f"{fit_us:.2f}", model.fit_path],
        ["executor forward + backward + optimizer.update", f"{exe_us:.2f}", "3 + 2 calls"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated models, e.g. lenet,charlm")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--overhead-steps", type=int, default=20_000)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for graphc (gc.set_num_threads) and PyTorch (torch.set_num_threads);"
        " 0, the default, leaves each at its own default (every core)",
    )
    args = parser.parse_args()
    if args.threads:
        gc.set_num_threads(args.threads)
    if not args.no_torch:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(f"threads: graphc {gc.get_num_threads()}, PyTorch {torch.get_num_threads()}")
    # First, in a small process: fit's per-epoch bookkeeping (20,000 one-batch epochs) is
    # Python, and after the big models the garbage collector's passes over their objects
    # made it 18.7 us per step instead of 2.8.
    overhead_rows = overhead(args.overhead_steps)
    only = set(args.only.split(",")) - {""}
    if only - set(MODELS):
        parser.error(f"--only: unknown models {sorted(only - set(MODELS))}; choose from {MODELS}")
    rows = []
    for name in MODELS:
        if only and name not in only:
            continue
        x, y = _data(name)
        graphc_run(name, x, y)  # compiles and caches every kernel of this model
        ours, path = [], ""
        theirs = []
        for _ in range(args.repeats):
            seconds, path = graphc_run(name, x, y)
            ours.append(seconds)
            if not args.no_torch:
                theirs.append(torch_run(name, x, y))
        mine = statistics.median(ours)
        peer = statistics.median(theirs) if theirs else float("nan")
        rows.append([name, f"{mine:.3g}", f"{peer:.3g}", f"{peer / mine:.2f}", path])
    print_table(["model", "graphc s", "PyTorch eager s", "PyTorch / graphc", "graphc path"], rows)
    print()
    print_table(["per-step overhead", "us per step", "note"], overhead_rows)


if __name__ == "__main__":
    main()
