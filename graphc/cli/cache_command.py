"""``graphc cache info|clear|verify``: the on-disk cache of generated kernel sources and of
Numba's machine code (``graphc.backend.cache_location``)."""

from __future__ import annotations

import argparse
import pickle
import shutil
from pathlib import Path

from graphc.backend.cache_location import NUMBA_FOLDERS, cache_dir, numba_cache_root
from graphc.backend.source_cache import GENERATED_PACKAGE, import_generated, intact


def add_parser(commands, common) -> None:
    parser = commands.add_parser(
        "cache", parents=[common], help="the kernel cache: info, clear, verify"
    )
    parser.add_argument("action", choices=["info", "clear", "verify"])
    parser.set_defaults(run=run)


def _numba_folders() -> list[Path]:
    """The folders of Numba's cache that hold graphc's machine code: all of graphc's own
    root (every kernel code version), or in a folder the user named, graphc's folders."""
    root, owned = numba_cache_root()
    if not root.is_dir():
        return []
    if owned:
        return [root]
    return [p for p in root.iterdir() if p.is_dir() and p.name.startswith(NUMBA_FOLDERS)]


def _kinds() -> dict[str, list[Path]]:
    """The cache's files by kind."""
    kernels = cache_dir() / "kernels"
    numba = _numba_folders()
    return {
        "generated kernel sources": sorted(kernels.glob("k_*.py")) if kernels.is_dir() else [],
        "Numba indexes": sorted(f for d in numba for f in d.rglob("*.nbi")),
        "Numba machine code": sorted(f for d in numba for f in d.rglob("*.nbc")),
    }


def run(args: argparse.Namespace) -> int:
    return {"info": _info, "clear": _clear, "verify": _verify}[args.action]()


def _info() -> int:
    root, owned = numba_cache_root()
    print(f"location:   {cache_dir()} (GRAPHC_CACHE_DIR)")
    print(f"numba:      {root}{'' if owned else ' (NUMBA_CACHE_DIR: graphc folders only)'}")
    total = 0
    for kind, files in _kinds().items():
        size = sum(path.stat().st_size for path in files)
        total += size
        print(f"  {kind:<26} {len(files):6,} files {size / 2**20:9.1f} MiB")
    print(f"  {'in all':<26} {'':>12} {total / 2**20:9.1f} MiB")
    return 0


def _clear() -> int:
    removed = 0
    for directory in (cache_dir() / "kernels", *_numba_folders()):
        if directory.is_dir():
            removed += sum(1 for path in directory.rglob("*") if path.is_file())
            shutil.rmtree(directory)
    print(f"cleared:    {removed:,} files under {cache_dir()}")
    return 0


def _verify() -> int:
    """Read every entry (each generated source against the hash in its header, each Numba
    index and its machine code by unpickling), then, for a sample of generated kernels,
    load their machine code for every signature their index lists, as a run would, and
    compile each again from its source without the cache. A damaged entry is reported; the
    next run that needs it rebuilds it."""
    damaged = []
    kinds = _kinds()
    for path in kinds["generated kernel sources"]:
        if not intact(path):
            damaged.append(path)
    signatures: dict[str, list] = {}  # index file -> the signatures it lists
    for path in kinds["Numba indexes"] + kinds["Numba machine code"]:
        try:
            with open(path, "rb") as handle:
                if path.suffix == ".nbi":
                    pickle.load(handle)  # the Numba version, then (source stamp, overloads)
                    _, overloads = pickle.loads(handle.read())
                    signatures[str(path)] = [key[0] for key in overloads]
                else:
                    pickle.loads(handle.read())
        except (ImportError, AttributeError):
            pass  # whole, but its objects name a generated module not imported here
        except Exception:  # noqa: BLE001 - whatever unpickling a damaged file raises
            damaged.append(path)
    sample = [p for p in kinds["generated kernel sources"] if p not in damaged][:SAMPLE]
    compiled = 0
    for path in sample:
        try:
            compiled += _load_and_recompile(path, signatures)
        except Exception as exc:  # noqa: BLE001 - whatever a damaged module or entry raises
            damaged.append(f"{path} ({type(exc).__name__}: {exc})")
    checked = sum(len(files) for files in kinds.values())
    print(
        f"verified:   {checked:,} entries read; {len(sample)} kernel modules imported,"
        f" {compiled} signatures loaded from the cache and compiled again from the source"
    )
    for path in damaged:
        print(f"  damaged:  {path} (rebuilt by the next run that needs it)")
    return 1 if damaged else 0


SAMPLE = 3
"""How many generated kernels ``verify`` loads and compiles again (a compile takes
seconds)."""


def _load_and_recompile(path: Path, signatures: dict[str, list]) -> int:
    """Load each cached signature of the kernel module at ``path`` as a run does, and
    compile it again from the source without the cache; the signatures done."""
    import numba  # only here: info and clear never need it

    module = import_generated(path, f"{GENERATED_PACKAGE}.{path.stem}")
    done = 0
    for index, sigs in signatures.items():
        name = Path(index).name
        if not name.startswith(path.stem + "."):
            continue
        function = getattr(module, name[len(path.stem) + 1 :].split("-")[0])
        for sig in sigs:
            function.compile(sig)  # from the cache, as a run loads it
            numba.njit(function.py_func).compile(sig)  # and again, without the cache
            done += 1
    return done
