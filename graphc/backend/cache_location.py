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


NUMBA_FOLDERS = ("codegen_cpu_", "codegen_cuda_", "kernels_")
"""The prefixes of the folders Numba makes for graphc's kernels inside its cache (one per
source folder: the hand-written kernels' and the generated ones')."""
_routed: list[bool] = []


def route_numba_cache() -> None:
    """Keep Numba's machine code for graphc's kernels under
    ``<cache>/numba/<kernel code version>`` rather than beside the installed sources, unless
    the user has set ``NUMBA_CACHE_DIR``."""
    if not _routed:
        _routed.append("NUMBA_CACHE_DIR" not in os.environ)
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba" / kernel_code_version()))


def numba_cache_root() -> tuple[Path, bool]:
    """Where Numba's machine code for graphc lives, and whether graphc owns the folder
    (``<cache>/numba``, every kernel code version in it) or the user named it with
    ``NUMBA_CACHE_DIR`` (shared: only graphc's folders in it are graphc's)."""
    if _routed and not _routed[0]:
        return Path(os.environ["NUMBA_CACHE_DIR"]), False
    return cache_dir() / "numba", True
