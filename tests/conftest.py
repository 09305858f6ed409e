"""Test-wide settings: Numba counts its allocations (for the no-allocation test), and
kernels are cached in a per-session directory so tests never touch ~/.cache."""

import os
import tempfile

os.environ.setdefault("NUMBA_NRT_STATS", "1")
os.environ.setdefault("GRAPHC_CACHE_DIR", os.path.join(tempfile.gettempdir(), "graphc-test-cache"))

# Numba's cache goes where graphc routes it, even for test modules that import numba first.
from graphc.backend.cache_location import route_numba_cache  # noqa: E402

route_numba_cache()
