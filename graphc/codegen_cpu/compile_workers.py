"""Compiling a bound graph's kernels on every core: worker processes fill Numba's disk cache
before the first call needs it.

Numba compiles one function at a time and holds the GIL while it does, so a cold start
used one core (LeNet: about 90 compiles of 60 functions, a minute on this 2-core machine,
``benchmarks/profile_compile.py``). The entries of a generated sequence or training loop
are known before its first call: every kernel and the argument types it is called with,
and the loop's own types. :func:`compile_ahead` hands those that are neither compiled in
this process nor in Numba's disk cache to worker processes (``python -m
graphc.codegen_cpu.compile_workers``), compiles a share itself meanwhile, and returns
when all are in the cache; the caller then finds its entries as before, each a load from
the disk cache. Nothing here decides what is called: whatever a worker failed to do, the
caller compiles itself, so the result is the same with any number of workers.

``GRAPHC_COMPILE_JOBS`` sets how many processes compile at once, this one included (1:
this process alone); by default, one per core this process may run on. Workers start at
the first cold compile that has work for them and serve the process until it exits; a
warm start starts none.

The messages between this process and its workers are pickled Numba types over a pipe to
a child of the same installation: never a file, never read from anyone else.
"""

from __future__ import annotations

import atexit
import os
import pickle
import queue
import site
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence

from graphc.backend.source_cache import GENERATED_PACKAGE, import_generated, kernel_function
from graphc.codegen_cpu.compile_log import COMPILED, WORKER, note_ahead, say
from graphc.codegen_cpu.parts import PartFrame
from graphc.codegen_cpu.threads import local_ranks

ENVIRONMENT = "GRAPHC_COMPILE_JOBS"

_workers: list[_Worker] = []
_lock = threading.Lock()
_counts = {"started": 0, "farmed": 0}


def statistics() -> dict[str, int]:
    """This process's workers so far: how many were started, how many compiles they did."""
    return dict(_counts)


def compile_jobs() -> int:
    """How many processes compile at once, this one included."""
    given = os.environ.get(ENVIRONMENT, "").strip()
    if not given:  # every core, shared among the ranks of an MPI job on this machine
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return max(1, (cores or os.cpu_count() or 1) // local_ranks())
    try:
        count = int(given)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"{ENVIRONMENT} must be a whole number of processes >= 1, got {given!r}")
    return count


def compile_ahead(jobs: Sequence[tuple]) -> int:
    """Compile each ``(dispatcher, argument types)`` of ``jobs`` that is not compiled yet,
    here or on disk, spreading them over worker processes and this one (the first jobs
    first: put the longest first). Returns how many went to workers. Never raises for a
    job: a job that fails is left to the caller, whose own compile reports the error."""
    pending = []
    seen = set()
    for dispatcher, kinds in jobs:
        key = (id(dispatcher), tuple(kinds))
        if key not in seen and _cold(dispatcher, tuple(kinds)):
            seen.add(key)
            pending.append((dispatcher, tuple(kinds)))
    pending = _longest_first(pending)
    helpers = min(compile_jobs() - 1, len(pending) - 1)
    if helpers < 1:
        return 0
    start = time.perf_counter()
    work: queue.SimpleQueue = queue.SimpleQueue()
    for job in pending:
        work.put(job)
    with _lock:
        try:
            workers = _pool(helpers)
        except Exception:  # no worker could start (no processes left, say): compile here
            workers = []
        threads = [
            threading.Thread(target=_feed, args=(worker, work), daemon=True) for worker in workers
        ]
        for thread in threads:
            thread.start()
        try:
            _compile_here(work)
            for thread in threads:
                thread.join()
        except BaseException:  # interrupted: a worker may be mid-request, so none is kept
            _drain(work)
            _close_workers(kill=True)
            raise
        farmed = sum(worker.done for worker in workers)
        for worker in workers:
            worker.done = 0
        _counts["farmed"] += farmed
        _workers[:] = [worker for worker in _workers if worker.alive()]
    plural = "s" if helpers > 1 else ""
    say(
        f"{len(pending)} functions not in the disk cache: {farmed} compiled by {helpers}"
        f" worker{plural}, the rest here, in {time.perf_counter() - start:.2f} s"
    )
    return farmed


def _longest_first(pending: list[tuple]) -> list[tuple]:
    """The jobs with the likely longest first, so that the round does not end on one
    process compiling a long job while the others wait: the first job (the caller puts the
    generated sequence or training loop there), then the heavy ones, then the rest
    (0.1-0.5 s), each group in the caller's order. Heavy: the ``parallel`` kernels (each
    ``prange`` is a function Numba compiles with everything it calls) and the kernels' part
    functions (``parts``: they hold the im2col, GEMM and gate loops, 0.6-1.6 s with their
    callees). Measured on LeNet's cold round: the worker's last job was a convolution
    gradient (2.1 s) while the caller sat idle."""
    if len(pending) < 3:
        return pending
    rest = pending[1:]
    heavy = [job for job in rest if _heavy(job)]
    light = [job for job in rest if not _heavy(job)]
    return [pending[0], *heavy, *light]


def _heavy(job: tuple) -> bool:
    dispatcher, kinds = job
    if dispatcher.targetoptions.get("parallel"):
        return True
    return bool(kinds) and isinstance(kinds[0], PartFrame)


def _compile_here(work: queue.SimpleQueue) -> None:
    """This process's share: jobs taken from ``work`` until none is left."""
    while True:
        try:
            dispatcher, kinds = work.get_nowait()
        except queue.Empty:
            return
        began = time.perf_counter()
        try:
            dispatcher.compile(kinds)
        except Exception:  # the caller compiles it again and reports the error
            continue
        note_ahead(dispatcher, kinds, COMPILED, time.perf_counter() - began)


def _drain(work: queue.SimpleQueue) -> None:
    while True:
        try:
            work.get_nowait()
        except queue.Empty:
            return


def _cold(dispatcher, kinds: tuple) -> bool:
    """Whether ``dispatcher.compile(kinds)`` would compile: not compiled in this process
    and not in Numba's disk cache. A dispatcher without a disk cache, or whose cache cannot
    be read, is left to the caller (a worker's compile would not reach this process)."""
    if kinds in dispatcher.overloads:
        return False
    try:
        cache = dispatcher._cache
        key = cache._index_key(kinds, dispatcher.targetctx.codegen())
        return key not in cache._cache_file._load_index()
    except Exception:  # no disk cache (cache=False), or a damaged index: the caller's call
        return False


class _Worker:
    """One compile process and the pipe to it."""

    def __init__(self) -> None:
        import numba

        # Numba's cache folder as this process read it when Numba was imported (the
        # environment may have changed since), and no workers of its own.
        environment = dict(
            os.environ, **{ENVIRONMENT: "1", "NUMBA_CACHE_DIR": str(numba.config.CACHE_DIR)}
        )
        # The graphc this process imported: a source tree put on sys.path by hand is put on
        # the worker's path (an installed graphc is found there already, and site-packages
        # ahead of the standard library could shadow it).
        source_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if source_root not in (*site.getsitepackages(), site.getusersitepackages()):
            paths = [source_root, environment.get("PYTHONPATH", "")]
            environment["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "graphc.codegen_cpu.compile_workers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=environment,
        )
        self.done = 0

    def alive(self) -> bool:
        return self.process.poll() is None

    def compile(self, dispatcher, kinds: tuple) -> bool:
        """Have the worker compile ``dispatcher`` for ``kinds`` into the disk cache; False
        when it could not (the worker is then closed)."""
        python_function = dispatcher.py_func
        module = python_function.__module__
        path = getattr(sys.modules.get(module), "__file__", None)  # a generated module's
        request = (module, path, python_function.__name__, kinds)
        try:
            _send(self.process.stdin, request)
            succeeded, seconds, warned = _receive(self.process.stdout)
        except (OSError, EOFError, pickle.PickleError, struct.error):
            self.close()
            return False
        for category, message in warned:
            warnings.warn(f"(compiled in a worker) {message}", _category(category), stacklevel=2)
        if succeeded:
            note_ahead(dispatcher, kinds, WORKER, seconds)
        return succeeded

    def close(self, kill: bool = False) -> None:
        if kill and self.alive():
            self.process.kill()
        if self.alive():
            try:
                self.process.stdin.close()
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()


def _feed(worker: _Worker, work: queue.SimpleQueue) -> None:
    while worker.alive():
        try:
            dispatcher, kinds = work.get_nowait()
        except queue.Empty:
            return
        try:
            if worker.compile(dispatcher, kinds):
                worker.done += 1
        except Exception:  # a type that does not pickle, say: the caller compiles it
            worker.close(kill=True)
            return


def _pool(count: int) -> list[_Worker]:
    """``count`` running workers, started if need be (they start in the background while
    this process compiles its own share)."""
    _workers[:] = [worker for worker in _workers if worker.alive()]
    while len(_workers) < count:
        try:
            _workers.append(_Worker())
        except OSError:
            break
        _counts["started"] += 1
    return _workers[:count]


@atexit.register
def _close_workers(kill: bool = False) -> None:
    for worker in _workers:
        worker.close(kill)
    _workers.clear()


def _forget_workers() -> None:
    """In a forked child: the workers and their pipes are the parent's; start afresh."""
    _workers.clear()
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def _category(name: tuple[str, str]) -> type[Warning]:
    module, attribute = name
    found = getattr(sys.modules.get(module), attribute, None)
    return found if isinstance(found, type) and issubclass(found, Warning) else UserWarning


def _send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream):
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("the compile worker closed its pipe")
    (length,) = struct.unpack("<Q", header)
    data = stream.read(length)
    if len(data) < length:
        raise EOFError("the compile worker closed its pipe")
    return pickle.loads(data)


def _function(module: str, path: str | None, name: str):
    """The dispatcher a request names; a generated module is imported from the file the
    requesting process imported it from (its cache folder may have moved since this
    worker started)."""
    if module.startswith(GENERATED_PACKAGE + ".") and path is not None:
        import_generated(path, module)
    return kernel_function(module, name)


def _serve(requests, replies) -> None:
    """A worker's loop: compile each request into Numba's disk cache, answer
    ``(succeeded, warnings)``, until the pipe closes."""
    while True:
        try:
            module, path, name, kinds = _receive(requests)
        except EOFError:
            return
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                _function(module, path, name).compile(kinds)
                succeeded = True
            except Exception:
                succeeded = False
        warned = [
            ((item.category.__module__, item.category.__qualname__), str(item.message))
            for item in caught
        ]
        _send(replies, (succeeded, time.perf_counter() - start, warned))


if __name__ == "__main__":
    # The protocol owns the pipe this process was given as its stdout; anything printed
    # while compiling goes to stderr instead.
    _replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(sys.stdin.buffer, _replies)
