"""Where one training step's time goes: every kernel of a LeNet step and a CharLM step, in
milliseconds, with the GEMM work it does and the GFLOP/s that reaches, and the share of the
step that is not GEMM; and what NumPy's matmul takes for every GEMM of the LeNet step at
its whole size (graphc's kernels run the same products in parts and chunks: conv1's run
faster that way, conv2's and fc1's at NumPy's speed at best).

    .venv/bin/python benchmarks/profile_step.py              # graphc's default threads
    .venv/bin/python benchmarks/profile_step.py --threads 1

The kernels run one by one from Python (``Executor.profile``), so a row's time includes a
call's few microseconds from Python; the compiled step saves those. GEMM work is counted
from the shapes, 2 flops per multiply-add: Convolution and its two gradients (im2col work
included in their time), FullyConnected, dot and the LSTM (the input projection, the
recurrent products and, backward, the three gradient products). NumPy's matmul on the
largest GEMM of each model is measured in the same run as the peak to read against.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from common import median_seconds, print_table

import graphc as gc
from graphc.ir.ops.fused import run_members
from graphc.ir.registry import get_op
from graphc.runtime.launch import provenance


def _conv_work(out_shape, weight_shape) -> float:
    # Every output element of the forward pass is a dot of length C*KH*KW; both gradients
    # do the same multiply-adds in another order.
    return 2.0 * math.prod(out_shape) * math.prod(weight_shape[1:])


def member_gflop(op: str, attrs, in_shapes, out_shapes) -> float:
    """GEMM work of one node, in GFLOP (0 for an op that does none)."""
    if op == "Convolution":
        return _conv_work(out_shapes[0], in_shapes[1]) / 1e9
    if op in ("_conv_backward_data", "_conv_backward_weight"):
        weight = in_shapes[1] if op == "_conv_backward_data" else out_shapes[0]
        return _conv_work(in_shapes[0], weight) / 1e9
    if op == "FullyConnected":
        rows, width = in_shapes[0][0], math.prod(in_shapes[0][1:])
        return 2.0 * rows * width * attrs["num_hidden"] / 1e9
    if op in ("dot", "batch_dot"):
        a = in_shapes[0]
        inner = a[-2] if attrs.get("transpose_a") else a[-1]
        return 2.0 * math.prod(out_shapes[0]) * inner / 1e9
    if op == "LSTM":
        steps, batch, width = in_shapes[0]
        gates = 4 * attrs["num_hidden"]
        return 2.0 * steps * batch * gates * (width + attrs["num_hidden"]) / 1e9
    if op == "_lstm_backward":
        steps, batch, width = in_shapes[0]
        hidden = attrs["num_hidden"]
        # data gradient, recurrent gradient through time, and the two weight gradients
        return 2.0 * steps * batch * 4 * hidden * (2 * width + 2 * hidden) / 1e9
    return 0.0


def launch_gflop(executor, node) -> float:
    in_shapes = [executor._shapes[entry] for entry in node.inputs]
    if node.op != "_fused":
        outs = get_op(node.op).infer_shape(node.attrs, list(in_shapes))[1]
        return member_gflop(node.op, node.attrs, in_shapes, outs)
    total = 0.0

    def apply(member, shapes):
        nonlocal total
        out = get_op(member.op).infer_shape(member.attr_map, list(shapes))[1]
        total += member_gflop(member.op, member.attr_map, shapes, out)
        return out

    run_members(node.attrs, in_shapes, lambda value: (), apply)
    return total


def _short(text: str) -> str:
    # "conv1 (Convolution) at lenet.py:12" -> "conv1 (Convolution)"; fused nodes list members
    return ", ".join(part.split(" at ")[0] for part in text.split(", "))


def profile(name: str, executor, repeats: int) -> None:
    rows = executor.profile(repeats=repeats)
    by_name = {
        provenance(launch.node): launch.node
        for launch in executor._forward_launches + executor._backward_launches
    }
    total = sum(ms for _, ms in rows)
    gemm_ms = 0.0
    table = []
    for label, ms in rows:
        gflop = launch_gflop(executor, by_name[label])
        if gflop:
            gemm_ms += ms
        rate = f"{gflop / ms * 1e3:.0f}" if gflop else ""
        table.append([_short(label), f"{ms:.2f}", f"{gflop:.3f}" if gflop else "", rate])
    print(f"### {name}: {total:.1f} ms a step, kernels called one by one")
    print()
    print_table(["kernel", "ms", "GFLOP", "GFLOP/s"], table)
    print()
    print(
        f"GEMM kernels {gemm_ms:.1f} ms ({gemm_ms / total:.0%}); the rest {total - gemm_ms:.1f}"
        f" ms ({1 - gemm_ms / total:.0%}) of {total:.1f} ms."
    )
    print()


def numpy_peak(m: int, k: int, n: int) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    seconds = median_seconds(lambda: a @ b, repeats=20)
    return 2.0 * m * k * n / seconds / 1e9


# Every GEMM of a LeNet training step at batch 100, as (m, k, n) of (m, k) @ (k, n): the
# convolutions' passes as one im2col GEMM each over the whole batch (conv2: 64 output
# positions an image, 20 * 5 * 5 = 500 taps, 50 filters; conv1: 576 positions, 25 taps,
# 20 filters; conv1 has no data gradient), fc1 (800 -> 500) and fc2 (500 -> 10) with their
# two gradients each.
LENET_GEMMS = (
    ("conv2 forward", (6400, 500, 50)),
    ("conv2 weight gradient", (50, 6400, 500)),
    ("conv2 data gradient", (6400, 50, 500)),
    ("conv1 forward", (57600, 25, 20)),
    ("conv1 weight gradient", (20, 57600, 25)),
    ("fc1 forward", (100, 800, 500)),
    ("fc1 weight gradient", (500, 100, 800)),
    ("fc1 data gradient", (100, 500, 800)),
    ("fc2 forward", (100, 500, 10)),
    ("fc2 weight gradient", (10, 100, 500)),
    ("fc2 data gradient", (100, 10, 500)),
)


def numpy_gemms(gemms) -> None:
    """NumPy's matmul on each GEMM, and their sum: what a step's GEMMs alone take here."""
    rng = np.random.default_rng(0)
    rows, total = [], 0.0
    for name, (m, k, n) in gemms:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        ms = median_seconds(lambda a=a, b=b: a @ b, repeats=20) * 1e3
        total += ms
        rows.append([name, f"{m} x {k} x {n}", f"{ms:.2f}", f"{2.0 * m * k * n / ms / 1e6:.0f}"])
    rows.append(["all", "", f"{total:.2f}", ""])
    print_table(["GEMM (NumPy matmul)", "m x k x n", "ms", "GFLOP/s"], rows)
    print()


def training_bind(symbol, **shapes):
    """The executor ``Model.fit`` trains: gradients of the parameters only (the data and
    the labels have none, so the first layer computes no gradient of its input)."""
    inputs = {*shapes, *(name for name in symbol.list_arguments() if name.endswith("label"))}
    requests = {name: "write" for name in symbol.list_arguments() if name not in inputs}
    return symbol.simple_bind(gc.cpu(), grad_req=requests, **shapes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="gc.set_num_threads; 0: default")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if args.threads:
        gc.set_num_threads(args.threads)
        try:  # NumPy's matmul at the same thread count, when threadpoolctl can reach it
            from threadpoolctl import threadpool_limits

            threadpool_limits(args.threads)
        except ImportError:
            pass
    print(f"graphc threads: {gc.get_num_threads()}")
    print()
    rng = np.random.default_rng(0)
    lenet = training_bind(gc.models.lenet(), data=(100, 1, 28, 28))
    lenet.arg_dict["data"][:] = rng.standard_normal((100, 1, 28, 28), dtype=np.float32)
    profile("LeNet, batch 100", lenet, args.repeats)
    print(f"NumPy matmul (100*8*8, 500) @ (500, 50): {numpy_peak(6400, 500, 50):.0f} GFLOP/s")
    print()
    print("### The same step's GEMMs alone, by NumPy's matmul at the same thread count")
    print()
    numpy_gemms(LENET_GEMMS)
    text = gc.datasets.text()
    charlm = training_bind(gc.models.charlm(text.vocab_size), data=(100, 128))
    charlm.arg_dict["data"][:] = rng.integers(0, text.vocab_size, (100, 128))
    charlm.arg_dict["softmax_label"][:] = rng.integers(0, text.vocab_size, 12800)
    profile("CharLM, 100 steps x batch 128, LSTM 256", charlm, args.repeats)
    print(f"NumPy matmul (128, 256) @ (256, 1024): {numpy_peak(128, 256, 1024):.0f} GFLOP/s")
    print(f"NumPy matmul (12800, 256) @ (256, 1024): {numpy_peak(12800, 256, 1024):.0f} GFLOP/s")


if __name__ == "__main__":
    main()
