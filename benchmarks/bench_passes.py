"""What the optimization passes buy: the training step of each model of Knet's benchmark
at -O0 (no pass) and -O2 (simplification, fusion, memory planning), side by side.

    .venv/bin/python benchmarks/bench_passes.py --repeats 20

Per model and level: nodes in the bound training graph, kernels launched per step
(forward + backward; the SGD update is a NumPy loop here, the same at both levels),
the planned peak of intermediate memory, and the median step time. Both levels are bound
in the same process and timed step by step in turn, so they share the machine's noise.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench_step import graphc_step
from common import median_seconds, print_table

import graphc as gc


def _models(vocab: int):
    return {
        "LinReg (batch 506)": (gc.models.linreg(), {"data": (506, 13)}, 1),
        "Softmax (batch 100)": (gc.models.softmax_regression(), {"data": (100, 784)}, 10),
        "MLP 64 (batch 100)": (gc.models.mlp(), {"data": (100, 784)}, 10),
        "LeNet (batch 100)": (gc.models.lenet(), {"data": (100, 1, 28, 28)}, 10),
        "CharLM (100 x 128, 256)": (gc.models.charlm(vocab), {"data": (100, 128)}, vocab),
    }


def intermediates(stats: dict) -> int:
    """The arena less the buffers alive for the executor's whole life (the gradients):
    what the passes and the memory plan change."""
    return stats["planned_peak_bytes"] - stats["persistent_bytes"]


def bound_step(symbol, shapes, classes, level, seed=0):
    """A training step at ``level`` (see ``bench_step.graphc_step``) and its executor."""
    return graphc_step(symbol, shapes, classes, seed=seed, opt_level=level)


def interleaved_medians(steps: dict, args) -> dict[int, float]:
    """Median seconds per step of each level, the levels timed step by step in turn so
    that both see the same load on this shared machine."""
    for step in steps.values():
        median_seconds(step, repeats=1, warmup=3)
    times: dict[int, list[float]] = {level: [] for level in steps}
    for _ in range(args.repeats):
        for level, step in steps.items():
            start = time.perf_counter()
            step()
            times[level].append(time.perf_counter() - start)
    return {level: statistics.median(values) for level, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--vocab", type=int, default=84)
    parser.add_argument("--only", default="", help="run only models whose name has this text")
    args = parser.parse_args()
    rows = []
    for label, (symbol, shapes, classes) in _models(args.vocab).items():
        if args.only and args.only.lower() not in label.lower():
            continue
        steps = {level: bound_step(symbol, shapes, classes, level) for level in (0, 2)}
        times = interleaved_medians({level: step for level, (step, _) in steps.items()}, args)
        stats = {level: exe.stats() for level, (_, exe) in steps.items()}
        ms = {level: seconds * 1e3 for level, seconds in times.items()}
        rows.append(
            [
                label,
                f"{stats[0]['nodes']} / {stats[2]['nodes']}",
                f"{stats[0]['kernels_per_step']} / {stats[2]['kernels_per_step']}",
                f"{intermediates(stats[0]) / 1e6:.3g} / {intermediates(stats[2]) / 1e6:.3g}",
                f"{ms[0]:.3g} / {ms[2]:.3g}",
                f"{1 - stats[2]['kernels_per_step'] / stats[0]['kernels_per_step']:.0%}",
                f"{1 - intermediates(stats[2]) / intermediates(stats[0]):.0%}",
                f"{ms[0] / ms[2]:.2f}",
            ]
        )
    print_table(
        [
            "training step",
            "nodes -O0 / -O2",
            "kernels/step",
            "peak MB",
            "step ms",
            "fewer kernels",
            "less memory",
            "speed-up",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
