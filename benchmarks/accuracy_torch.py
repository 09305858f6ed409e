"""The peer for the accuracy table: the seed models trained by PyTorch with the settings of
graphc's examples, on the same data, so README's accuracies can be compared.

    .venv/bin/pip install torch==2.13.0   # the peer only; graphc does not use it
    .venv/bin/python benchmarks/accuracy_torch.py --model lenet --epochs 2

Same architecture, initialization (Glorot uniform weights, zero biases: MXNet's Xavier with
magnitude 3), optimizer and hyper-parameters (weight decay as in MXNet's SGD: added to the
batch-mean gradient), batch size, epochs and data order (unshuffled, or shuffled by the same
seeded NumPy permutation) as ``examples/*.py``. Data come from ``graphc.data.datasets`` so both
sides read identical arrays. Prints one line per epoch and a final ``RESULT`` line.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch_models
from torch import nn

import graphc as gc

SETTINGS = {
    "softmax": {"lr": 0.1, "momentum": 0.0, "wd": 0.0, "batch": 100, "epochs": 10},
    "mlp": {"lr": 0.1, "momentum": 0.0, "wd": 0.0, "batch": 100, "epochs": 10},
    "lenet": {"lr": 0.05, "momentum": 0.9, "wd": 1e-5, "batch": 100, "epochs": 2},
}
"""The hyper-parameters the examples use (examples/mnist_softmax.py, mnist_mlp.py, lenet.py)."""


def build(name: str) -> nn.Module:
    if name == "softmax":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    elif name == "mlp":
        model = nn.Sequential(nn.Flatten(), torch_models.mlp())
    else:
        model = torch_models.lenet()
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def train_classifier(name: str, epochs: int, data_dir: str | None, shuffle: bool) -> float:
    settings = SETTINGS[name]
    train_x, train_y, test_x, test_y = gc.datasets.fashion_mnist(path=data_dir)
    torch.manual_seed(0)
    model = build(name)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=settings["lr"],
        momentum=settings["momentum"],
        weight_decay=settings["wd"],
    )
    loss_fn = nn.CrossEntropyLoss()
    batch = settings["batch"]
    rng = np.random.default_rng(0)
    inputs, labels = torch.from_numpy(train_x), torch.from_numpy(train_y).long()
    for epoch in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(len(train_x)) if shuffle else np.arange(len(train_x))
        total = 0.0
        for first in range(0, len(order) - batch + 1, batch):
            index = torch.from_numpy(order[first : first + batch])
            optimizer.zero_grad()
            loss = loss_fn(model(inputs[index]), labels[index])
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        accuracy = evaluate(model, test_x, test_y)
        batches = len(order) // batch
        print(
            f"epoch {epoch + 1}: train loss {total / batches:.4f}, test accuracy {accuracy:.4f},"
            f" {time.perf_counter() - start:.1f} s"
        )
    return accuracy


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        predictions = model(torch.from_numpy(images)).argmax(dim=1).numpy()
    return float(np.mean(predictions == labels))


def train_charlm(epochs: int, lr: float, seq_len: int = 100, batch: int = 128) -> float:
    """Embedding 256, one LSTM layer of 256, decoder; truncated BPTT with the state carried
    across batches; Adam; Glorot-uniform weights and zero biases, as graphc's ``fit``
    initializes them. Returns the training perplexity of the last epoch."""
    text = gc.datasets.text()
    vocab = len(text.vocab)
    columns = len(text.data) // batch
    streams = text.data[: columns * batch].reshape(batch, columns)
    torch.manual_seed(0)
    embed, lstm, decoder = nn.Embedding(vocab, 256), nn.LSTM(256, 256), nn.Linear(256, vocab)
    params = [*embed.parameters(), *lstm.parameters(), *decoder.parameters()]
    for param in params:  # graphc's default: Glorot-uniform weights, zero biases
        if param.dim() > 1:
            nn.init.xavier_uniform_(param)
        else:
            nn.init.zeros_(param)
    optimizer = torch.optim.Adam(params, lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        state = None
        total, count = 0.0, 0
        for first in range(0, columns - seq_len - 1 + 1, seq_len):
            window = torch.from_numpy(streams[:, first : first + seq_len + 1].T.astype(np.int64))
            if window.shape[0] < seq_len + 1:
                break
            loss, state = torch_models.charlm_step(
                embed, lstm, decoder, optimizer, loss_fn, window, state, vocab
            )
            total += float(loss.detach())
            count += 1
        perplexity = math.exp(total / count)
        print(f"epoch {epoch + 1}: train perplexity {perplexity:.2f} over {count} batches")
    return perplexity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*SETTINGS, "charlm"], required=True)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--shuffle", action="store_true")
    parser.add_argument("--lr", type=float, default=0.01, help="charlm's Adam learning rate")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.model == "charlm":
        result = train_charlm(args.epochs or 1, args.lr)
        print(f"RESULT charlm perplexity {result:.3f}")
        return
    epochs = args.epochs or SETTINGS[args.model]["epochs"]
    accuracy = train_classifier(args.model, epochs, args.data_dir, args.shuffle)
    print(f"RESULT {args.model} test accuracy {accuracy:.4f} after {epochs} epochs")


if __name__ == "__main__":
    main()
