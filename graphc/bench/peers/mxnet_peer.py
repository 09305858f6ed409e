"""MXNet 1.9.1 with Gluon, as an MXNet user writes a fast loop: the network and loss
hybridized (``static_alloc=True, static_shape=True``), ``autograd.record``,
``loss.backward()`` and ``trainer.step(n)``.

Gluon's losses give one value per sample (per character for CharLM) and ``backward`` sums
them; ``trainer.step(n)`` scales the gradient by ``1 / n``, so the update is on the mean
loss, as every other system's. ``L2Loss`` is half the squared error, graphc's LinReg loss.
Gluon's ``Dense``, ``Conv2D`` and ``rnn.LSTM`` hold their weights in graphc's (MXNet's)
layouts. Threads: MXNet's default (its engine, OpenMP in oneDNN).
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
import peer_protocol
from mxnet import autograd, gluon
from mxnet.gluon import nn, rnn


class CharLM(gluon.HybridBlock):
    def __init__(self, vocab: int, embed: int, hidden: int) -> None:
        super().__init__()
        with self.name_scope():
            self.embed = nn.Embedding(vocab, embed)
            self.lstm = rnn.LSTM(hidden, layout="TNC", input_size=embed)
            self.decoder = nn.Dense(vocab, flatten=False, in_units=hidden)

    def hybrid_forward(self, F, window, state, state_cell):
        hidden, (state, state_cell) = self.lstm(self.embed(window), [state, state_cell])
        return self.decoder(hidden).reshape((-3, -2)), state, state_cell  # (T * N, vocab)


def build(task: peer_protocol.Task):
    """The network and its parameters in graphc's order of names."""
    settings = task.settings
    if task.model == "charlm":
        net = CharLM(settings["vocab_size"], settings["embed"], settings["hidden"])
        # Gluon's LSTM lists i2h weight, h2h weight, i2h bias, h2h bias: graphc's order.
        lstm = list(net.lstm.collect_params().values())
        return net, [net.embed.weight, *lstm, *_dense(net.decoder)]
    net = nn.HybridSequential()
    if task.model == "linreg":
        net.add(nn.Dense(1, in_units=13))
    elif task.model == "softmax":
        net.add(nn.Dense(10, in_units=784))
    elif task.model == "mlp":
        hidden = settings["hidden"]
        net.add(nn.Dense(hidden, activation="relu", in_units=784), nn.Dense(10, in_units=hidden))
    else:
        net.add(
            nn.Conv2D(20, 5, activation="tanh", in_channels=1), nn.MaxPool2D(2, 2),
            nn.Conv2D(50, 5, activation="tanh", in_channels=20), nn.MaxPool2D(2, 2),
            nn.Dense(500, activation="tanh", in_units=800), nn.Dense(10, in_units=500),
        )  # fmt: skip
    params = [p for block in net if isinstance(block, (nn.Dense, nn.Conv2D)) for p in _dense(block)]
    return net, params


def _dense(block) -> list:
    return [block.weight, block.bias]


class Trainer:
    def __init__(self, task: peer_protocol.Task) -> None:
        self.task = task
        self.net, self.params = build(task)
        self.net.initialize()
        self.loss_fn = gluon.loss.L2Loss() if task.model == "linreg" else (
            gluon.loss.SoftmaxCrossEntropyLoss()
        )  # fmt: skip
        self.net.hybridize(static_alloc=True, static_shape=True)
        self.loss_fn.hybridize(static_alloc=True, static_shape=True)
        self.reset()

    def reset(self) -> None:
        initial = self.task.initial()
        for param, (name, _) in zip(self.params, self.task.settings["params"]):
            param.set_data(mx.nd.array(initial[name]))
        settings = self.task.settings
        options = {"learning_rate": settings["learning_rate"]}
        if settings["optimizer"] == "sgd":
            options.update(momentum=settings.get("momentum", 0.0), wd=settings.get("wd", 0.0))
        self.trainer = gluon.Trainer(self.net.collect_params(), settings["optimizer"], options)

    def prepare(self, x, y):
        if self.task.model == "charlm":
            return mx.nd.array(x), mx.nd.array(y.reshape(-1))
        return mx.nd.array(x), mx.nd.array(y.astype(np.float32))

    def start_epoch(self) -> None:
        if self.task.model == "charlm":
            shape = (1, self.task.batch, self.task.settings["hidden"])
            self.state = [mx.nd.zeros(shape), mx.nd.zeros(shape)]

    def step(self, x, y):
        with autograd.record():
            if self.task.model == "charlm":
                logits, state, state_cell = self.net(x, *self.state)
                self.state = [state.detach(), state_cell.detach()]
            else:
                logits = self.net(x)
            loss = self.loss_fn(logits, y)
        loss.backward()
        self.trainer.step(loss.shape[0])
        return loss.mean()

    def loss_value(self, loss) -> float:
        return float(loss.asscalar())

    def sync(self) -> None:
        mx.nd.waitall()

    def predict(self, x):
        return self.net(mx.nd.array(x)).asnumpy()


def main() -> None:
    args = peer_protocol.arguments()
    task = peer_protocol.Task(args.task)
    peer_protocol.run(task, args, Trainer, f"MXNet {mx.__version__}")


if __name__ == "__main__":
    main()
