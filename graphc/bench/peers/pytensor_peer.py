"""PyTensor, with the C backend (``--mode C``) or Numba (``--mode NUMBA``).

The training step (forward, ``pt.grad``, the SGD update) is one ``pytensor.function`` with
the parameters in shared variables and the update in ``updates``; the loop over the NumPy
batches is Python, as a PyTensor user writes it. ``--mode C`` is PyTensor's ``CVM`` (each
op's C code built by gcc, the graph run by the C VM, as ``FAST_RUN``): the mode PyTensor
names ``C`` aborts in 3.0.7 on these graphs (an assertion in a ``Subtensor``'s C code). A
pip-installed PyTensor finds no BLAS to link on Debian, so ``graphc bench`` points the C
backend at the system OpenBLAS (``PYTENSOR_FLAGS=blas__ldflags=-lopenblas``, after
``apt-get install libopenblas-dev``); without it the products fall back to Python.

LinReg, softmax and the MLP only: PyTensor 3 has no 2-D convolution or pooling op for
LeNet, and CharLM's LSTM (a ``scan``) is not written here.
"""

from __future__ import annotations

import numpy as np
import peer_protocol
import pytensor
import pytensor.tensor as pt
from pytensor.tensor.special import log_softmax

MODES = {"NUMBA": "NUMBA", "C": "CVM"}  # --mode: PyTensor's mode
MODELS = ("linreg", "softmax", "mlp")


class Trainer:
    def __init__(self, task: peer_protocol.Task, mode: str) -> None:
        pytensor.config.floatX = "float32"
        self.task = task
        settings = task.settings
        initial = task.initial()
        names = [name for name, _ in settings["params"]]
        self.shared = {name: pytensor.shared(initial[name]) for name in names}
        self.velocity = {name: pytensor.shared(np.zeros_like(initial[name])) for name in names}
        x = pt.matrix("x", dtype="float32")
        output = self._forward(x)
        if task.model == "linreg":
            y = pt.matrix("y", dtype="float32")
            loss = 0.5 * pt.mean((output - y) ** 2)
        else:
            y = pt.vector("y", dtype="int32")
            loss = -pt.mean(log_softmax(output, axis=1)[pt.arange(y.shape[0]), y])
        params = [self.shared[name] for name in names]
        grads = pt.grad(loss, params)
        lr, momentum = settings["learning_rate"], settings.get("momentum", 0.0)
        wd = settings.get("wd", 0.0)
        updates = []
        for name, param, grad in zip(names, params, grads):
            velocity = self.velocity[name]
            new_velocity = momentum * velocity - lr * (grad + wd * param)
            updates += [(velocity, new_velocity), (param, param + new_velocity)]
        self.train_step = pytensor.function([x, y], loss, updates=updates, mode=MODES[mode])
        self.predict_fn = pytensor.function([x], output, mode=MODES[mode])

    def _forward(self, x):
        p = self.shared
        if self.task.model == "mlp":
            hidden = pt.maximum(x @ p["fc1_weight"].T + p["fc1_bias"], 0)
            return hidden @ p["fc2_weight"].T + p["fc2_bias"]
        return x @ p["fc_weight"].T + p["fc_bias"]

    def reset(self) -> None:
        for name, value in self.task.initial().items():
            self.shared[name].set_value(value)
            self.velocity[name].set_value(np.zeros_like(value))

    def prepare(self, x, y):
        if self.task.model == "linreg":
            return x, y.reshape(-1, 1)
        return x, y

    def start_epoch(self) -> None:
        pass

    def step(self, x, y):
        return self.train_step(x, y)

    def loss_value(self, loss) -> float:
        return float(loss)

    def predict(self, x):
        return self.predict_fn(x)


def main() -> None:
    args = peer_protocol.arguments(modes=tuple(MODES))
    task = peer_protocol.Task(args.task)
    if task.model not in MODELS:
        raise SystemExit(f"pytensor_peer: {task.model} is not written for PyTensor")
    version = f"PyTensor {pytensor.__version__} ({MODES[args.mode]})"
    peer_protocol.run(task, args, lambda task: Trainer(task, args.mode), version)


if __name__ == "__main__":
    main()
