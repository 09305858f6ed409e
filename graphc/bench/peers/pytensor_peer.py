"""PyTensor, with the C backend (``--mode C``) or Numba (``--mode NUMBA``).

The training step (forward, ``pt.grad``, the update: SGD with momentum and weight decay as
MXNet's, or Adam in MXNet's form) is one ``pytensor.function`` with the parameters and the
optimizer state in shared variables and the update in ``updates``; the loop over the NumPy
batches is Python, as a PyTensor user writes it. ``--mode C`` is PyTensor's ``CVM`` (each
op's C code built by gcc, the graph run by the C VM, as ``FAST_RUN``): the mode PyTensor
names ``C`` aborts in 3.0.7 on these graphs (an assertion in a ``Subtensor``'s C code). A
pip-installed PyTensor finds no BLAS to link on Debian, so ``graphc bench`` points the C
backend at the system OpenBLAS (``PYTENSOR_FLAGS=blas__ldflags=-lopenblas``, after
``apt-get install libopenblas-dev``); without it the products fall back to Python.

PyTensor 3 has no 2-D convolution or pooling op for LeNet, so its convolutions are written
as im2col (the 25 shifted slices of the input stacked, then one ``dot``) and its max pooling
as a reshape and the window's first maximum; ``pt.grad`` differentiates both. CharLM's LSTM is a
``pytensor.scan`` over the window, its state carried into the next window in shared
variables (the gradient stops there: the state is not a parameter).
"""

from __future__ import annotations

import numpy as np
import peer_protocol
import pytensor
import pytensor.tensor as pt
from pytensor.tensor.special import log_softmax

MODES = {"NUMBA": "NUMBA", "C": "CVM"}  # --mode: PyTensor's mode


def dense(params, name, x):
    return x @ params[f"{name}_weight"].T + params[f"{name}_bias"]


def conv(params, name, x):
    """A valid, stride-1 convolution of ``x`` (N, C, H, W, static C, H, W) as im2col: each
    output pixel's k x k window a row, one product with the filters (F, C, k, k)."""
    weight = params[f"{name}_weight"]
    filters, channels, k, _ = weight.get_value(borrow=True).shape
    out_h, out_w = x.type.shape[2] - k + 1, x.type.shape[3] - k + 1
    shifted = [x[:, :, i : i + out_h, j : j + out_w] for i in range(k) for j in range(k)]
    windows = pt.stack(shifted, axis=2)  # (N, C, k * k, OH, OW)
    rows = windows.transpose(0, 3, 4, 1, 2).reshape((-1, channels * k * k))
    out = rows @ weight.reshape((filters, -1)).T + params[f"{name}_bias"]
    return out.reshape((x.shape[0], out_h, out_w, filters)).transpose(0, 3, 1, 2)


def max_pool(x):
    """2x2 max pooling, stride 2, of ``x`` (N, C, H, W, static C, H, W). The first maximum
    of a window is picked by ``argmax``, so that its gradient goes to that one as in the
    other systems (``max``'s gradient goes to every maximum, and Fashion-MNIST's blank
    background makes many windows ties)."""
    _, channels, height, width = x.type.shape
    half_h, half_w = height // 2, width // 2
    windows = x.reshape((x.shape[0], channels, half_h, 2, half_w, 2))
    windows = windows.transpose(0, 1, 2, 4, 3, 5).reshape((-1, channels, half_h, half_w, 4))
    first_max = pt.eq(pt.arange(4), pt.argmax(windows, axis=-1, keepdims=True))
    return (windows * first_max).sum(axis=-1)


def lstm(params, inputs, state, hidden: int):
    """One LSTM layer over time-major ``inputs`` (T, N, E) from ``state`` (h, c), as a
    ``scan``; gates i, f, g, o as MXNet's. The hidden states (T, N, H) and the last cells."""
    projected = pt.dot(inputs, params["lstm_i2h_weight"].T) + params["lstm_i2h_bias"]
    projected = projected + params["lstm_h2h_bias"]

    def cell(z_in, h, c, h2h_weight):
        z = z_in + h @ h2h_weight.T
        i = pt.sigmoid(z[:, :hidden])
        f = pt.sigmoid(z[:, hidden : 2 * hidden])
        g = pt.tanh(z[:, 2 * hidden : 3 * hidden])
        o = pt.sigmoid(z[:, 3 * hidden :])
        c = f * c + i * g
        return o * pt.tanh(c), c

    hiddens, cells = pytensor.scan(
        cell,
        sequences=projected,
        outputs_info=list(state),
        non_sequences=[params["lstm_h2h_weight"]],
        return_updates=False,
    )
    return hiddens, cells[-1]


def cross_entropy(logits, labels):
    return -pt.mean(log_softmax(logits, axis=1)[pt.arange(labels.shape[0]), labels])


class Trainer:
    def __init__(self, task: peer_protocol.Task, mode: str) -> None:
        pytensor.config.floatX = "float32"
        self.task = task
        self.settings = task.settings
        initial = task.initial()
        self.names = [name for name, _ in self.settings["params"]]
        self.shared = {name: pytensor.shared(initial[name], name=name) for name in self.names}
        self.slots = [
            {name: pytensor.shared(np.zeros_like(initial[name])) for name in self.names}
            for _ in range(2 if self.settings["optimizer"] == "adam" else 1)
        ]  # SGD's velocity; Adam's mean and variance
        self.num_update = pytensor.shared(np.float64(0.0))
        zeros = np.zeros((task.batch, self.settings.get("hidden", 0)), np.float32)
        self.state = (pytensor.shared(zeros), pytensor.shared(zeros.copy()))
        x, y, loss, output, state_updates = self._graph()
        grads = pt.grad(loss, [self.shared[name] for name in self.names])
        updates = self._updates(dict(zip(self.names, grads))) + state_updates
        self.train_step = pytensor.function([x, y], loss, updates=updates, mode=MODES[mode])
        if output is not None:
            self.predict_fn = pytensor.function([x], output, mode=MODES[mode])

    def _graph(self):
        """The inputs, the loss, the output to predict from (None for CharLM) and the
        updates of the carried state."""
        p, model = self.shared, self.task.model
        if model == "charlm":
            x, y = pt.imatrix("x"), pt.imatrix("y")  # (T, N), time-major
            embedded = p["embed_weight"][x.flatten()].reshape((x.shape[0], x.shape[1], -1))
            hiddens, cell = lstm(p, embedded, self.state, self.settings["hidden"])
            logits = dense(p, "decoder", hiddens.reshape((-1, self.settings["hidden"])))
            updates = [(self.state[0], hiddens[-1]), (self.state[1], cell)]
            return x, y, cross_entropy(logits, y.flatten()), None, updates
        if model == "lenet":
            image_shape = self.task.arrays["train_x"].shape[1:]
            x = pt.tensor("x", dtype="float32", shape=(None, *image_shape))
            pool1 = max_pool(pt.tanh(conv(p, "conv1", x)))
            pool2 = max_pool(pt.tanh(conv(p, "conv2", pool1)))
            output = dense(p, "fc2", pt.tanh(dense(p, "fc1", pool2.flatten(2))))
        else:
            x = pt.matrix("x", dtype="float32")
            if model == "mlp":
                output = dense(p, "fc2", pt.maximum(dense(p, "fc1", x), 0))
            else:
                output = dense(p, "fc", x)
        if model == "linreg":
            y = pt.matrix("y", dtype="float32")
            return x, y, 0.5 * pt.mean((output - y) ** 2), output, []
        y = pt.vector("y", dtype="int32")
        return x, y, cross_entropy(output, y), output, []

    def _updates(self, grads):
        lr = self.settings["learning_rate"]
        updates = []
        if self.settings["optimizer"] == "adam":
            beta1, beta2, eps = 0.9, 0.999, 1e-8
            step = self.num_update + 1
            lr_t = pt.cast(lr * pt.sqrt(1 - beta2**step) / (1 - beta1**step), "float32")
            updates.append((self.num_update, step))
            for name, grad in grads.items():
                mean, variance = self.slots[0][name], self.slots[1][name]
                new_mean = beta1 * mean + (1 - beta1) * grad
                new_variance = beta2 * variance + (1 - beta2) * grad * grad
                param = self.shared[name]
                new_param = param - lr_t * new_mean / (pt.sqrt(new_variance) + eps)
                updates += [(mean, new_mean), (variance, new_variance), (param, new_param)]
            return updates
        momentum, wd = self.settings.get("momentum", 0.0), self.settings.get("wd", 0.0)
        for name, grad in grads.items():
            velocity, param = self.slots[0][name], self.shared[name]
            new_velocity = momentum * velocity - lr * (grad + wd * param)
            updates += [(velocity, new_velocity), (param, param + new_velocity)]
        return updates

    def reset(self) -> None:
        for name, value in self.task.initial().items():
            self.shared[name].set_value(value)
            for slot in self.slots:
                slot[name].set_value(np.zeros_like(value))
        self.num_update.set_value(np.float64(0.0))

    def prepare(self, x, y):
        if self.task.model == "linreg":
            return x, y.reshape(-1, 1)
        return x, y

    def start_epoch(self) -> None:
        for part in self.state:
            part.set_value(np.zeros_like(part.get_value(borrow=True)))

    def step(self, x, y):
        return self.train_step(x, y)

    def loss_value(self, loss) -> float:
        return float(loss)

    def predict(self, x):
        return self.predict_fn(x)


def main() -> None:
    args = peer_protocol.arguments(modes=tuple(MODES))
    task = peer_protocol.Task(args.task)
    version = f"PyTensor {pytensor.__version__} ({MODES[args.mode]})"
    peer_protocol.run(task, args, lambda task: Trainer(task, args.mode), version)


if __name__ == "__main__":
    main()
