"""numba-cuda, imported on demand, and what to tell a user it is missing for.

Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``, set before Numba is imported) runs every
kernel in Python threads, without a GPU or the CUDA toolkit: the CI tier of this backend.
"""

from __future__ import annotations

import os
import warnings

MISSING_EXTRA = (
    "the CUDA backend needs numba-cuda: pip install 'graphc[cuda]' (numba-cuda with the CUDA"
    " runtime wheels; only the NVIDIA driver is needed besides)"
)


def cuda_module():
    """``numba.cuda``, or ImportError saying how to install it."""
    try:
        from numba import cuda
        from numba.core.errors import NumbaPerformanceWarning
    except ImportError as error:  # pragma: no cover - the test extra installs it
        raise ImportError(MISSING_EXTRA) from error
    # numba-cuda warns whenever a launch is configured with fewer than 128 blocks, a hint for
    # hand-written kernels; graphc sizes every grid from the shapes, and a small model's
    # kernels are small by nature, so the warning would only repeat that at every bind.
    warnings.filterwarnings(
        "ignore", message="Grid size .* under-utilization", category=NumbaPerformanceWarning
    )
    return cuda


def simulated() -> bool:
    """Whether kernels run under Numba's CUDA simulator in this process."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def require_device(ctx=None) -> None:
    """Raise RuntimeError naming what is missing unless a GPU (or the simulator) is there
    for ``ctx`` (a ``gc.gpu(n)`` context; any GPU when None).

    Only ``gpu(0)`` binds for now: every allocation and launch goes to the process's current
    device, so binding ``gpu(1)`` would silently run on the first one."""
    cuda = cuda_module()
    if not cuda.is_available():
        raise RuntimeError(
            "no CUDA GPU is usable in this process (numba.cuda.is_available() is False: no"
            " NVIDIA driver or device); set NUMBA_ENABLE_CUDASIM=1 before importing graphc to"
            " run the CUDA kernels in Numba's simulator"
        )
    device_id = 0 if ctx is None else ctx.device_id
    if device_id != 0:
        raise RuntimeError(
            f"the CUDA backend binds to gpu(0) only for now ({len(cuda.gpus)} GPU(s) here);"
            " select another GPU with CUDA_VISIBLE_DEVICES, which makes it gpu(0)"
        )
