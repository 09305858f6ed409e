"""JAX (jit) as a peer for Knet's training-time table: LinReg, softmax and MLP, trained as
``benchmarks/bench_training.py`` trains them, in JAX's own environment.

    python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax jaxlib numpy
    .venv/bin/python benchmarks/peer_jax.py --export /tmp/knet-data.npz   # graphc's data
    OPENBLAS_NUM_THREADS=1 /tmp/jaxenv/bin/python benchmarks/peer_jax.py --data /tmp/knet-data.npz

The training step (forward, gradient, SGD update) is one ``jax.jit`` function; the loop over
batches is Python, as a JAX user writes it. Compilation happens before the clock starts.
Seconds for the whole run, median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def export(path: str) -> None:
    import graphc as gc

    features, targets = gc.datasets.housing()
    features = (features - features.mean(0)) / features.std(0)
    train_x, train_y, _, _ = gc.datasets.fashion_mnist()
    np.savez(
        path,
        housing_x=features.astype(np.float32),
        housing_y=targets.astype(np.float32),
        fashion_x=train_x.reshape(len(train_x), -1),
        fashion_y=train_y.astype(np.int32),
    )


def glorot(rng, shape):
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


WIDTHS = {"linreg": (13, 1), "softmax": (784, 10), "mlp": (784, 64, 10)}


def problem(name: str, data) -> tuple:
    """(x, y, epochs, batch, learning rate, initial weights) of one model, the same for
    every peer: Glorot-uniform (fan_in, fan_out) weights from seed 0, zero biases, in the
    order weight, bias per layer."""
    rng = np.random.default_rng(0)
    widths = WIDTHS[name]
    init = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        init += [glorot(rng, (fan_in, fan_out)), np.zeros(fan_out, np.float32)]
    if name == "linreg":
        return data["housing_x"], data["housing_y"], 10_000, 506, 0.1, init
    return data["fashion_x"], data["fashion_y"], 10, 100, 0.1, init


def run(name: str, data) -> float:
    import jax
    import jax.numpy as jnp

    x, y, epochs, batch, lr, params = problem(name, data)
    if name == "linreg":

        def loss(p, xb, yb):
            return 0.5 * jnp.mean((xb @ p[0] + p[1] - yb[:, None]) ** 2)
    else:
        if name == "softmax":

            def logits(p, xb):
                return xb @ p[0] + p[1]
        else:

            def logits(p, xb):
                return jax.nn.relu(xb @ p[0] + p[1]) @ p[2] + p[3]

        def loss(p, xb, yb):
            log_probs = jax.nn.log_softmax(logits(p, xb))
            return -jnp.mean(jnp.take_along_axis(log_probs, yb[:, None], axis=1))

    @jax.jit
    def step(p, xb, yb):
        grads = jax.grad(loss)(p, xb, yb)
        return [w - lr * g for w, g in zip(p, grads)]

    params = [jnp.asarray(w) for w in params]
    x, y = jnp.asarray(x), jnp.asarray(y)
    step(params, x[:batch], y[:batch])[0].block_until_ready()
    batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x) - batch + 1, batch)]
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in batches:
            params = step(params, xb, yb)
    params[0].block_until_ready()
    return time.perf_counter() - start


def peer_arguments(description: str, extra=None):
    """The peers' command line (``--export``, ``--data``, ``--repeats``, and what ``extra``
    adds to the parser); None after ``--export`` has written the data."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--export", default=None, help="write graphc's data sets to this .npz")
    parser.add_argument("--data", default=None, help="the .npz --export wrote")
    parser.add_argument("--repeats", type=int, default=3)
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.export:
        export(args.export)
        return None
    return args


def report(column: str, run_model, repeats: int) -> None:
    """A table row per model: the median seconds of ``repeats`` runs of ``run_model(name)``,
    which returns (seconds, final loss or None, training accuracy or None), and the loss and
    accuracy of the last run."""
    print(f"| model | {column} | final loss | train accuracy |")
    print("| --- | --- | --- | --- |")
    for name in ("linreg", "softmax", "mlp"):
        runs = [run_model(name) for _ in range(repeats)]
        seconds = statistics.median(r[0] for r in runs)
        _, loss, accuracy = runs[-1]
        loss_text = "" if loss is None else f"{loss:.4f}"
        accuracy_text = "" if accuracy is None else f"{accuracy:.4f}"
        print(f"| {name} | {seconds:.3g} | {loss_text} | {accuracy_text} |")


def main() -> None:
    args = peer_arguments(__doc__.splitlines()[0])
    if args is None:
        return
    import jax

    data = dict(np.load(args.data))
    print(f"JAX {jax.__version__}")
    report("JAX jit s", lambda name: (run(name, data), None, None), args.repeats)


if __name__ == "__main__":
    main()
