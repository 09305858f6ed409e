"""Where a cold start's wait goes: every Numba function compiled while a fresh process trains
two batches through ``Model.fit``, with the seconds each took.

    .venv/bin/python benchmarks/profile_compile.py --model lenet
    .venv/bin/python benchmarks/profile_compile.py --model charlm --top 30
    .venv/bin/python benchmarks/profile_compile.py --model lenet --warm   # a second process
    .venv/bin/python benchmarks/profile_compile.py --model lenet --new-shape 64,1,28,28
    .venv/bin/python benchmarks/profile_compile.py --model charlm --new-shape 50,128

The child is ``bench_compile.py``'s ``--fit`` child, run over empty graphc and Numba caches
(``--warm``: over the caches a first child left; ``--new-shape``: over the caches a first
child left at the model's usual data shape, the second at this one), with a listener on Numba's
``numba:compile`` event, which fires for every compile that is not a load from Numba's disk
cache. A function compiled while another compiles (a kernel its caller calls) is timed in
both: ``inclusive`` is the whole event, ``exclusive`` leaves out the nested compiles, and
the exclusive seconds add up to the total. Rows are grouped by function (its signatures
together); "generated" rows are graphc's generated modules (fused kernels, the step and
training-loop functions), the others its hand-written kernels and helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

from bench_compile import FIT_CHILD, SHAPES
from common import print_table

RECORDER = textwrap.dedent(
    """
    import time as _time
    from numba.core import event as _event

    _records, _stack = [], []

    class _Recorder(_event.Listener):
        def on_start(self, event):
            _stack.append([_time.perf_counter(), 0.0])

        def on_end(self, event):
            began, nested = _stack.pop()
            inclusive = _time.perf_counter() - began
            if _stack:
                _stack[-1][1] += inclusive
            function = event.data["dispatcher"].py_func
            _records.append(
                [function.__module__, function.__qualname__, inclusive, inclusive - nested]
            )

    _event.register("numba:compile", _Recorder())
    """
)

REPORT = textwrap.dedent(
    """
    import json as _json
    print("RECORDS " + _json.dumps(_records))
    """
)


def run_child(model: str, cache: str, shape=None) -> tuple[list[float], list]:
    env = dict(
        os.environ,
        GRAPHC_CACHE_DIR=os.path.join(cache, "graphc"),
        NUMBA_CACHE_DIR=os.path.join(cache, "numba"),
    )
    code = RECORDER + FIT_CHILD.format(model=model, shape=shape or SHAPES[model]) + REPORT
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    lines = result.stdout.splitlines()
    records = json.loads(next(line for line in lines if line.startswith("RECORDS "))[8:])
    times = [float(value) for value in lines[-2].split()]
    return times, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet", choices=sorted(SHAPES))
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--warm", action="store_true", help="profile a second process")
    parser.add_argument(
        "--new-shape", default="", help="D1,D2,...: a second process at this data shape"
    )
    args = parser.parse_args()
    shape = tuple(int(d) for d in args.new_shape.split(",")) if args.new_shape else None
    with tempfile.TemporaryDirectory() as cache:
        if args.warm or shape:
            run_child(args.model, cache)
        (imported, bound, fit), records = run_child(args.model, cache, shape)
    groups: dict[tuple[str, str], list[float]] = {}
    for module, name, inclusive, exclusive in records:
        row = groups.setdefault((module, name), [0, 0.0, 0.0])
        row[0] += 1
        row[1] += inclusive
        row[2] += exclusive
    total = sum(row[2] for row in groups.values())
    generated = sum(row[2] for (module, _), row in groups.items() if "graphc_kernels" in module)
    start = "warm" if args.warm else "cold"
    if shape:
        start = f"new shape {shape} over a warm cache"
    print(
        f"model: {args.model}, {start} start: import {imported:.2f} s, set-up {bound:.2f} s,"
        f" fit {fit:.2f} s; {len(records)} compiles of {len(groups)} functions,"
        f" {total:.2f} s in all ({generated:.2f} s in generated modules)"
    )
    ranked = sorted(groups.items(), key=lambda item: -item[1][2])[: args.top]
    rows = []
    for (module, name), (count, inclusive, exclusive) in ranked:
        where = "generated" if "graphc_kernels" in module else module
        rows.append([f"{name} ({where})", count, inclusive, exclusive])
    print_table(["function", "compiles", "inclusive s", "exclusive s"], rows)


if __name__ == "__main__":
    main()
