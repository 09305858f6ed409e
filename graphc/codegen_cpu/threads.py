"""How many threads the CPU kernels use: one setting for every parallel loop graphc runs.

graphc uses every core by default, as PyTorch and MXNet do; ``gc.set_num_threads(n)`` or
the ``GRAPHC_NUM_THREADS`` environment variable choose fewer.

Where the threads come from. Numba's ``np.dot`` calls SciPy's OpenBLAS, and NumPy has an
OpenBLAS of its own: two thread pools that spin against each other when calls alternate,
and a threaded GEMM next to im2col, pooling and gate loops that stay on one core (LeNet's
convolution passes reached 0.41-0.73 of NumPy's matmul at 2 threads that way). So graphc
partitions the work itself: every kernel that pays for it splits its rows (images, output
rows, hidden units of an LSTM) into ``num_threads`` parts, one per thread of Numba's
parallel loop, and each part calls single-threaded BLAS on its own slice of the workspace.
One pool (Numba's) runs everything in parallel; SciPy's OpenBLAS is held at one thread for
the duration of each compiled call and given back its own count afterwards, so a user's
SciPy code keeps its threads. graphc calls NumPy's BLAS nowhere while it trains (the NumPy
reference executor, the oracle, is the only NumPy matmul), so that pool is left alone.

The thread count is bound with the kernels: it reaches every lowering as the bind option
``num_threads`` (the partition), so a result depends on the count only through the order in
which per-part partial sums are added (the weight gradients of a convolution and an LSTM,
a dot that sums over many rows, a fused bias-gradient reduction), and a given count gives the same bits on every run: the parts are fixed at
bind, never scheduled dynamically, and their partial sums are added in part order.

Measured on the 2-core development machine: a Numba parallel region costs 1.7 us with the
OpenMP threading layer and 116 us with the ``workqueue`` layer Numba falls back to without
OpenMP or TBB, so small kernels stay serial whatever the count (``parallel_parts``).
"""

from __future__ import annotations

import os

import numba

ENVIRONMENT = "GRAPHC_NUM_THREADS"

_state: dict = {"threads": None, "blas": None}


def _maximum() -> int:
    """Numba's pool size, fixed when the process starts (NUMBA_NUM_THREADS)."""
    return int(numba.config.NUMBA_NUM_THREADS)


def _checked(count, source: str) -> int:
    try:
        value = int(count)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: the thread count must be an integer, got {count!r}") from None
    if value != count and not isinstance(count, str):
        raise ValueError(f"{source}: the thread count must be an integer, got {count!r}")
    if not 1 <= value <= _maximum():
        raise ValueError(
            f"{source}: the thread count must be between 1 and {_maximum()} (Numba's pool,"
            f" NUMBA_NUM_THREADS, is fixed when the process starts), got {value}"
        )
    return value


LOCAL_RANKS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")
"""Where MPI launchers say how many ranks they started on this machine (MPICH's Hydra,
Open MPI)."""


def local_ranks() -> int:
    """How many processes of an MPI job share this machine's cores (1 outside one)."""
    for name in LOCAL_RANKS:
        given = os.environ.get(name, "").strip()
        if given.isdigit() and int(given) >= 1:
            return int(given)
    return 1


def get_num_threads() -> int:
    """The threads graphc's CPU kernels run on: ``gc.set_num_threads``'s value, else
    ``GRAPHC_NUM_THREADS``, else every core Numba sees, shared among the ranks of an MPI job
    on this machine (two ranks on two cores: one thread each, as ``torchrun`` sets
    ``OMP_NUM_THREADS=1``: more would only contend)."""
    if _state["threads"] is None:
        given = os.environ.get(ENVIRONMENT, "").strip()
        shared = max(1, _maximum() // local_ranks())
        _state["threads"] = _checked(given, ENVIRONMENT) if given else shared
    return _state["threads"]


def set_num_threads(count: int) -> None:
    """Run graphc's CPU kernels on ``count`` threads (1 to the number of cores).

    Executors bound afterwards partition their kernels for ``count`` threads; one bound
    earlier keeps its partition and runs it on ``count`` threads (the same results).

    >>> import graphc as gc
    >>> before = gc.get_num_threads()
    >>> gc.set_num_threads(1)
    >>> gc.get_num_threads()
    1
    >>> gc.set_num_threads(before)
    """
    if isinstance(count, (str, bool)):  # int("2") and int(True) would pass for counts
        raise ValueError(f"set_num_threads: the thread count must be an integer, got {count!r}")
    _state["threads"] = _checked(count, "set_num_threads")


def bind_options() -> dict:
    """The options the CPU target adds to every node it lowers: the partition count."""
    return {"num_threads": get_num_threads()}


def parallel_parts(spec_options, rows: int, work: float, minimum_work: float) -> int:
    """How many parts a kernel splits ``rows`` into: the bound thread count, or 1 where
    the whole kernel's ``work`` (its own unit: flops, elements) is below ``minimum_work``,
    the size from which splitting was measured to pay, and never more parts than rows.

    The bind option ``split_small`` splits below that size too: the tests use it to run
    the parts of every kernel on small, odd shapes."""
    threads = int(spec_options.get("num_threads", 1))
    if threads <= 1 or (work < minimum_work and not spec_options.get("split_small", False)):
        return 1
    return max(1, min(threads, rows))


class _ScipyBlas:
    """SciPy's OpenBLAS, the library Numba's ``np.dot`` calls, found once by threadpoolctl.

    The getter and setter are the library's own C functions, called through ctypes (about
    0.1 us each; a threadpoolctl context costs milliseconds, as it scans the loaded
    libraries)."""

    def __init__(self) -> None:
        import scipy.linalg.cython_blas  # noqa: F401 - loads the library Numba calls
        from threadpoolctl import ThreadpoolController

        scipy_dir = os.path.dirname(os.path.dirname(scipy.linalg.cython_blas.__file__))
        self.get = self.set = None  # where none is found, SciPy's BLAS keeps its threads
        for controller in ThreadpoolController().lib_controllers:
            if controller.user_api != "blas" or controller.internal_api != "openblas":
                continue
            if not os.path.realpath(controller.filepath).startswith(os.path.realpath(scipy_dir)):
                continue
            for symbol in ("scipy_openblas", "scipy_openblas64_", "openblas", "openblas64_"):
                get = getattr(controller.dynlib, f"{symbol}_get_num_threads", None)
                set_ = getattr(controller.dynlib, f"{symbol}_set_num_threads", None)
                if get is not None and set_ is not None:
                    self.get, self.set = get, set_
                    return


class _NumbaThreads:
    """Numba's thread-count getter and setter for the calling thread.

    The public ``numba.get_num_threads`` checks that the pool is running on every call
    (0.6 us, 0.8 us to set, 5 us a step for the executor's five calls); once it runs, the
    C functions the public ones wrap take 0.1 us. Where a Numba version has no such
    functions, the public ones serve."""

    def __init__(self) -> None:
        numba.get_num_threads()  # starts the threading layer: the C functions exist after
        from numba.np.ufunc import parallel

        self.get = getattr(parallel, "_get_num_threads", None) or numba.get_num_threads
        self.set = getattr(parallel, "_set_num_threads", None) or numba.set_num_threads


def _pools() -> tuple[_ScipyBlas, _NumbaThreads]:
    if _state["blas"] is None:
        _state["blas"] = (_ScipyBlas(), _NumbaThreads())
    return _state["blas"]


def call_partitioned(call, function, *args):
    """``call(function, *args)`` with Numba's parallel loops on graphc's thread count and
    SciPy's BLAS on one thread (each part of a kernel is one thread's work), both given
    back as they were afterwards."""
    blas, pool = _pools()
    threads = get_num_threads()
    blas_before = blas.get() if blas.get is not None else 1
    numba_before = pool.get()
    try:  # whatever raises, the settings that were changed are given back
        if blas_before != 1:
            blas.set(1)
        if numba_before != threads:
            pool.set(threads)
        return call(function, *args)
    finally:
        if numba_before != threads:
            pool.set(numba_before)
        if blas_before != 1:
            blas.set(blas_before)
