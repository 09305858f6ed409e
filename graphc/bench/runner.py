"""Running every system on every task, each run a process of its own.

Per model and system: without ``--quick``, one process in empty caches (a new temporary
``GRAPHC_CACHE_DIR``, ``NUMBA_CACHE_DIR``, PyTorch Inductor's and PyTensor's compile
folders) that stops after the first step: the cold first step. Then ``repeat`` processes in
those caches, now warm, each timing its first step and a whole training run. With
``--quick`` only the warm processes run, in the caches the environment names.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from graphc.bench.systems import PEERS_DIR, System
from graphc.bench.tasks import TaskFile

TIMEOUT_S = 3600
"""Of one process: a hung peer stops the table, not the machine."""


@dataclass
class Row:
    """One model trained by one system: ``status`` is ``ok``, ``absent``, ``not run`` or
    ``failed``; ``reason`` says why for the last three."""

    model: str
    system: System
    status: str
    reason: str = ""
    version: str = ""
    train_s: list[float] = field(default_factory=list)
    first_step_cold_s: float | None = None
    first_step_warm_s: list[float] = field(default_factory=list)
    first_loss: float | None = None
    final_loss: float | None = None
    quality: float | None = None
    samples: int = 0
    details: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float | None:
        return statistics.median(self.train_s) if self.train_s else None

    @property
    def samples_per_s(self) -> float | None:
        return self.samples / self.seconds if self.seconds else None


def check_interpreter(name: str, python: str, import_name: str) -> str:
    """The version of ``import_name`` in the interpreter ``python``; ValueError saying what
    is wrong when the file is not there or the framework does not import."""
    if not os.path.isfile(python) or not os.access(python, os.X_OK):
        raise ValueError(f"--peer {name}={python}: no executable file there")
    code = f"import {import_name}, numpy; print({import_name}.__version__)"
    found = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    if found.returncode != 0:
        last = (found.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"--peer {name}={python}: cannot import {import_name} there ({last})")
    return found.stdout.strip()


def cuda_missing() -> str | None:
    """Why graphc's CUDA row cannot run here, or None when a GPU is usable."""
    code = "from numba import cuda; print(cuda.is_available())"
    environment = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment
    )
    if found.returncode != 0:
        return "numba-cuda is not installed (pip install 'graphc[cuda]')"
    if found.stdout.strip() != "True":
        return "no CUDA GPU is usable on this machine"
    return None


def run_system(
    system: System, task: TaskFile, python: str, repeat: int, quick: bool, workdir: str
) -> Row:
    """Train ``task`` with ``system`` (cold first step unless ``quick``, then ``repeat``
    timed runs); a process that fails makes the row ``failed`` with its last words."""
    row = Row(task.model, system, "ok", samples=task.samples)
    caches = None if quick else tempfile.mkdtemp(prefix=f"{system.name}-", dir=workdir)
    try:
        if not quick:
            cold = _run_once(system, task, python, caches, workdir, first_step_only=True)
            row.first_step_cold_s = cold["first_step_s"]
        for _ in range(repeat):
            result = _run_once(system, task, python, caches, workdir, first_step_only=False)
            row.train_s.append(result["train_s"])
            row.first_step_warm_s.append(result["first_step_s"])
    except RuntimeError as error:
        row.status, row.reason = "failed", str(error)
        return row
    except subprocess.TimeoutExpired:
        row.status, row.reason = "failed", f"no result within {TIMEOUT_S} s"
        return row
    row.version = result["version"]
    row.first_loss, row.final_loss = result["first_loss"], result["final_loss"]
    row.quality = result["quality"]
    row.details = {key: result[key] for key in ("threads", "fit_path") if key in result}
    return row


def _command(system: System, python: str) -> list[str]:
    if system.script.endswith(".py"):
        return [python, str(PEERS_DIR / system.script)]
    return [python, "-m", system.script]


def _environment(system: System, caches: str | None) -> dict[str, str]:
    environment = dict(os.environ, **system.env)
    if caches is not None:
        environment["GRAPHC_CACHE_DIR"] = os.path.join(caches, "graphc")
        environment["NUMBA_CACHE_DIR"] = os.path.join(caches, "numba")
        environment["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(caches, "inductor")
        flags = environment.get("PYTENSOR_FLAGS", "")
        compiledir = f"base_compiledir={os.path.join(caches, 'pytensor')}"
        environment["PYTENSOR_FLAGS"] = f"{flags},{compiledir}" if flags else compiledir
    return environment


def _run_once(system, task, python, caches, workdir, first_step_only: bool) -> dict:
    out = os.path.join(workdir, f"{task.model}-{system.name}.json")
    command = [*_command(system, python), "--task", task.path, "--out", out]
    if system.mode:
        command += ["--mode", system.mode]
    if first_step_only:
        command.append("--first-step-only")
    finished = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=_environment(system, caches),
        timeout=TIMEOUT_S,
    )
    if finished.returncode != 0:
        lines = finished.stderr.strip().splitlines() or [f"exit status {finished.returncode}"]
        raise RuntimeError(lines[-1])
    try:
        return json.loads(Path(out).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # a peer that exits 0 without its result
        raise RuntimeError(f"exit status 0 but no readable result in {out}: {error}") from None
