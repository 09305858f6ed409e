"""MXNet (Gluon, hybridized) as a peer for Knet's training-time table: LinReg, softmax and
MLP, trained as ``benchmarks/bench_training.py`` trains them, in MXNet's own environment.

    python3 -m venv /tmp/mxenv && /tmp/mxenv/bin/pip install mxnet==1.9.1 'numpy<1.24'
    .venv/bin/python benchmarks/peer_mxnet.py --export /tmp/knet-data.npz   # graphc's data
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 /tmp/mxenv/bin/python benchmarks/peer_mxnet.py --data /tmp/knet-data.npz

The training step is written as an MXNet user writes a fast loop: a Gluon network and loss
hybridized with ``static_alloc=True, static_shape=True``, ``autograd.record``,
``loss.backward()`` and ``trainer.step(batch)`` (plain SGD, lr 0.1), over NDArray batches
sliced from data already in ``mx.nd`` arrays. Gluon's losses give one value per sample and
``backward`` sums them; ``trainer.step(batch)`` scales the gradient by ``1 / batch``, so the
update is SGD lr 0.1 on the batch-mean loss, as in ``peer_jax.py`` (``L2Loss`` is
``0.5 * (pred - label) ** 2`` per sample). The pip wheel runs its dense layers in oneDNN,
which threads with OpenMP, hence ``OMP_NUM_THREADS=1`` next to ``OPENBLAS_NUM_THREADS=1``.
The initial weights are ``peer_jax.py``'s (Glorot uniform from the same seed, zero biases;
Gluon's ``Dense`` holds the transpose). One step compiles the cached graph before the clock
starts, then the weights are reset; ``mx.nd.waitall()`` before the clock stops. Seconds for
the whole run, median of ``--repeats``; the final training loss (mean over the data, after
the last run, off the clock) shows the run does the same work as its peers.
"""

from __future__ import annotations

import time

import numpy as np
from peer_jax import peer_arguments, problem, report


def run(name: str, data) -> tuple[float, float, float | None]:
    import mxnet as mx
    from mxnet import autograd, gluon
    from mxnet.gluon import nn

    x, y, epochs, batch, lr, init = problem(name, data)
    net = nn.HybridSequential()
    if name == "linreg":
        net.add(nn.Dense(1, in_units=13))
        loss_fn = gluon.loss.L2Loss()
    else:
        if name == "softmax":
            net.add(nn.Dense(10, in_units=784))
        else:
            net.add(nn.Dense(64, activation="relu", in_units=784), nn.Dense(10, in_units=64))
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    net.initialize()
    params = list(net.collect_params().values())  # weight, bias, weight, bias

    def reset() -> None:
        for param, value in zip(params, init):
            param.set_data(mx.nd.array(value.T if value.ndim == 2 else value))

    reset()
    net.hybridize(static_alloc=True, static_shape=True)
    loss_fn.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})
    x, y = mx.nd.array(x), mx.nd.array(y.astype(np.float32))
    batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x) - batch + 1, batch)]

    def step(xb, yb) -> None:
        with autograd.record():
            loss = loss_fn(net(xb), yb)
        loss.backward()
        trainer.step(batch)

    step(*batches[0])
    mx.nd.waitall()
    reset()
    mx.nd.waitall()
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in batches:
            step(xb, yb)
    mx.nd.waitall()
    seconds = time.perf_counter() - start

    losses, correct = [], 0.0
    for xb, yb in batches:
        out = net(xb)
        losses.append(loss_fn(out, yb).mean().asscalar())
        if name != "linreg":
            correct += (out.argmax(axis=1) == yb).sum().asscalar()
    accuracy = None if name == "linreg" else correct / (len(batches) * batch)
    return seconds, float(np.mean(losses)), accuracy


def main() -> None:
    args = peer_arguments(__doc__.splitlines()[0])
    if args is None:
        return
    import mxnet as mx

    data = dict(np.load(args.data))
    print(f"MXNet {mx.__version__}")
    report("MXNet Gluon s", lambda name: run(name, data), args.repeats)


if __name__ == "__main__":
    main()
