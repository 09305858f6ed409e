"""The no-framework baseline: forward and backward written by hand in NumPy.

LinReg, softmax regression and the MLP, each a few matrix products; the update is SGD
(momentum and weight decay as MXNet's) on the batch-mean loss, in place. LeNet and CharLM
are not written here (``graphc bench`` reports them as not run, with the reason).
"""

from __future__ import annotations

import numpy as np
import peer_protocol

MODELS = ("linreg", "softmax", "mlp")


class Trainer:
    def __init__(self, task: peer_protocol.Task) -> None:
        self.task = task
        self.settings = task.settings
        self.layers = 2 if task.model == "mlp" else 1
        self.reset()

    def reset(self) -> None:
        self.params = self.task.initial()
        self.velocity = {name: np.zeros_like(value) for name, value in self.params.items()}

    def prepare(self, x, y):
        if self.task.model == "linreg":
            return np.ascontiguousarray(x), y.reshape(-1, 1)
        return np.ascontiguousarray(x), y.astype(np.int64)

    def start_epoch(self) -> None:
        pass

    def _names(self) -> list[tuple[str, str]]:
        if self.task.model == "mlp":
            return [("fc1_weight", "fc1_bias"), ("fc2_weight", "fc2_bias")]
        return [("fc_weight", "fc_bias")]

    def forward(self, x):
        """The output and each layer's input, for the backward pass."""
        inputs = []
        for index, (weight, bias) in enumerate(self._names()):
            inputs.append(x)
            x = x @ self.params[weight].T + self.params[bias]
            if index < self.layers - 1:
                x = np.maximum(x, 0)
        return x, inputs

    def step(self, x, y) -> float:
        out, inputs = self.forward(x)
        batch = len(x)
        if self.task.model == "linreg":
            residual = out - y
            loss = 0.5 * float(np.mean(residual**2))
            grad = residual / batch
        else:
            shifted = out - out.max(axis=1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            loss = -float(np.mean(log_probs[np.arange(batch), y]))
            grad = np.exp(log_probs)
            grad[np.arange(batch), y] -= 1
            grad /= batch
        grads = {}
        for index in reversed(range(self.layers)):
            weight, bias = self._names()[index]
            grads[weight] = grad.T @ inputs[index]
            grads[bias] = grad.sum(axis=0)
            if index:
                grad = (grad @ self.params[weight]) * (inputs[index] > 0)
        self._update(grads)
        return loss

    def _update(self, grads) -> None:
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

    def loss_value(self, loss: float) -> float:
        return loss

    def predict(self, x):
        return self.forward(x)[0]


def main() -> None:
    args = peer_protocol.arguments()
    task = peer_protocol.Task(args.task)
    if task.model not in MODELS:
        raise SystemExit(f"numpy_peer: {task.model} is not written by hand here")
    peer_protocol.run(task, args, Trainer, f"NumPy {np.__version__}")


if __name__ == "__main__":
    main()
