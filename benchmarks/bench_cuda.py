"""The CUDA backend on a GPU: the tiled GEMM against cuBLAS, LeNet's convolution passes, and
whole training runs of the seed models against PyTorch eager on the same GPU.

    make install && .venv/bin/pip install -e '.[cuda]'        # numba-cuda with CUDA wheels
    .venv/bin/pip install torch                              # the peer and cuBLAS (optional)
    NUMBA_ENABLE_CUDASIM=0 .venv/bin/python benchmarks/bench_cuda.py
    NUMBA_ENABLE_CUDASIM=1 .venv/bin/python benchmarks/bench_cuda.py --smoke  # no GPU: tiny

(``--smoke`` checks the script under the simulator: tiny shapes, LinReg and softmax only,
since LeNet's and CharLM's full widths take many minutes there.)

Tables (Markdown, for BENCHMARKS.md), each with the device's name:

- GEMM: float32 C = A @ B at n x n x n (``--gemm``, default 4096), graphc's kernel
  (``codegen_cuda/gemm.py``) and cuBLAS through torch with TF32 off, TFLOP/s of the median;
- convolution: LeNet's conv1 and conv2 at batch 100, each pass (forward, weight gradient,
  data gradient) in ms and TFLOP/s (``codegen_cuda/conv.py``: implicit GEMMs);
- training: seconds for Knet's runs of the five models (``graphc.bench.tasks``' settings),
  graphc's ``Model.fit`` on ``gc.gpu()`` against PyTorch eager on the GPU (cuDNN's LSTM for
  CharLM), and graphc's launches per step (an LSTM's per-step launches counted as one).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
import types
import warnings

import numpy as np
from common import print_table

import graphc as gc
from graphc.backend.lowering import NodeSpec, kernel_for
from graphc.bench.tasks import SETTINGS as TASK_SETTINGS

SETTINGS = {
    name: {
        "epochs": task["epochs"],
        "batch": task["batch"],
        "optimizer": task["optimizer"],
        "params": {key: task[key] for key in ("learning_rate", "momentum", "wd") if key in task},
    }
    for name, task in TASK_SETTINGS.items()
}
"""``graphc bench``'s settings, as ``Model.fit`` takes them."""


def full_data(name: str):
    """Knet's data: Housing standardized, Fashion-MNIST (flat rows but for LeNet), the text."""
    if name == "linreg":
        features, targets = gc.datasets.housing()
        return gc.datasets.standardized(features), targets.astype(np.float32)
    if name == "charlm":
        return gc.datasets.text(), None
    train_x, train_y, _, _ = gc.datasets.fashion_mnist()
    if name != "lenet":
        train_x = train_x.reshape(len(train_x), -1)
    return train_x, train_y


def _data(name: str):
    """``full_data``; the Fashion-MNIST subset shipped with graphc where the full
    set is not installed (a lent GPU machine has no package registry), said in the output."""
    try:
        return full_data(name)
    except FileNotFoundError:
        print(f"({name}: Fashion-MNIST is not installed; the bundled 6,000-image subset)")
        train_x, train_y, _, _ = gc.datasets.fashion_mnist(bundled=True)
        if name != "lenet":
            train_x = train_x.reshape(len(train_x), -1)
        return train_x, train_y


def _cuda():
    from numba import cuda

    return cuda


def device_name() -> str:
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return "Numba's CUDA simulator (no GPU: figures mean nothing)"
    return _cuda().get_current_device().name.decode()


def _timed(function, repeats: int) -> float:
    """Median seconds of ``function()``, the device synchronized around each call."""
    cuda = _cuda()
    function()
    cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _spec(op, attrs, in_shapes, out_shapes, dtype=np.float32) -> NodeSpec:
    dtype = np.dtype(dtype)
    return NodeSpec(
        op, op, attrs, tuple(in_shapes), (dtype,) * len(in_shapes), tuple(out_shapes),
        (dtype,) * len(out_shapes),
    )  # fmt: skip


def _launcher(spec: NodeSpec, inputs):
    """A zero-argument call of ``spec``'s CUDA kernel on device copies of ``inputs``."""
    cuda = _cuda()
    kernel = kernel_for(spec, "cuda")
    device_in = tuple(cuda.to_device(np.ascontiguousarray(a)) for a in inputs)
    device_out = tuple(cuda.device_array(s, dtype=np.float32) for s in spec.out_shapes)
    arguments = kernel.arguments(device_in, device_out, ())
    return lambda: kernel.fn(*arguments)


def gemm_rows(n: int, repeats: int) -> list[list[object]]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    attrs = {"transpose_a": False, "transpose_b": False}
    ours = _timed(_launcher(_spec("dot", attrs, [a.shape, b.shape], [(n, n)]), [a, b]), repeats)
    flops = 2.0 * n**3
    rows = [[f"graphc tiled GEMM, {n}^3 float32", ours * 1e3, flops / ours / 1e12, ""]]
    try:
        import torch
    except ImportError:
        rows.append(["cuBLAS (torch)", "torch not installed", "", ""])
        return rows
    torch.backends.cuda.matmul.allow_tf32 = False
    left, right = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
    theirs = _timed(lambda: left @ right, repeats)
    rows.append(["cuBLAS (torch, TF32 off)", theirs * 1e3, flops / theirs / 1e12, ""])
    rows[0][3] = f"{theirs / ours:.2f}x cuBLAS"
    return rows


LENET_CONVS = {"conv1": ((1, 28, 28), 20), "conv2": ((20, 12, 12), 50)}
SMOKE_CONVS = {"conv1": ((1, 6, 6), 2), "conv2": ((2, 5, 5), 3)}


def conv_rows(batch: int, repeats: int, convs: dict = LENET_CONVS) -> list[list[object]]:
    rng = np.random.default_rng(1)
    rows = []
    for name, ((channels, height, width), filters) in convs.items():
        attrs = {"kernel": (5, 5), "stride": (1, 1), "pad": (0, 0), "num_filter": filters}
        data = rng.standard_normal((batch, channels, height, width), dtype=np.float32)
        weight = rng.standard_normal((filters, channels, 5, 5), dtype=np.float32)
        out_shape = (batch, filters, height - 4, width - 4)
        dy = rng.standard_normal(out_shape, dtype=np.float32)
        flops = 2.0 * math.prod(out_shape) * channels * 25
        passes = {
            "forward": (
                _spec("Convolution", {**attrs, "no_bias": True}, [data.shape, weight.shape],
                      [out_shape]),
                [data, weight],
            ),
            "weight gradient": (
                _spec("_conv_backward_weight", attrs, [dy.shape, data.shape], [weight.shape]),
                [dy, data],
            ),
            "data gradient": (
                _spec("_conv_backward_data", attrs, [dy.shape, weight.shape, data.shape],
                      [data.shape]),
                [dy, weight, data],
            ),
        }  # fmt: skip
        for label, (spec, inputs) in passes.items():
            seconds = _timed(_launcher(spec, inputs), repeats)
            rows.append([f"{name} {label}, batch {batch}", seconds * 1e3, flops / seconds / 1e12])
    return rows


def graphc_training(name: str, x, y, epochs: int | None, batch: int) -> tuple[float, int]:
    settings = SETTINGS[name]
    fit = dict(optimizer=settings["optimizer"], optimizer_params=dict(settings["params"]))
    if name == "charlm":
        net = gc.models.charlm(x.vocab_size, stateful=True)
        model = gc.Model(net, ctx=gc.gpu(), state_names=gc.models.CHARLM_STATE_NAMES)
        data = gc.io.BPTTIter(x.data, batch, y, layout="TN")
        return _timed_fit(model, data, epochs or settings["epochs"], fit)
    symbol = {
        "linreg": gc.models.linreg,
        "softmax": gc.models.softmax_regression,
        "mlp": gc.models.mlp,
        "lenet": gc.models.lenet,
    }[name]()
    model = gc.Model(symbol, ctx=gc.gpu())
    data = gc.io.NDArrayIter(x, y, batch_size=batch)
    return _timed_fit(model, data, epochs or settings["epochs"], fit)


def _timed_fit(model, data, epochs: int, fit: dict) -> tuple[float, int]:
    """Seconds of ``epochs`` epochs after one untimed epoch (the compiles), and the
    launches of a step."""
    model.fit(data, num_epoch=1, verbose=False, **fit)
    data.reset()
    start = time.perf_counter()
    model.fit(data, num_epoch=epochs, verbose=False, **fit)
    _cuda().synchronize()
    return time.perf_counter() - start, model.stats()["kernels_per_step"]


def torch_training(name: str, x, y, epochs: int | None) -> float | str:
    try:
        import torch
        import torch_models
        from torch import nn
    except ImportError:
        return "torch not installed"
    settings = SETTINGS[name]
    torch.manual_seed(0)
    device = torch.device("cuda")
    if name == "charlm":
        return _torch_charlm(x, settings, y, epochs or settings["epochs"])
    if name == "linreg":
        model, loss_fn = nn.Linear(13, 1), nn.MSELoss()
        labels = torch.from_numpy(y).reshape(-1, 1)
    else:
        model = {"softmax": lambda: nn.Linear(784, 10), "mlp": torch_models.mlp,
                 "lenet": torch_models.lenet}[name]()  # fmt: skip
        loss_fn, labels = nn.CrossEntropyLoss(), torch.from_numpy(y).long()
    model = model.to(device)
    inputs, labels = torch.from_numpy(x).to(device), labels.to(device)
    params = settings["params"]
    optimizer = torch.optim.SGD(
        model.parameters(), lr=params["learning_rate"], momentum=params.get("momentum", 0.0),
        weight_decay=params.get("wd", 0.0),
    )  # fmt: skip
    batch = settings["batch"]
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs or settings["epochs"]):
        for first in range(0, len(inputs) - batch + 1, batch):
            optimizer.zero_grad()
            loss = loss_fn(model(inputs[first : first + batch]), labels[first : first + batch])
            loss.backward()
            optimizer.step()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def _torch_charlm(text, settings, length: int, epochs: int) -> float:
    import torch
    import torch_models
    from torch import nn

    vocab, batch = text.vocab_size, settings["batch"]
    columns = len(text.data) // batch
    streams = torch.from_numpy(text.data[: columns * batch].reshape(batch, columns).T.copy())
    streams = streams.long().cuda()
    embed, lstm, decoder = nn.Embedding(vocab, 256), nn.LSTM(256, 256), nn.Linear(256, vocab)
    embed, lstm, decoder = embed.cuda(), lstm.cuda(), decoder.cuda()
    params = [*embed.parameters(), *lstm.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(params, lr=settings["params"]["learning_rate"])
    loss_fn = nn.CrossEntropyLoss()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs):
        state = None
        for first in range(0, columns - length, length):
            window = streams[first : first + length + 1]
            _, state = torch_models.charlm_step(
                embed, lstm, decoder, optimizer, loss_fn, window, state, vocab
            )
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gemm", type=int, default=4096, help="n of the n^3 GEMM")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--only", default="", help="comma-separated models, e.g. mlp,lenet")
    parser.add_argument("--epochs", type=int, default=None, help="instead of Knet's")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, to check the script (simulator)"
    )
    args = parser.parse_args()
    # The GPU has no compiled training loop yet: fit says so once per call, as expected here.
    warnings.simplefilter("ignore", gc.StepByStepWarning)
    if args.smoke:
        args.gemm, args.repeats, args.epochs = 20, 1, 1
    print(f"device: {device_name()}\n")
    print_table(["GEMM", "ms", "TFLOP/s", "vs cuBLAS"], gemm_rows(args.gemm, args.repeats))
    print()
    convs = conv_rows(2, 1, SMOKE_CONVS) if args.smoke else conv_rows(100, args.repeats)
    print_table(["convolution pass", "ms", "TFLOP/s"], convs)
    print()
    rows = []
    every = ["linreg", "softmax"] if args.smoke else ["linreg", "softmax", "mlp", "lenet", "charlm"]
    for name in args.only.split(",") if args.only else every:
        x, y = _data(name)
        batch = SETTINGS[name]["batch"]
        if name == "charlm":  # x is the text; y the BPTT length
            y = 100
            if args.smoke:
                batch, y = 2, 4
                x = types.SimpleNamespace(data=x.data[:40], vocab_size=x.vocab_size)
        elif args.smoke:  # two batches of four
            batch, x, y = 4, x[:8], y[:8]
            if name == "lenet":
                x = np.ascontiguousarray(x[:, :, :16, :16])  # the smallest LeNet takes
        seconds, launches = graphc_training(name, x, y, args.epochs, batch)
        peer = torch_training(name, x, y, args.epochs) if not args.smoke else "skipped (--smoke)"
        ratio = f"{peer / seconds:.2f}x" if isinstance(peer, float) else ""
        rows.append([name, seconds, peer, ratio, launches])
    headers = [
        "model",
        "graphc gpu (s)",
        "PyTorch eager gpu (s)",
        "graphc speed-up",
        "launches/step",
    ]
    print_table(headers, rows)


if __name__ == "__main__":
    main()
