"""Devices, as MXNet names them: ``gc.cpu()``, ``gc.gpu(0)``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Context:
    device_type: str
    device_id: int = 0

    def __str__(self) -> str:
        return f"{self.device_type}({self.device_id})"


def cpu(device_id: int = 0) -> Context:
    """The CPU (there is one; the id is accepted for MXNet compatibility)."""
    return Context("cpu", device_id)


def gpu(device_id: int = 0) -> Context:
    """An NVIDIA GPU by index."""
    return Context("gpu", device_id)
