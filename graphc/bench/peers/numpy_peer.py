"""The no-framework baseline: forward and backward written by hand in NumPy.

LinReg, softmax regression and the MLP are a few matrix products each. LeNet's
convolutions are im2col (the 5x5 windows of ``sliding_window_view`` as rows) and one
matrix product, their input gradient the windows' gradients added back at their 25
offsets; its activations are channels-last inside (so each convolution's output is the
product's rows as they come), flattened in the channels-first order of the other systems.
CharLM's LSTM is a loop over time storing each step's gates, and its backward a loop back
through the window (truncated back-propagation: the state carried into the next window has
no gradient). The update is SGD (momentum and weight decay as MXNet's) or Adam (MXNet's
form, as graphc's) on the batch-mean loss, in place.
"""

from __future__ import annotations

import math

import numpy as np
import peer_protocol
from numpy.lib.stride_tricks import sliding_window_view


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean cross-entropy of ``logits`` (rows) and its gradient wrt the logits."""
    rows = np.arange(len(labels))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -float(np.mean(log_probs[rows, labels]))
    grad = np.exp(log_probs)
    grad[rows, labels] -= 1
    return loss, grad / len(labels)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))  # the same function, without exp's overflow


class Trainer:
    """What every model shares: the parameters, the optimizer state and its update."""

    def __init__(self, task: peer_protocol.Task) -> None:
        self.task = task
        self.settings = task.settings
        self.reset()

    def reset(self) -> None:
        self.params = self.task.initial()
        self.velocity = {name: np.zeros_like(value) for name, value in self.params.items()}
        self.variance = {name: np.zeros_like(value) for name, value in self.params.items()}
        # SGD's velocity; Adam's mean (in ``velocity``), its variance and step count
        self.num_update = 0

    def prepare(self, x, y):
        return np.ascontiguousarray(x), y.astype(np.int64)

    def start_epoch(self) -> None:
        pass

    def loss_value(self, loss: float) -> float:
        return loss

    def update(self, grads: dict[str, np.ndarray]) -> None:
        if self.settings["optimizer"] == "adam":
            self._adam(grads)
        else:
            self._sgd(grads)

    def _sgd(self, grads) -> None:
        lr = self.settings["learning_rate"]
        momentum, wd = self.settings.get("momentum", 0.0), self.settings.get("wd", 0.0)
        for name, grad in grads.items():
            if wd:
                grad = grad + wd * self.params[name]
            if momentum:
                self.velocity[name] *= momentum
                self.velocity[name] -= lr * grad
                self.params[name] += self.velocity[name]
            else:
                self.params[name] -= lr * grad

    def _adam(self, grads, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        """MXNet's Adam: the bias correction folded into the step size."""
        self.num_update += 1
        t = self.num_update
        lr = self.settings["learning_rate"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        for name, grad in grads.items():
            mean, variance = self.velocity[name], self.variance[name]
            mean *= beta1
            mean += (1 - beta1) * grad
            variance *= beta2
            variance += (1 - beta2) * grad * grad
            self.params[name] -= lr * mean / (np.sqrt(variance) + eps)


class DenseTrainer(Trainer):
    """LinReg, softmax regression, the MLP: dense layers, ReLU between them."""

    def __init__(self, task: peer_protocol.Task) -> None:
        if task.model == "mlp":
            self.layers = [("fc1_weight", "fc1_bias"), ("fc2_weight", "fc2_bias")]
        else:
            self.layers = [("fc_weight", "fc_bias")]
        super().__init__(task)

    def prepare(self, x, y):
        if self.task.model == "linreg":
            return np.ascontiguousarray(x), y.reshape(-1, 1)
        return super().prepare(x, y)

    def forward(self, x):
        """The output and each layer's input, for the backward pass."""
        inputs = []
        for index, (weight, bias) in enumerate(self.layers):
            inputs.append(x)
            x = x @ self.params[weight].T + self.params[bias]
            if index < len(self.layers) - 1:
                x = np.maximum(x, 0)
        return x, inputs

    def step(self, x, y) -> float:
        out, inputs = self.forward(x)
        if self.task.model == "linreg":
            residual = out - y
            loss = 0.5 * float(np.mean(residual**2))
            grad = residual / len(x)
        else:
            loss, grad = softmax_cross_entropy(out, y)
        grads = {}
        for index in reversed(range(len(self.layers))):
            weight, bias = self.layers[index]
            grads[weight] = grad.T @ inputs[index]
            grads[bias] = grad.sum(axis=0)
            if index:
                grad = (grad @ self.params[weight]) * (inputs[index] > 0)
        self.update(grads)
        return loss

    def predict(self, x):
        return self.forward(x)[0]


def conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray):
    """A valid, stride-1 convolution of channels-last ``x`` (N, H, W, C) by ``weight``
    (F, C, k, k): (N, H - k + 1, W - k + 1, F), and the im2col rows for the backward."""
    filters = weight.shape[0]
    k = weight.shape[-1]
    windows = sliding_window_view(x, (k, k), axis=(1, 2))  # (N, OH, OW, C, k, k)
    rows = windows.reshape(-1, windows[0, 0, 0].size)  # a copy: one row per output pixel
    out = rows @ weight.reshape(filters, -1).T + bias
    return out.reshape(*windows.shape[:3], filters), rows


def conv_backward(grad_out, rows, weight, input_shape=None):
    """The gradients of :func:`conv` wrt its weight, bias and (given its shape) input."""
    filters, channels, k, _ = weight.shape
    grad_rows_out = grad_out.reshape(-1, filters)
    grad_weight = (grad_rows_out.T @ rows).reshape(weight.shape)
    grad_bias = grad_rows_out.sum(axis=0)
    if input_shape is None:
        return grad_weight, grad_bias, None
    batch, out_h, out_w, _ = grad_out.shape
    grad_windows = grad_rows_out @ weight.reshape(filters, -1)
    grad_windows = grad_windows.reshape(batch, out_h, out_w, channels, k, k)
    grad_input = np.zeros(input_shape, grad_out.dtype)  # col2im: each offset's share added back
    for i in range(k):
        for j in range(k):
            grad_input[:, i : i + out_h, j : j + out_w, :] += grad_windows[..., i, j]
    return grad_weight, grad_bias, grad_input


def max_pool(x: np.ndarray):
    """2x2 max pooling, stride 2, of channels-last ``x``; and which of the 4 won each
    window (the first of equals, as the other systems route the gradient)."""
    batch, height, width, channels = x.shape
    half_h, half_w = height // 2, width // 2
    windows = x.reshape(batch, half_h, 2, half_w, 2, channels)
    windows = windows.transpose(0, 1, 3, 5, 2, 4).reshape(batch, half_h, half_w, channels, 4)
    winner = windows.argmax(axis=-1)[..., None]
    return np.take_along_axis(windows, winner, axis=-1)[..., 0], winner


def max_pool_backward(grad_out: np.ndarray, winner: np.ndarray) -> np.ndarray:
    batch, out_h, out_w, channels = grad_out.shape
    grad_windows = np.zeros((*grad_out.shape, 4), grad_out.dtype)
    np.put_along_axis(grad_windows, winner, grad_out[..., None], axis=-1)
    grad_windows = grad_windows.reshape(batch, out_h, out_w, channels, 2, 2)
    return grad_windows.transpose(0, 1, 4, 2, 5, 3).reshape(batch, 2 * out_h, 2 * out_w, -1)


class LeNetTrainer(Trainer):
    """conv 5x5 (20), tanh, max pool 2x2; conv 5x5 (50), tanh, max pool 2x2; dense 500,
    tanh; dense 10."""

    def prepare(self, x, y):
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y.astype(np.int64)

    def forward(self, x):
        """The class scores of channels-last images, and what the backward needs."""
        p = self.params
        conv1, rows1 = conv(x, p["conv1_weight"], p["conv1_bias"])
        tanh1 = np.tanh(conv1)
        pool1, winner1 = max_pool(tanh1)
        conv2, rows2 = conv(pool1, p["conv2_weight"], p["conv2_bias"])
        tanh2 = np.tanh(conv2)
        pool2, winner2 = max_pool(tanh2)
        flat = pool2.transpose(0, 3, 1, 2).reshape(len(x), -1)  # channels-first, as Flatten
        tanh3 = np.tanh(flat @ p["fc1_weight"].T + p["fc1_bias"])
        scores = tanh3 @ p["fc2_weight"].T + p["fc2_bias"]
        saved = dict(rows1=rows1, tanh1=tanh1, winner1=winner1, pool1=pool1, rows2=rows2,
                     tanh2=tanh2, winner2=winner2, pool2=pool2, flat=flat, tanh3=tanh3)  # fmt: skip
        return scores, saved

    def step(self, x, y) -> float:
        p = self.params
        scores, saved = self.forward(x)
        loss, grad = softmax_cross_entropy(scores, y)
        grads = {"fc2_weight": grad.T @ saved["tanh3"], "fc2_bias": grad.sum(axis=0)}
        grad = (grad @ p["fc2_weight"]) * (1 - saved["tanh3"] ** 2)
        grads["fc1_weight"], grads["fc1_bias"] = grad.T @ saved["flat"], grad.sum(axis=0)
        grad = grad @ p["fc1_weight"]
        pool2 = saved["pool2"]
        grad = grad.reshape(pool2.shape[0], pool2.shape[3], *pool2.shape[1:3])
        grad = max_pool_backward(grad.transpose(0, 2, 3, 1), saved["winner2"])
        grad = grad * (1 - saved["tanh2"] ** 2)
        grads["conv2_weight"], grads["conv2_bias"], grad = conv_backward(
            grad, saved["rows2"], p["conv2_weight"], saved["pool1"].shape
        )
        grad = max_pool_backward(grad, saved["winner1"]) * (1 - saved["tanh1"] ** 2)
        grads["conv1_weight"], grads["conv1_bias"], _ = conv_backward(
            grad, saved["rows1"], p["conv1_weight"]
        )
        self.update(grads)
        return loss

    def predict(self, x):
        return self.forward(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))[0]


class CharLMTrainer(Trainer):
    """Embedding, one LSTM layer (gates i, f, g, o as MXNet's), a dense decoder at every
    step; each stream's state carried from one window into the next."""

    def start_epoch(self) -> None:
        zeros = np.zeros((self.task.batch, self.settings["hidden"]), np.float32)
        self.state = (zeros, zeros.copy())

    def step(self, x, y) -> float:
        p = self.params
        steps, batch = x.shape
        hidden = self.settings["hidden"]
        embedded = p["embed_weight"][x].reshape(steps * batch, -1)
        projected = embedded @ p["lstm_i2h_weight"].T + p["lstm_i2h_bias"] + p["lstm_h2h_bias"]
        lstm = self.lstm_forward(projected.reshape(steps, batch, -1))
        outputs = lstm["hiddens"][1:].reshape(steps * batch, hidden)
        logits = outputs @ p["decoder_weight"].T + p["decoder_bias"]
        loss, grad = softmax_cross_entropy(logits, y.reshape(-1))
        self.state = (lstm["hiddens"][-1].copy(), lstm["cells"][-1].copy())
        grads = {"decoder_weight": grad.T @ outputs, "decoder_bias": grad.sum(axis=0)}
        grad_outputs = (grad @ p["decoder_weight"]).reshape(steps, batch, hidden)
        grad_gates = self.lstm_backward(grad_outputs, lstm).reshape(steps * batch, -1)
        grads["lstm_h2h_weight"] = grad_gates.T @ lstm["hiddens"][:-1].reshape(-1, hidden)
        grads["lstm_i2h_weight"] = grad_gates.T @ embedded
        grads["lstm_i2h_bias"] = grad_gates.sum(axis=0)
        grads["lstm_h2h_bias"] = grads["lstm_i2h_bias"].copy()
        grads["embed_weight"] = np.zeros_like(p["embed_weight"])
        np.add.at(grads["embed_weight"], x.reshape(-1), grad_gates @ p["lstm_i2h_weight"])
        self.update(grads)
        return loss

    def lstm_forward(self, projected: np.ndarray) -> dict[str, np.ndarray]:
        """Run the LSTM over ``projected`` (steps, batch, 4H: the inputs' share of the
        gates) from ``self.state``; keep each step's activated gates, cells, their tanh and
        the hidden states (index 0 the state it started from)."""
        steps, batch, four_hidden = projected.shape
        hidden = four_hidden // 4
        h2h_weight = self.params["lstm_h2h_weight"]
        gates = np.empty_like(projected)
        hiddens = np.empty((steps + 1, batch, hidden), projected.dtype)
        cells = np.empty_like(hiddens)
        tanh_cells = np.empty_like(hiddens[1:])
        hiddens[0], cells[0] = self.state
        for t in range(steps):
            z = projected[t] + hiddens[t] @ h2h_weight.T
            gate = gates[t]
            gate[:] = sigmoid(z)
            gate[:, 2 * hidden : 3 * hidden] = np.tanh(z[:, 2 * hidden : 3 * hidden])
            i, f, g, o = np.split(gate, 4, axis=1)
            cells[t + 1] = f * cells[t] + i * g
            tanh_cells[t] = np.tanh(cells[t + 1])
            hiddens[t + 1] = o * tanh_cells[t]
        return {"gates": gates, "hiddens": hiddens, "cells": cells, "tanh_cells": tanh_cells}

    def lstm_backward(self, grad_outputs: np.ndarray, lstm: dict) -> np.ndarray:
        """Back through time from the last step: the gradient wrt each step's gates before
        their activations, (steps, batch, 4H). Nothing flows into the carried state."""
        h2h_weight = self.params["lstm_h2h_weight"]
        gates, cells, tanh_cells = lstm["gates"], lstm["cells"], lstm["tanh_cells"]
        grad_gates = np.empty_like(gates)
        grad_h = np.zeros_like(grad_outputs[0])
        grad_c = np.zeros_like(grad_h)
        for t in reversed(range(len(gates))):
            i, f, g, o = np.split(gates[t], 4, axis=1)
            grad_h = grad_h + grad_outputs[t]
            grad_c = grad_c + grad_h * o * (1 - tanh_cells[t] ** 2)
            np.concatenate(
                [
                    grad_c * g * i * (1 - i),
                    grad_c * cells[t] * f * (1 - f),
                    grad_c * i * (1 - g * g),
                    grad_h * tanh_cells[t] * o * (1 - o),
                ],
                axis=1,
                out=grad_gates[t],
            )
            grad_c = grad_c * f
            grad_h = grad_gates[t] @ h2h_weight
        return grad_gates


TRAINERS = {
    "linreg": DenseTrainer,
    "softmax": DenseTrainer,
    "mlp": DenseTrainer,
    "lenet": LeNetTrainer,
    "charlm": CharLMTrainer,
}


def main() -> None:
    args = peer_protocol.arguments()
    task = peer_protocol.Task(args.task)
    peer_protocol.run(task, args, TRAINERS[task.model], f"NumPy {np.__version__}")


if __name__ == "__main__":
    main()
