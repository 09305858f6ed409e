"""JAX: the whole training step (forward, ``jax.grad``, the optimizer's update) is one
``jax.jit`` function of the parameters, the optimizer state and the batch; the loop over
batches is Python, as a JAX user writes it. The models are functions of a dict of arrays
under graphc's names (layouts as MXNet's, so ``x @ w.T``); the LSTM is a ``lax.scan``.
The update (SGD with momentum and weight decay as MXNet's, Adam) is written out, as
``optax`` would compute it. Threads: XLA's default.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import peer_protocol
from jax import lax


def dense(params, name, x):
    return x @ params[f"{name}_weight"].T + params[f"{name}_bias"]


def conv(params, name, x):
    out = lax.conv_general_dilated(x, params[f"{name}_weight"], (1, 1), "VALID")
    return out + params[f"{name}_bias"][None, :, None, None]


def max_pool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


def lstm(params, inputs, state):
    """One LSTM layer over time-major ``inputs``; gates i, f, g, o as MXNet's."""
    projected = inputs @ params["lstm_i2h_weight"].T + params["lstm_i2h_bias"]
    projected = projected + params["lstm_h2h_bias"]

    def cell(carry, z_in):
        h, c = carry
        z = z_in + h @ params["lstm_h2h_weight"].T
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    state, outputs = lax.scan(cell, state, projected)
    return outputs, state


def forward(model: str, params, x, state=None):
    if model in ("linreg", "softmax"):
        return dense(params, "fc", x)
    if model == "mlp":
        return dense(params, "fc2", jax.nn.relu(dense(params, "fc1", x)))
    if model == "lenet":
        x = max_pool(jnp.tanh(conv(params, "conv1", x)))
        x = max_pool(jnp.tanh(conv(params, "conv2", x)))
        x = jnp.tanh(dense(params, "fc1", x.reshape(x.shape[0], -1)))
        return dense(params, "fc2", x)
    hidden, state = lstm(params, params["embed_weight"][x], state)
    logits = dense(params, "decoder", hidden.reshape(-1, hidden.shape[-1]))
    return logits, state


def cross_entropy(logits, labels):
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


class Trainer:
    def __init__(self, task: peer_protocol.Task) -> None:
        self.task = task
        settings = task.settings
        model = task.model

        def loss_fn(params, x, y, state):
            if model == "charlm":
                logits, state = forward(model, params, x, state)
                return cross_entropy(logits, y.reshape(-1)), state
            if model == "linreg":
                return 0.5 * jnp.mean((forward(model, params, x) - y) ** 2), state
            return cross_entropy(forward(model, params, x), y), state

        def update(params, grads, opt_state):
            lr = settings["learning_rate"]
            if settings["optimizer"] == "adam":
                step, mean, var = opt_state
                step = step + 1
                mean = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, mean, grads)
                var = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, var, grads)
                lr_t = lr * jnp.sqrt(1 - 0.999**step) / (1 - 0.9**step)
                params = jax.tree.map(
                    lambda p, m, v: p - lr_t * m / (jnp.sqrt(v) + 1e-8), params, mean, var
                )
                return params, (step, mean, var)
            momentum, wd = settings.get("momentum", 0.0), settings.get("wd", 0.0)
            grads = jax.tree.map(lambda g, p: g + wd * p, grads, params)
            velocity = jax.tree.map(lambda v, g: momentum * v - lr * g, opt_state, grads)
            return jax.tree.map(lambda p, v: p + v, params, velocity), velocity

        @jax.jit
        def train_step(params, opt_state, x, y, state):
            (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, state)
            params, opt_state = update(params, grads, opt_state)
            return params, opt_state, loss, state

        self.train_step = train_step
        self.predict_fn = jax.jit(lambda params, x: forward(model, params, x))
        self.reset()

    def reset(self) -> None:
        self.params = {name: jnp.asarray(v) for name, v in self.task.initial().items()}
        zeros = jax.tree.map(jnp.zeros_like, self.params)
        if self.task.settings["optimizer"] == "adam":
            self.opt_state = (jnp.zeros((), jnp.float32), zeros, zeros)
        else:
            self.opt_state = zeros
        self.state = None

    def prepare(self, x, y):
        if self.task.model == "linreg":
            return jnp.asarray(x), jnp.asarray(y.reshape(-1, 1))
        return jnp.asarray(x), jnp.asarray(y)

    def start_epoch(self) -> None:
        if self.task.model == "charlm":
            zeros = jnp.zeros((self.task.batch, self.task.settings["hidden"]), jnp.float32)
            self.state = (zeros, zeros)

    def step(self, x, y):
        self.params, self.opt_state, loss, self.state = self.train_step(
            self.params, self.opt_state, x, y, self.state
        )
        return loss

    def loss_value(self, loss) -> float:
        return float(loss)

    def sync(self) -> None:
        jax.block_until_ready(self.params)

    def predict(self, x):
        return np.asarray(self.predict_fn(self.params, jnp.asarray(x)))


def main() -> None:
    args = peer_protocol.arguments()
    task = peer_protocol.Task(args.task)
    peer_protocol.run(task, args, Trainer, f"JAX {jax.__version__}")


if __name__ == "__main__":
    main()
