"""One training step (forward, backward, SGD update) of each model of Knet's benchmark
table: graphc on the CPU next to PyTorch eager on the CPU, measured in the same run.

    .venv/bin/pip install torch==2.13.0   # for the peer only; graphc does not use it
    .venv/bin/python benchmarks/bench_step.py

Times are medians over repeated steps after a warm-up. graphc's update is still a NumPy
loop over parameters here ([train] fuses it); PyTorch uses torch.optim.SGD.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch_models
from common import median_seconds, print_table

import graphc as gc
from graphc.ir.gradcheck import non_differentiable_arguments

LR = 0.01


def _models(vocab: int):
    return {
        "LinReg (Housing, batch 506)": (gc.models.linreg(), {"data": (506, 13)}, 1),
        "Softmax (batch 100)": (gc.models.softmax_regression(), {"data": (100, 784)}, 10),
        "MLP 64 (batch 100)": (gc.models.mlp(), {"data": (100, 784)}, 10),
        "LeNet (batch 100)": (gc.models.lenet(), {"data": (100, 1, 28, 28)}, 10),
        "CharLM (100 x 128, 256)": (gc.models.charlm(vocab), {"data": (100, 128)}, vocab),
    }


def graphc_step(symbol, shapes, classes, seed=0, opt_level=None):
    # Like the PyTorch peer, no gradient for the input data.
    grad_req = {name: ("null" if name == "data" else "write") for name in symbol.list_arguments()}
    exe = symbol.simple_bind(gc.cpu(), grad_req=grad_req, opt_level=opt_level, **shapes)
    rng = np.random.default_rng(seed)
    for array in exe.arg_dict.values():
        array[:] = rng.standard_normal(array.shape) * 0.05
    for name in non_differentiable_arguments(symbol):  # labels and character indices
        exe.arg_dict[name][:] = rng.integers(0, classes, exe.arg_dict[name].shape)
    params = [(exe.arg_dict[name], grad) for name, grad in exe.grad_dict.items() if name != "data"]

    def step():
        exe.forward(is_train=True)
        exe.backward()
        for weight, grad in params:
            weight -= LR * grad

    return step, exe


def torch_step(label: str, vocab: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if label.startswith("LinReg"):
        model, x, y = nn.Linear(13, 1), torch.randn(506, 13), torch.randn(506, 1)
        loss_fn = nn.MSELoss()
    elif label.startswith("Softmax"):
        model, x, y = nn.Linear(784, 10), torch.randn(100, 784), torch.randint(0, 10, (100,))
        loss_fn = nn.CrossEntropyLoss()
    elif label.startswith("MLP"):
        model = torch_models.mlp()
        x, y, loss_fn = torch.randn(100, 784), torch.randint(0, 10, (100,)), nn.CrossEntropyLoss()
    elif label.startswith("LeNet"):
        model = torch_models.lenet()
        x, y, loss_fn = (
            torch.randn(100, 1, 28, 28),
            torch.randint(0, 10, (100,)),
            nn.CrossEntropyLoss(),
        )
    else:
        return _torch_charlm(vocab)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)

    def step():
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()

    return step


def _torch_charlm(vocab: int):
    import torch
    from torch import nn

    embed, lstm, decoder = nn.Embedding(vocab, 256), nn.LSTM(256, 256), nn.Linear(256, vocab)
    params = [*embed.parameters(), *lstm.parameters(), *decoder.parameters()]
    optimizer = torch.optim.SGD(params, lr=LR)
    x, y = torch.randint(0, vocab, (100, 128)), torch.randint(0, vocab, (100 * 128,))
    loss_fn = nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad()
        hidden, _ = lstm(embed(x))
        loss_fn(decoder(hidden.reshape(-1, 256)), y).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--vocab", type=int, default=84, help="Hiawatha's character vocabulary")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    rows = []
    for label, (symbol, shapes, classes) in _models(args.vocab).items():
        repeats = max(3, args.repeats // 4) if label.startswith("CharLM") else args.repeats
        step, _ = graphc_step(symbol, shapes, classes)
        ours = median_seconds(step, repeats)
        if torch is None:
            rows.append([label, ours * 1e3, "-", "-"])
            continue
        peer = median_seconds(torch_step(label, args.vocab), repeats)
        rows.append([label, ours * 1e3, peer * 1e3, peer / ours])
    print_table(
        ["training step", "graphc ms", "PyTorch eager ms", "speed-up (PyTorch / graphc)"], rows
    )


if __name__ == "__main__":
    main()
