"""Numba's on-disk machine-code cache: a damaged entry is repaired, never fatal.

Numba keeps the compiled code of every ``cache=True`` kernel (graphc's own and the
generated ones) in index and data files. A truncated or corrupted entry makes loading
raise; ``call_repairing`` finds the entry in the traceback, warns once, drops it and calls
again, which recompiles.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from numba.core import caching

from graphc.backend.source_cache import warn_once

MAX_REPAIRS = 64


def call_repairing(function: Callable, *args):
    """Call a Numba kernel; whenever loading Numba's cached machine code for it (or for a
    function it calls) fails on a truncated or corrupted entry, warn once, drop that entry
    and call again, which recompiles. Any other error propagates untouched.

    The broken entry is found in the traceback: the frame of Numba's cache loader holds
    the index file it was reading. Should Numba's internals change so that none is found,
    the error propagates, as any other would."""
    for _ in range(MAX_REPAIRS):
        try:
            return function(*args)
        except Exception as exc:
            broken = _numba_cache_files(exc)
            if not broken:
                raise
            for index_path in broken:
                warn_once(
                    Path(index_path), f"could not be loaded ({type(exc).__name__}); recompiling"
                )
                _drop_index(Path(index_path))
    return function(*args)


def _numba_cache_files(exc: BaseException) -> list[str]:
    """Index files of the Numba caches whose loading raised ``exc``."""
    paths = []
    traceback = exc.__traceback__
    while traceback is not None:
        frame = traceback.tb_frame
        if frame.f_code.co_filename.endswith(os.path.join("numba", "core", "caching.py")):
            owner = frame.f_locals.get("self")
            index_path = getattr(owner, "_index_path", None)
            if index_path and index_path not in paths:
                paths.append(index_path)
        traceback = traceback.tb_next
    return paths


def _drop_index(index_path: Path) -> None:
    """Remove a Numba cache index and the data files that belong to it."""
    stem = index_path.name[: -len(".nbi")] if index_path.name.endswith(".nbi") else index_path.name
    for entry in index_path.parent.glob(stem + "*"):
        entry.unlink(missing_ok=True)


def _locked_save(original):
    """Numba's ``IndexDataCacheFile.save`` under an exclusive lock on the function's index.

    Numba saves an entry unlocked: it reads the index, takes the first free data-file name,
    writes the index, then the data. Two processes saving two signatures of one function at
    once (compile workers, test workers) can both take ``....1.nbc``, leaving an index that
    names one signature over the other's code, a cache that fails in every later process.
    Where no lock file can be made (a read-only cache), the save goes on unlocked."""

    def save(self, key, data):
        try:
            handle = open(self._index_path + ".lock", "a+")  # noqa: SIM115 - closed below
        except OSError:
            return original(self, key, data)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            return original(self, key, data)
        finally:
            handle.close()  # closing releases the lock

    save.__wrapped__ = original
    return save


if not hasattr(caching.IndexDataCacheFile.save, "__wrapped__"):
    caching.IndexDataCacheFile.save = _locked_save(caching.IndexDataCacheFile.save)
