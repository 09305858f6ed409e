"""Where graphc keeps compiled code; importable before Numba is (Numba reads its cache
location once, when it is first imported)."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path


def cache_dir() -> Path:
    """The root of graphc's on-disk cache: ``GRAPHC_CACHE_DIR``, else ``~/.cache/graphc``."""
    root = os.environ.get("GRAPHC_CACHE_DIR") or os.path.join(Path.home(), ".cache", "graphc")
    return Path(root)


@functools.cache
def kernel_code_version() -> str:
    """A hash of the backends' kernel sources (``graphc/codegen_*/*.py``).

    Numba checks a cached function against its own file only, never against the functions
    it calls: a generated step that calls a convolution kernel would keep the machine code
    of the old convolution after conv.py changed. So the kernel code's hash is part of
    every cache key and of the Numba cache's folder, and a change to any kernel source
    starts from fresh entries."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.glob("codegen_*/*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def route_numba_cache() -> None:
    """Keep Numba's machine code for graphc's kernels under
    ``<cache>/numba/<kernel code version>`` rather than beside the installed sources, unless
    the user has set ``NUMBA_CACHE_DIR``."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba" / kernel_code_version()))
