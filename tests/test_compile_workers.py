"""Compiling on every core (``graphc.codegen_cpu.compile_workers``): worker processes fill
Numba's disk cache before a bound graph's first call. The results never depend on them:
trained with workers, without, and with every worker killed as it is handed a kernel, a
model ends with the same bits; a warm start starts none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from numba.core import types

from graphc.codegen_cpu import compile_workers
from graphc.codegen_cpu.parts import PartFrame

CHILD = textwrap.dedent(
    """
    import hashlib, json
    import numpy as np
    import graphc as gc
    from graphc.codegen_cpu import compile_workers

    if {kill!r}:  # every worker dies as it is handed its first kernel
        original = compile_workers._Worker.compile

        def killed(worker, dispatcher, kinds):
            worker.process.kill()
            worker.process.wait()
            return original(worker, dispatcher, kinds)

        compile_workers._Worker.compile = killed
    rng = np.random.default_rng(0)
    x = rng.random((12, 20), dtype=np.float32)
    y = rng.integers(0, 10, 12).astype(np.float32)
    net = gc.models.mlp(hidden=(7,))
    model = gc.Model(net)
    model.fit(gc.io.NDArrayIter(x, y, batch_size=6), num_epoch=1, verbose=False)
    assert model.fit_path == "compiled", model.fit_path
    arg_params, _ = model.get_params()
    digest = hashlib.sha256()
    for name in sorted(arg_params):
        digest.update(name.encode() + np.ascontiguousarray(arg_params[name]).tobytes())
    print("RESULT " + json.dumps([digest.hexdigest(), compile_workers.statistics()]))
    """
)


def trained(cache, jobs: str, kill: bool = False) -> tuple[str, dict]:
    environment = dict(os.environ, GRAPHC_CACHE_DIR=str(cache), GRAPHC_COMPILE_JOBS=jobs)
    environment["NUMBA_CACHE_DIR"] = str(cache / "numba")
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(kill=kill)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    digest, counts = json.loads(line[len("RESULT ") :])
    return digest, counts


@pytest.mark.slow
def test_workers_compile_and_the_result_is_the_same_with_none_or_killed_ones(tmp_path):
    alone, counts = trained(tmp_path / "alone", "1")
    assert counts == {"started": 0, "farmed": 0}
    shared, counts = trained(tmp_path / "workers", "3")
    assert shared == alone
    assert counts["started"] == 2 and counts["farmed"] > 0, counts
    warm, counts = trained(tmp_path / "workers", "3")
    assert warm == alone
    assert counts == {"started": 0, "farmed": 0}, "a warm start started workers"
    killed, counts = trained(tmp_path / "killed", "2", kill=True)
    assert killed == alone
    assert counts["started"] >= 1 and counts["farmed"] == 0, counts


@pytest.mark.unit
@pytest.mark.parametrize("given", ["0", "-2", "two", "1.5"])
def test_a_bad_job_count_is_refused_by_name(monkeypatch, given):
    monkeypatch.setenv("GRAPHC_COMPILE_JOBS", given)
    with pytest.raises(ValueError, match="GRAPHC_COMPILE_JOBS must be a whole number"):
        compile_workers.compile_jobs()


@pytest.mark.unit
def test_the_job_count_defaults_to_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.delenv("GRAPHC_COMPILE_JOBS", raising=False)
    assert compile_workers.compile_jobs() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("GRAPHC_COMPILE_JOBS", " 3 ")
    assert compile_workers.compile_jobs() == 3


def test_a_round_hands_out_the_parallel_kernels_before_the_rest():
    """The generated function stays first; the ``parallel`` kernels and the part functions
    (the long compiles) come next and the rest last, each group in the caller's order."""

    class Job:
        def __init__(self, name, parallel):
            self.name, self.targetoptions = name, {"parallel": True} if parallel else {}

    jobs = [
        (Job("loop", False), ()),
        (Job("epilogue", False), ()),
        (Job("conv", True), ()),
        (Job("softmax", True), ()),
        (Job("gather", False), ()),
        (Job("conv part", False), (PartFrame(types.Tuple(())), types.int64)),
    ]
    ordered = [job.name for job, _ in compile_workers._longest_first(jobs)]
    assert ordered == ["loop", "conv", "softmax", "conv part", "epilogue", "gather"]
    assert compile_workers._longest_first(jobs[:2]) == jobs[:2]
