"""The machine a table was measured on: CPU model, cores, memory, GPU, Python, libraries."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version


def describe() -> dict:
    """CPU model (``/proc/cpuinfo``), logical cores, memory, GPUs (``nvidia-smi``), OS and
    the versions of Python and graphc's own libraries."""
    libraries = {}
    for name in ("graphc", "numpy", "numba", "llvmlite", "scipy"):
        try:
            libraries[name] = version(name)
        except PackageNotFoundError:
            libraries[name] = "not installed"
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "gpus": gpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": libraries,
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: platform's answer below
    return platform.processor() or platform.machine()


def gpus() -> list[str]:
    """The names of the NVIDIA GPUs ``nvidia-smi`` lists; empty without it."""
    if shutil.which("nvidia-smi") is None:
        return []
    found = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    return [line.strip() for line in found.stdout.splitlines() if line.strip()]


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None
