"""GFLOP/s of graphc's FullyConnected, Convolution and LSTM kernels next to NumPy's matmul
on the same GEMM sizes, measured in the same run at the same thread count.

    .venv/bin/python benchmarks/bench_kernels.py               # every core
    .venv/bin/python benchmarks/bench_kernels.py --threads 1

Kernels are called as the executor calls them (``Target.call``: Numba's pool on graphc's
thread count, SciPy's BLAS on one thread per part); NumPy's matmul runs on its own BLAS
held to the same thread count with threadpoolctl.

Shapes: LeNet (batch 100), MLP (784-64-10, batch 100) and CharLM (vocabulary 84, embedding
and LSTM 256, 100 steps x batch 128 = 12,800 rows at the decoder). float32. The LSTM's
peer is NumPy's matmul on its largest GEMM, (12800, 256) @ (256, 1024): the per-step
recurrent products are (128, 256) @ (256, 1024), which reach less.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import median_seconds, print_table

import graphc as gc
from graphc.backend.lowering import NodeSpec, kernel_for
from graphc.codegen_cpu.target import CPU
from graphc.ir.evaluate import evaluate_entries
from graphc.ir.registry import get_op

F32 = np.dtype("float32")


def _node_kernel(symbol, op, inputs, options=None):
    """The compiled kernel and bound arguments of the first ``op`` node in ``symbol``."""
    values = evaluate_entries(symbol, inputs)
    node = next(n for n in symbol.graph.nodes if n.op == op)
    count = get_op(op).num_outputs(node.attrs)
    outs = [values[gc.ir.node.NodeOutput(node, i)] for i in range(count)]
    ins = [values[e] for e in node.inputs]
    spec = NodeSpec(
        op,
        node.name,
        node.attrs,
        tuple(a.shape for a in ins),
        tuple(a.dtype for a in ins),
        tuple(a.shape for a in outs),
        tuple(a.dtype for a in outs),
        {**CPU.bind_options(), **(options or {})},
    )
    kernel = kernel_for(spec)
    args = kernel.arguments(
        tuple(np.ascontiguousarray(a) for a in ins),
        tuple(np.empty(a.shape, a.dtype) for a in outs),
        tuple(np.empty(shape, dtype) for shape, dtype in kernel.workspace),
    )
    return kernel, args


def _time_kernel(kernel, args, repeats) -> float:
    time.sleep(0.3)  # NumPy's BLAS threads spin a while after its last call: let them stop
    return median_seconds(lambda: CPU.call(kernel.fn, *args), repeats)


def _gemm_rate(m, k, n, repeats):
    time.sleep(0.3)
    a = np.random.default_rng(0).standard_normal((m, k)).astype(F32)
    b = np.random.default_rng(1).standard_normal((k, n)).astype(F32)
    out = np.empty((m, n), F32)
    seconds = median_seconds(lambda: np.matmul(a, b, out=out), repeats)
    return 2.0 * m * k * n / seconds / 1e9


def fully_connected_rows(repeats):
    rows = []
    for label, batch, features, hidden in [
        ("MLP fc1", 100, 784, 64),
        ("MLP fc2", 100, 64, 10),
        ("LeNet fc1", 100, 800, 500),
        ("LeNet fc2", 100, 500, 10),
        ("CharLM decoder", 12800, 256, 84),
    ]:
        x = gc.Variable("x")
        net = gc.FullyConnected(x, num_hidden=hidden, name="fc")
        rng = np.random.default_rng(0)
        inputs = {
            "x": rng.standard_normal((batch, features)).astype(F32),
            "fc_weight": rng.standard_normal((hidden, features)).astype(F32),
            "fc_bias": rng.standard_normal(hidden).astype(F32),
        }
        kernel, args = _node_kernel(net, "FullyConnected", inputs)
        seconds = _time_kernel(kernel, args, repeats)
        ours = 2.0 * batch * features * hidden / seconds / 1e9
        peer = _gemm_rate(batch, features, hidden, repeats)
        rows.append(
            [f"{label} ({batch}x{features} @ {features}x{hidden})", ours, peer, ours / peer]
        )
    return rows


def convolution_rows(repeats):
    rows = []
    for label, shape, filters in [
        ("LeNet conv1", (100, 1, 28, 28), 20),
        ("LeNet conv2", (100, 20, 12, 12), 50),
    ]:
        x = gc.Variable("x")
        conv = gc.Convolution(x, kernel=(5, 5), num_filter=filters, name="conv")
        rng = np.random.default_rng(0)
        inputs = {
            "x": rng.standard_normal(shape).astype(F32),
            "conv_weight": rng.standard_normal((filters, shape[1], 5, 5)).astype(F32) * 0.1,
            "conv_bias": rng.standard_normal(filters).astype(F32),
        }
        grads = gc.Group([conv, *gc.grad(conv, ["x", "conv_weight"])])
        n, c, h, w = shape
        oh, ow = h - 4, w - 4
        k = c * 25
        cols = n * oh * ow
        flops = 2.0 * filters * k * cols
        # GEMM sizes: forward W(F,K)@cols(K,N*OH*OW); weight grad dy(F,cols)@cols^T; data grad W^T@dy.
        peers = {
            "forward": _gemm_rate(filters, k, cols, repeats),
            "weight grad": _gemm_rate(filters, cols, k, repeats),
            "data grad": _gemm_rate(k, filters, cols, repeats),
        }
        for pass_name, op in [
            ("forward", "Convolution"),
            ("weight grad", "_conv_backward_weight"),
            ("data grad", "_conv_backward_data"),
        ]:
            kernel, args = _node_kernel(grads, op, inputs)
            seconds = _time_kernel(kernel, args, repeats)
            ours = flops / seconds / 1e9
            rows.append([f"{label} {pass_name}", ours, peers[pass_name], ours / peers[pass_name]])
    return rows


def lstm_rows(repeats):
    steps, batch, width, hidden = 100, 128, 256, 256
    x = gc.Variable("x")
    lstm = gc.LSTM(x, num_hidden=hidden, name="lstm")
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((steps, batch, width)).astype(F32) * 0.5}
    for name, shape in zip(
        lstm.list_arguments()[1:], lstm.infer_shape(x=(steps, batch, width))[0][1:]
    ):
        inputs[name] = rng.standard_normal(shape).astype(F32) * 0.05
    grads = gc.Group([lstm, *gc.grad(lstm, ["x", *list(inputs)[1:]])])
    peer = _gemm_rate(steps * batch, width, 4 * hidden, repeats)
    rows = []
    gemm_flops = 2.0 * steps * batch * 4 * hidden * (width + hidden)
    for pass_name, op, flops in [
        ("forward", "LSTM", gemm_flops),
        ("backward", "_lstm_backward", 2 * gemm_flops),
    ]:
        kernel, args = _node_kernel(grads, op, inputs)
        seconds = _time_kernel(kernel, args, max(3, repeats // 5))
        ours = flops / seconds / 1e9
        rows.append([f"CharLM LSTM {pass_name} (100 x 128, 256/256)", ours, peer, ours / peer])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="0: every core (the default)")
    args = parser.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        gc.set_num_threads(args.threads)
        threadpool_limits(args.threads)  # NumPy's matmul on as many threads
    print(f"threads: {gc.get_num_threads()}")
    rows = fully_connected_rows(args.repeats) + convolution_rows(args.repeats)
    rows += lstm_rows(args.repeats)
    print_table(["kernel (float32)", "graphc GFLOP/s", "NumPy matmul GFLOP/s", "ratio"], rows)


if __name__ == "__main__":
    main()
