"""Where graphc keeps compiled code; importable before Numba is (Numba reads its cache
location once, when it is first imported)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The root of graphc's on-disk cache: ``GRAPHC_CACHE_DIR``, else ``~/.cache/graphc``."""
    root = os.environ.get("GRAPHC_CACHE_DIR") or os.path.join(Path.home(), ".cache", "graphc")
    return Path(root)


def route_numba_cache() -> None:
    """Keep Numba's machine code for graphc's kernels under ``<cache>/numba`` rather than
    beside the installed sources, unless the user has set ``NUMBA_CACHE_DIR``."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba"))
