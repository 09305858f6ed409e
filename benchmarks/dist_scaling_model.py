"""The scaling model of data-parallel training ([dist]), on paper: time per step on N
machines = compute of the worker's batch + one ring allreduce of every gradient.

    .venv/bin/python benchmarks/dist_scaling_model.py

Ring allreduce of S bytes over N workers (reduce-scatter then all-gather, 2(N-1) messages
each way): 2 (N-1)/N * S / bandwidth + 2 (N-1) * latency. Without overlap, a worker at
batch b spends b * c computing (c: seconds per sample, measured on this machine, one core:
``benchmarks/bench_dist.py`` and BENCHMARKS.md), so the scaling efficiency is
b c / (b c + allreduce), at least 80% from b >= 4 * allreduce / c. The gradients are float32
(and the loop adds 3 numbers: loss, metric, a flag).
"""

from __future__ import annotations

import argparse

import numpy as np
from common import print_table

import graphc as gc

LATENCY = 20e-6
"""Seconds per message on a TCP/IP Ethernet link (an assumption; RDMA is ~2 us)."""


def parameter_count(symbol, shapes) -> int:
    args, _, _ = symbol.infer_shape_partial(**shapes)
    names = symbol.list_arguments()
    return sum(
        int(np.prod(shape))
        for name, shape in zip(names, args)
        if shape and name not in ("data", "softmax_label")
    )


def allreduce_seconds(size_bytes: float, workers: int, gbit_per_s: float) -> float:
    bandwidth = gbit_per_s * 1e9 / 8
    return 2 * (workers - 1) / workers * size_bytes / bandwidth + 2 * (workers - 1) * LATENCY


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lenet-ms-per-sample", type=float, default=0.215)
    parser.add_argument("--charlm-ms-per-row", type=float, default=3.44)
    args = parser.parse_args()
    vocab = gc.datasets.text().vocab_size
    models = [
        (
            "LeNet",
            parameter_count(gc.models.lenet(), {"data": (100, 1, 28, 28)}),
            args.lenet_ms_per_sample / 1e3,
            "samples",
        ),
        (
            "CharLM",
            parameter_count(gc.models.charlm(vocab), {"data": (100, 128)}),
            args.charlm_ms_per_row / 1e3,
            "rows of 100 characters",
        ),
    ]
    rows = []
    for name, count, per_sample, unit in models:
        size = 4 * (count + 3)
        for gbit in (10, 25):
            for workers in (2, 8, 64):
                reduce = allreduce_seconds(size, workers, gbit)
                one_core = int(np.ceil(4 * reduce / per_sample))
                node = int(np.ceil(4 * reduce / (per_sample / 8)))
                rows.append(
                    [
                        f"{name} ({count:,} parameters, {size / 1e6:.2f} MB)",
                        f"{gbit} Gbit/s",
                        workers,
                        reduce * 1e3,
                        f"{one_core} {unit}",
                        f"{node} {unit}",
                    ]
                )
    print_table(
        [
            "model",
            "link",
            "workers N",
            "allreduce ms",
            "batch per worker for >= 80%, one core",
            "same, a worker 8x faster",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
