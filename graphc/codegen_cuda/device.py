"""numba-cuda, imported on demand, and what to tell a user it is missing for.

Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``, set before Numba is imported) runs every
kernel in Python threads, without a GPU or the CUDA toolkit: the CI tier of this backend.
"""

from __future__ import annotations

import os

MISSING_EXTRA = (
    "the CUDA backend needs numba-cuda: pip install 'graphc[cuda]' (numba-cuda with the CUDA"
    " runtime wheels; only the NVIDIA driver is needed besides)"
)


def cuda_module():
    """``numba.cuda``, or ImportError saying how to install it."""
    try:
        from numba import cuda
    except ImportError as error:  # pragma: no cover - the test extra installs it
        raise ImportError(MISSING_EXTRA) from error
    return cuda


def simulated() -> bool:
    """Whether kernels run under Numba's CUDA simulator in this process."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def require_device() -> None:
    """Raise RuntimeError naming what is missing unless a GPU (or the simulator) is there."""
    cuda = cuda_module()
    if not cuda.is_available():
        raise RuntimeError(
            "no CUDA GPU is usable in this process (numba.cuda.is_available() is False: no"
            " NVIDIA driver or device); set NUMBA_ENABLE_CUDASIM=1 before importing graphc to"
            " run the CUDA kernels in Numba's simulator"
        )
