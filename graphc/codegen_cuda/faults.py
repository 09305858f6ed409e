"""Faults a CUDA kernel finds in its data (a label or an index out of range): a kernel
cannot raise, so it records the first flat position where it found one in a device flag
with an atomic minimum (the same position whatever the threads' order), and its launch
reads the flag back after the kernel and raises on the host, naming that position.
Reading the flag waits for the kernel: only kernels that check data pay it."""

from __future__ import annotations

import numpy as np

from graphc.codegen_cuda.device import cuda_module

NO_FAULT = 2**62
"""The flag's value while no fault was found (above any position)."""


class FaultFlag:
    """One kernel's flag on the device and the message its fault raises.

    ``message`` is formatted with ``position``; ``explain(position)``, when given, builds
    the exception itself (a loss head's error names the label value too)."""

    def __init__(self, message: str = "", explain=None) -> None:
        self.flag = cuda_module().to_device(np.array([NO_FAULT], dtype=np.int64))
        self.message = message
        self.explain = explain

    def check(self, arguments: tuple) -> None:
        """Raise if the kernel just launched found a fault; the flag is cleared first, so
        a later launch starts clean."""
        position = int(self.flag.copy_to_host()[0])
        if position == NO_FAULT:
            return
        self.flag.copy_to_device(np.array([NO_FAULT], dtype=np.int64))
        if self.explain is not None:
            raise self.explain(position, arguments)
        raise ValueError(self.message.format(position=position))
