"""GFLOP/s of graphc's FullyConnected and Convolution kernels next to NumPy's matmul on the
same GEMM sizes, measured in the same run.

    .venv/bin/python benchmarks/bench_kernels.py

Shapes: LeNet (batch 100), MLP (784-64-10, batch 100) and CharLM (vocabulary 84, embedding
and LSTM 256, 100 steps x batch 128 = 12,800 rows at the decoder). float32.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import median_seconds, print_table

import graphc as gc
from graphc.backend.lowering import NodeSpec, kernel_for
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
        dict(options or {}),
    )
    kernel = kernel_for(spec)
    args = [np.ascontiguousarray(a) for a in ins] + [np.empty(a.shape, a.dtype) for a in outs]
    args += [np.empty(shape, dtype) for shape, dtype in kernel.workspace]
    return kernel, args


def _gemm_rate(m, k, n, repeats):
    # NumPy and Numba reach OpenBLAS through two libraries with two thread pools; a pool's
    # threads spin for a while after a call and slow the other one down. Let them settle.
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
        time.sleep(0.3)
        seconds = median_seconds(lambda kernel=kernel, args=args: kernel.fn(*args), repeats)
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
            time.sleep(0.3)
            seconds = median_seconds(lambda kernel=kernel, args=args: kernel.fn(*args), repeats)
            ours = flops / seconds / 1e9
            rows.append([f"{label} {pass_name}", ours, peers[pass_name], ours / peers[pass_name]])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    rows = fully_connected_rows(args.repeats) + convolution_rows(args.repeats)
    print_table(["kernel (float32)", "graphc GFLOP/s", "NumPy matmul GFLOP/s", "ratio"], rows)


if __name__ == "__main__":
    main()
