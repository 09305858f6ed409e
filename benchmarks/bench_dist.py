"""Data-parallel speed-up ([dist]): LeNet, one epoch of the bundled Fashion-MNIST subset
(6,000 images), one process with one thread at batch 100 against ``mpiexec -n 2`` ranks
with one thread each at batch 50 (the same global batch of 100, the same steps).

    .venv/bin/python benchmarks/bench_dist.py --repeats 3

Each run is a fresh process (or job) that trains one epoch to compile and warm up, then
times ``--epochs`` more (the compiled loop with, on 2 ranks, one allreduce of every
gradient per step). Medians of ``--repeats``, the configurations alternating so that the
machine's noise falls on all; the third row sums the gradients in buckets started as the
backward pass completes them (kvstore ``bucket_mb``), the second all at once after it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import print_table


def worker(batch: int, epochs: int, bucket_mb: float | None) -> None:
    import graphc as gc

    kv = gc.kvstore.create("dist_sync", bucket_mb=bucket_mb)
    train_x, train_y, _, _ = gc.datasets.fashion_mnist(bundled=True)
    it = gc.io.NDArrayIter(
        train_x, train_y, batch_size=batch, num_parts=kv.num_workers, part_index=kv.rank
    )
    model = gc.Model(gc.models.lenet())
    params = {"learning_rate": 0.05, "momentum": 0.9}
    model.fit(it, optimizer_params=params, num_epoch=1, kvstore=kv, verbose=False)
    kv.barrier()
    start = time.perf_counter()
    model.fit(
        it,
        optimizer_params=params,
        num_epoch=1 + epochs,
        begin_epoch=1,
        kvstore=kv,
        verbose=False,
    )
    kv.barrier()
    seconds = (time.perf_counter() - start) / epochs
    if kv.rank == 0:
        loss = model.history["train_loss"][-1]
        print(json.dumps({"seconds": seconds, "loss": loss, "path": model.fit_path}))


def run(ranks: int, batch: int, epochs: int, bucket_mb: float | None = None) -> dict:
    env = {**os.environ, "GRAPHC_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--worker", str(batch), "--epochs", str(epochs)]
    if bucket_mb is not None:
        command += ["--bucket-mb", str(bucket_mb)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
        command = [mpiexec, "-n", str(ranks), *command]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--bucket-mb",
        type=float,
        default=None,
        help="the third row's kvstore bucket_mb (default 0.25): its sums overlap the backward",
    )
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.epochs, args.bucket_mb)
        return
    bucket_mb = 0.25 if args.bucket_mb is None else args.bucket_mb
    configurations = {
        "1 process, 1 thread, batch 100": (1, 100, None),
        "2 ranks, 1 thread each, batch 50": (2, 50, None),
        f"2 ranks as above, buckets of {bucket_mb:g} MiB overlapping the backward": (
            2,
            50,
            bucket_mb,
        ),
    }
    runs: dict[str, list[dict]] = {name: [] for name in configurations}
    for _ in range(args.repeats):  # alternating, so that the machine's noise falls on all
        for name, (ranks, batch, bucket) in configurations.items():
            runs[name].append(run(ranks, batch, args.epochs, bucket))
    single = None
    rows = []
    for name, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        single = single or seconds
        rows.append([name, seconds, results[-1]["loss"], single / seconds])
    print_table(
        ["LeNet, 1 epoch of 6,000 images", "seconds (median)", "final loss", "speed-up"], rows
    )
    for name, results in runs.items():
        print(f"{name}: {[round(r['seconds'], 3) for r in results]}")


if __name__ == "__main__":
    main()
