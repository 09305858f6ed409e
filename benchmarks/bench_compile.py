"""Cold compile and warm start of a bound training step, each in a fresh process.

    .venv/bin/python benchmarks/bench_compile.py            # LeNet, batch 100
    .venv/bin/python benchmarks/bench_compile.py --model mlp
    .venv/bin/python benchmarks/bench_compile.py --fit --model lenet   # through Model.fit
    .venv/bin/python benchmarks/bench_compile.py --fit --model charlm  # BPTT, state carried

With ``--fit`` the child trains two batches through ``Model.fit`` instead, so the figure
includes the compiled training loop (forward, backward and update in one function) on top
of the kernels; the columns are then import, model set-up, and fit.

Cold: empty graphc and Numba caches, so every kernel is generated and compiled. Warm: a
second process over the caches the first one left. Each figure is wall time from process
start to the first training step's result (forward and backward done), median of runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

from common import print_table

CHILD = textwrap.dedent(
    """
    import time
    start = time.perf_counter()
    import numpy as np
    import graphc as gc
    imported = time.perf_counter()
    net = getattr(gc.models, "{model}")()
    exe = net.simple_bind(gc.cpu(), data={shape})
    bound = time.perf_counter()
    exe.forward(is_train=True)
    exe.backward()
    done = time.perf_counter()
    print(imported - start, bound - imported, done - bound)
    """
)

FIT_CHILD = textwrap.dedent(
    """
    import time
    start = time.perf_counter()
    import numpy as np
    import graphc as gc
    imported = time.perf_counter()
    shape = {shape}
    rng = np.random.default_rng(0)
    label = "lro_label" if "{model}" == "linreg" else "softmax_label"
    if "{model}" == "charlm":  # Hiawatha's vocabulary, two BPTT windows (seq_len, batch)
        vocab = 64
        net = gc.models.charlm(vocab, stateful=True)
        model = gc.Model(net, state_names=gc.models.CHARLM_STATE_NAMES)
        tokens = rng.integers(0, vocab, shape[1] * (2 * shape[0] + 1))
        data = gc.io.BPTTIter(tokens, shape[1], shape[0], layout="TN")
        metric = "perplexity"
    else:
        model = gc.Model(getattr(gc.models, "{model}")(), label_names=(label,))
        x = rng.random((2 * shape[0],) + tuple(shape[1:]), dtype=np.float32)
        y = rng.integers(0, 10, 2 * shape[0]).astype(np.float32)
        data = gc.io.NDArrayIter(x, y, batch_size=shape[0], label_name=label)
        metric = "mse" if "{model}" == "linreg" else "acc"
    bound = time.perf_counter()
    model.fit(data, eval_metric=metric, num_epoch=1, verbose=False)
    assert model.fit_path == "compiled", model.fit_path
    done = time.perf_counter()
    print(imported - start, bound - imported, done - bound)
    """
)

SHAPES = {
    "lenet": (100, 1, 28, 28),
    "mlp": (100, 784),
    "softmax_regression": (100, 784),
    "linreg": (506, 13),
    "charlm": (100, 128),  # --fit only: (seq_len, batch) windows
}


def run_once(model: str, cache: str, fit: bool = False) -> tuple[float, list[float]]:
    env = dict(
        os.environ,
        GRAPHC_CACHE_DIR=os.path.join(cache, "graphc"),
        NUMBA_CACHE_DIR=os.path.join(cache, "numba"),
    )
    code = (FIT_CHILD if fit else CHILD).format(model=model, shape=SHAPES[model])
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - start
    return wall, [float(value) for value in result.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet", choices=sorted(SHAPES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fit", action="store_true", help="time Model.fit's compiled loop")
    args = parser.parse_args()
    if args.model == "charlm" and not args.fit:
        parser.error("charlm is timed through Model.fit only: add --fit")
    cold, warm = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(run_once(args.model, cache, args.fit))
            warm.append(run_once(args.model, cache, args.fit))
    rows = []
    for label, runs in (("cold (empty caches)", cold), ("warm (second process)", warm)):
        walls = [wall for wall, _ in runs]
        parts = [statistics.median(part[i] for _, part in runs) for i in range(3)]
        rows.append([label, statistics.median(walls), parts[0], parts[1], parts[2]])
    what = "Model.fit of two batches" if args.fit else "bind and one step"
    print(f"model: {args.model}, data {SHAPES[args.model]}, {what}, median of {args.runs} runs")
    last = "fit s" if args.fit else "first step s"
    print_table(["start", "to first result s", "import s", "bind s", last], rows)


if __name__ == "__main__":
    main()
