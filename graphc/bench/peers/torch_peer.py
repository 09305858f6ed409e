"""PyTorch, eager (``--mode eager``) or with ``torch.compile`` (``--mode compile``).

The models are ``nn.Module``s as a PyTorch user writes them (``nn.Linear``, ``nn.Conv2d``,
``nn.LSTM``, ...), trained with ``torch.optim`` on ``nn.CrossEntropyLoss`` / half of
``nn.MSELoss`` (LinReg: graphc's loss is half the squared error), batches already in
tensors. ``torch.compile`` compiles the model's forward (and so its backward) at the first
step; the optimizer stays eager. Threads: PyTorch's default.
"""

from __future__ import annotations

import numpy as np
import peer_protocol
import torch
from torch import nn


def build(task: peer_protocol.Task) -> nn.Module:
    settings = task.settings
    if task.model == "linreg":
        return nn.Sequential(nn.Linear(13, 1))
    if task.model == "softmax":
        return nn.Sequential(nn.Linear(784, 10))
    if task.model == "mlp":
        hidden = settings["hidden"]
        return nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    if task.model == "lenet":
        return nn.Sequential(
            nn.Conv2d(1, 20, 5), nn.Tanh(), nn.MaxPool2d(2, 2),
            nn.Conv2d(20, 50, 5), nn.Tanh(), nn.MaxPool2d(2, 2),
            nn.Flatten(), nn.Linear(800, 500), nn.Tanh(), nn.Linear(500, 10),
        )  # fmt: skip
    return CharLM(settings["vocab_size"], settings["embed"], settings["hidden"])


class CharLM(nn.Module):
    """Embedding, one LSTM layer, a decoder over the vocabulary at every step."""

    def __init__(self, vocab: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, window, state):
        hidden, state = self.lstm(self.embed(window), state)
        return self.decoder(hidden).flatten(0, 1), state


def graphc_names(task: peer_protocol.Task, model: nn.Module) -> dict[str, torch.Tensor]:
    """The module's parameters under graphc's names (the layouts are the same)."""
    if task.model == "charlm":
        return {
            "embed_weight": model.embed.weight,
            "lstm_i2h_weight": model.lstm.weight_ih_l0,
            "lstm_h2h_weight": model.lstm.weight_hh_l0,
            "lstm_i2h_bias": model.lstm.bias_ih_l0,
            "lstm_h2h_bias": model.lstm.bias_hh_l0,
            "decoder_weight": model.decoder.weight,
            "decoder_bias": model.decoder.bias,
        }
    layers = [m for m in model if isinstance(m, (nn.Linear, nn.Conv2d))]
    names = {
        "linreg": ["fc"],
        "softmax": ["fc"],
        "mlp": ["fc1", "fc2"],
        "lenet": ["conv1", "conv2", "fc1", "fc2"],
    }[task.model]
    found = {}
    for name, layer in zip(names, layers):
        found[f"{name}_weight"], found[f"{name}_bias"] = layer.weight, layer.bias
    return found


class Trainer:
    def __init__(self, task: peer_protocol.Task, mode: str) -> None:
        self.task = task
        self.model = build(task)
        self.forward = torch.compile(self.model) if mode == "compile" else self.model
        self.state = None
        self.reset()

    def reset(self) -> None:
        with torch.no_grad():
            for name, param in graphc_names(self.task, self.model).items():
                param.copy_(torch.from_numpy(self.task.initial()[name]))
        settings = self.task.settings
        if settings["optimizer"] == "adam":
            self.optimizer = torch.optim.Adam(
                self.model.parameters(), lr=settings["learning_rate"], eps=1e-8
            )
        else:
            self.optimizer = torch.optim.SGD(
                self.model.parameters(),
                lr=settings["learning_rate"],
                momentum=settings.get("momentum", 0.0),
                weight_decay=settings.get("wd", 0.0),
            )

    def prepare(self, x, y):
        if self.task.model == "linreg":
            return torch.from_numpy(x), torch.from_numpy(y).reshape(-1, 1)
        return torch.from_numpy(x.astype(np.int64) if self.task.model == "charlm" else x), (
            torch.from_numpy(y.astype(np.int64)).reshape(-1)
        )

    def start_epoch(self) -> None:
        """CharLM's state starts each epoch from zeros (tensors, not None, so that
        torch.compile traces one graph for every window)."""
        if self.task.model == "charlm":
            zeros = torch.zeros(1, self.task.batch, self.task.settings["hidden"])
            self.state = (zeros, zeros.clone())

    def step(self, x, y):
        self.optimizer.zero_grad()
        if self.task.model == "charlm":
            logits, state = self.forward(x, self.state)
            self.state = tuple(part.detach() for part in state)
            loss = nn.functional.cross_entropy(logits, y)
        elif self.task.model == "linreg":
            loss = 0.5 * nn.functional.mse_loss(self.forward(x), y)
        else:
            loss = nn.functional.cross_entropy(self.forward(x), y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def loss_value(self, loss) -> float:
        return float(loss)

    def predict(self, x):
        with torch.no_grad():
            return self.model(torch.from_numpy(x)).numpy()


def _threads(count: int) -> str:
    return f"{count} thread" + ("" if count == 1 else "s")


def main() -> None:
    args = peer_protocol.arguments(modes=("eager", "compile"))
    task = peer_protocol.Task(args.task)
    peer_protocol.run(
        task,
        args,
        lambda task: Trainer(task, args.mode),
        f"PyTorch {torch.__version__}, {_threads(torch.get_num_threads())}",
    )


if __name__ == "__main__":
    main()
