"""PyTensor (Numba or C backend) as a peer for Knet's training-time table: LinReg, softmax
and MLP, trained as ``benchmarks/bench_training.py`` trains them, in PyTensor's own
environment.

    python3 -m venv /tmp/ptenv && /tmp/ptenv/bin/pip install pytensor numba
    apt-get install -y libopenblas-dev                 # a BLAS for the C backend to link
    .venv/bin/python benchmarks/peer_pytensor.py --export /tmp/knet-data.npz   # graphc's data
    OPENBLAS_NUM_THREADS=1 /tmp/ptenv/bin/python benchmarks/peer_pytensor.py --data /tmp/knet-data.npz --mode NUMBA
    PYTENSOR_FLAGS=blas__ldflags=-lopenblas OPENBLAS_NUM_THREADS=1 /tmp/ptenv/bin/python benchmarks/peer_pytensor.py --data /tmp/knet-data.npz --mode C

The training step (forward, gradient, SGD update) is one ``pytensor.function`` with the
parameters in shared variables and the update in ``updates``; the loop over slices of the
numpy data is Python, as a PyTensor user writes it. ``--mode NUMBA`` compiles the step with
Numba (PyTensor 3's default backend); ``--mode C`` with the C backend, PyTensor's ``CVM``
mode (each op's C code built by gcc, the graph run by the C VM, as ``FAST_RUN`` with
``linker=cvm``). The mode PyTensor names ``C`` (one C module for the whole graph) aborts in
PyTensor 3.0.7 on these graphs (``Assertion `py_V11 == (PyObject*)V11' failed`` in a
``Subtensor``'s code), hence ``CVM``. A pip-installed PyTensor finds no BLAS to link on
Debian (it looks for ``libcblas``), so the C backend is pointed at the system OpenBLAS by
``PYTENSOR_FLAGS``; without it the products fall back to Python. The initial weights are
``peer_jax.py``'s (Glorot uniform from the same seed, zero biases). Compilation and one call
happen before the clock starts, then the weights are reset. Seconds for the whole run,
median of ``--repeats``; the final training loss (mean over the data, after the last run,
off the clock) shows the run does the same work as its peers.
"""

from __future__ import annotations

import time

import numpy as np
from peer_jax import peer_arguments, problem, report

MODES = {"NUMBA": "NUMBA", "C": "CVM"}  # --mode: PyTensor's mode


def run(name: str, data, mode: str) -> tuple[float, float, float | None]:
    import pytensor
    import pytensor.tensor as pt
    from pytensor.tensor.special import log_softmax

    pytensor.config.floatX = "float32"
    x, y, epochs, batch, lr, init = problem(name, data)
    xv = pt.matrix("x", dtype="float32")
    if name == "linreg":
        yv = pt.vector("y", dtype="float32")
        w, b = params = [pytensor.shared(value.copy()) for value in init]
        loss = 0.5 * pt.mean((xv @ w + b - yv[:, None]) ** 2)
        predict = None
    else:
        yv = pt.vector("y", dtype="int32")
        if name == "softmax":
            w, b = params = [pytensor.shared(value.copy()) for value in init]
            logits = xv @ w + b
        else:
            w1, b1, w2, b2 = params = [pytensor.shared(value.copy()) for value in init]
            logits = pt.maximum(xv @ w1 + b1, 0) @ w2 + b2
        log_probs = log_softmax(logits, axis=1)
        loss = -pt.mean(log_probs[pt.arange(yv.shape[0]), yv])
        predict = pytensor.function([xv], pt.argmax(logits, axis=1), mode=mode)
    grads = pt.grad(loss, params)
    step = pytensor.function(
        [xv, yv], loss, updates=[(p, p - lr * g) for p, g in zip(params, grads)], mode=mode
    )
    evaluate = pytensor.function([xv, yv], loss, mode=mode)

    def reset() -> None:
        for param, value in zip(params, init):
            param.set_value(value.copy())

    batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x) - batch + 1, batch)]
    step(*batches[0])
    reset()
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in batches:
            step(xb, yb)
    seconds = time.perf_counter() - start

    final = float(np.mean([evaluate(xb, yb) for xb, yb in batches]))
    accuracy = None
    if predict is not None:
        accuracy = float(np.mean([np.mean(predict(xb) == yb) for xb, yb in batches]))
    return seconds, final, accuracy


def main() -> None:
    args = peer_arguments(
        __doc__.splitlines()[0],
        lambda parser: parser.add_argument("--mode", default="NUMBA", choices=tuple(MODES)),
    )
    if args is None:
        return
    import pytensor

    data = dict(np.load(args.data))
    blas = f", blas__ldflags {pytensor.config.blas__ldflags!r}" if args.mode == "C" else ""
    print(f"PyTensor {pytensor.__version__}, mode {MODES[args.mode]}{blas}")
    report(f"PyTensor {args.mode} s", lambda name: run(name, data, MODES[args.mode]), args.repeats)


if __name__ == "__main__":
    main()
