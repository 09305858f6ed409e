"""The kernel cache: generated kernel source in content-addressed files, in memory and on disk.

Generated source is written to ``<cache dir>/kernels/k_<key>.py`` (``GRAPHC_CACHE_DIR``,
default ``~/.cache/graphc``) and imported from there, so Numba's own ``cache=True`` keeps the
compiled machine code (under ``<cache dir>/numba``, see ``graphc.backend.cache_location``) and a
second process loads it instead of compiling. graphc's hand-written kernels are cached the
same way by Numba. The key
hashes the source together with the versions of graphc, Numba and llvmlite and the target,
so an upgrade never loads a stale kernel.

Writes go to a temporary file that is renamed into place under an exclusive lock, so two
processes compiling the same graph at once both succeed. Every file starts with a header
holding the hash of its body: a truncated or corrupted entry is detected, reported once as
a :class:`KernelCacheWarning`, and rewritten (Numba's cached machine code for it is dropped
too); it never crashes a run.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.util
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from graphc.backend.cache_location import cache_dir, kernel_code_version

_HEADER = "# graphc kernel sha256="
GENERATED_PACKAGE = "graphc_kernels"
"""The package name generated kernel modules are imported under (no such package exists:
each module is imported from its file)."""
_loaded: dict[str, Callable] = {}
REBUILT: set[str] = set()
"""The kernel files this process found damaged and rewrote (``graphc compile --explain``)."""
_warned: set[str] = set()


class KernelCacheWarning(UserWarning):
    """A cache entry was unreadable or corrupt and has been rebuilt."""


def version_salt(target: str = "cpu") -> str:
    """What else a kernel's compiled code depends on: the versions of graphc and of the
    compiler (read from the installed metadata, so that this module imports no Numba; for
    CUDA also numba-cuda's, whose own cache keys the machine code by the device's compute
    capability), the kernels it calls (``kernel_code_version``) and the target."""
    compilers = ("graphc", "numba", "llvmlite") + (("numba-cuda",) if target == "cuda" else ())
    versions = ";".join(f"{name}={_installed(name)}" for name in compilers)
    return f"{versions};kernels={kernel_code_version()};target={target}"


@functools.cache  # every kernel load keys by it; reading the metadata costs ~1 ms a call
def _installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # run from a source tree: the kernel sources still key it
        return "unknown"


def cache_key(source: str, target: str = "cpu") -> str:
    return hashlib.sha256((version_salt(target) + "\n" + source).encode()).hexdigest()[:32]


def _body_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def load_kernel(source: str, function_name: str = "kernel", target: str = "cpu") -> Callable:
    """The compiled function ``function_name`` defined by ``source`` (a module of generated
    kernel code for ``target``).

    The source is cached in memory by key and on disk as a content-addressed file."""
    key = cache_key(source, target)
    cached = _loaded.get(key)
    if cached is not None:
        return cached
    directory = cache_dir() / "kernels"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"k_{key}.py"
    _ensure_file(path, source)
    module = _import(path, f"{GENERATED_PACKAGE}.k_{key}")
    function = getattr(module, function_name)
    _loaded[key] = function
    return function


def kernel_function(module: str, name: str) -> Callable:
    """A compiled kernel by module and name, for generated code that calls other kernels
    (a training loop its optimizer update). A generated kernel module is found among the
    loaded ones (a caller is always lowered after what it calls), else in its file (a
    compile worker, ``codegen_cpu.compile_workers``, loads only what it compiles)."""
    loaded = sys.modules.get(module)
    if loaded is None and module.startswith(GENERATED_PACKAGE + "."):
        path = cache_dir() / "kernels" / (module[len(GENERATED_PACKAGE) + 1 :] + ".py")
        loaded = import_generated(path, module)
    if loaded is None:
        loaded = importlib.import_module(module)
    return getattr(loaded, name)


def import_generated(path: str | Path, module_name: str):
    """The generated kernel module ``module_name`` imported from its cache file ``path``
    (one already imported is reused)."""
    loaded = sys.modules.get(module_name)
    return loaded if loaded is not None else _import(Path(path), module_name)


def _ensure_file(path: Path, source: str) -> None:
    expected = _HEADER + _body_hash(source) + "\n" + source
    status = _check(path, source)
    if status == "ok":
        return
    if status == "corrupt":
        warn_once(path, "is corrupt or truncated; it has been rebuilt")
        REBUILT.add(path.name)
    with _locked(path.parent / ".lock"):
        if _check(path, source) == "ok":
            return
        _drop_numba_cache(path)
        _write_atomic(path, expected)


def _check(path: Path, source: str) -> str:
    """'ok', 'missing' or 'corrupt'."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "missing"
    except (OSError, UnicodeDecodeError):
        return "corrupt"
    if not _intact_text(text) or text.partition("\n")[2] != source:
        return "corrupt"
    return "ok"


def intact(path: Path) -> bool:
    """Whether a cached kernel file reads back whole: its body matches the hash in its
    header (``graphc cache verify``)."""
    try:
        return _intact_text(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return False


def _intact_text(text: str) -> bool:
    header, _, body = text.partition("\n")
    return header == _HEADER + _body_hash(body)


def warn_once(path: Path, what: str) -> None:
    """Report a damaged cache entry once per process."""
    if str(path) in _warned:
        return
    _warned.add(str(path))
    warnings.warn(f"graphc kernel cache entry {path} {what}", KernelCacheWarning, stacklevel=4)


class _locked:
    """An exclusive advisory lock on a file, held for a ``with`` block."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self):
        self.handle = open(self.path, "a+")  # noqa: SIM115 - closed in __exit__
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _write_atomic(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _drop_numba_cache(path: Path) -> None:
    """Remove Numba's cached machine code for a kernel file we are about to rewrite."""
    pycache = path.parent / "__pycache__"
    if not pycache.is_dir():
        return
    for entry in pycache.glob(path.stem + ".*"):
        entry.unlink(missing_ok=True)


def _import(path: Path, module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(module_name, None)
        raise
    return module
