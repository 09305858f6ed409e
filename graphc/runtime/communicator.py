"""How the processes of a data-parallel job talk: one small interface, so that MPI today
and another engine (NCCL for GPUs) later can stand behind it.

A :class:`Communicator` sums a flat buffer over every process in place (``allreduce``),
copies one from rank 0 (``broadcast``), waits for everyone (``barrier``) and ends the whole
job (``abort``). :class:`LocalCommunicator` is the one-process job; :class:`MPICommunicator`
uses mpi4py (imported only when it is made, so a plain install never loads MPI).

What users of MPI jobs fear most is a hang, so nothing here waits forever:

- ``exchange_checked`` (the start-of-fit handshake) and ``broadcast`` poll non-blocking MPI
  calls against a deadline (``timeout``) and abort the job naming the ranks that did not
  arrive;
- ``watch(what, seconds)`` arms a watchdog thread around anything else that waits on the
  other ranks (the compiled training loop's allreduce, a barrier): when the section takes
  longer, the watchdog asks the other ranks where they are (their watchdogs answer: waiting
  in which section, or not waiting and last in which; a rank that does not answer is gone)
  and aborts the job naming the ranks that did not arrive. The compiled loop releases the
  GIL (``nogil``) so that the watchdogs can run while it waits.

The compiled training loop calls ``MPI_Allreduce`` itself, through the address and the
handles in :attr:`MPICommunicator.native_allreduce` (``codegen_cpu.collective_call``), so
that Python stays out of the steps.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from graphc.backend.loop_plan import CollectiveCall
from graphc.ir.errors import GraphcError

ABORT_CODE = 17
"""The exit status of a job graphc aborts (a rank failed, or the others waited too long)."""

HANDSHAKE, ROLL_CALL, ANSWER = 7101, 7201, 7202
"""Message tags on graphc's own communicator: the start-of-fit handshake (and its answer,
the next tag), the stall watchdog's roll call and its answers."""

ROLL_CALL_SECONDS = 2.0
"""How long a stalled rank waits for the others to say where they are."""

POLL_SECONDS = 0.002
"""How long a wait with a deadline sleeps between tests of its request, once it has spun
for ``SPIN_SECONDS`` without one."""

SPIN_SECONDS = 0.01

ABORT_GRACE_SECONDS = 0.5


class DistributedError(GraphcError, RuntimeError):
    """The ranks of a job disagree (graph, shapes, optimizer) or one failed to arrive."""


class Communicator:
    """The operations a data-parallel job needs; see the module's docstring."""

    rank = 0
    size = 1
    timeout = stall_timeout = float("inf")
    native_allreduce: CollectiveCall | None = None
    """For compiled code: ``backend.loop_plan.CollectiveCall``; None for one process."""
    handle_dtype = np.dtype(np.int32)
    """The width of the MPI library's handles (requests among them)."""
    status_bytes = 0
    """The size of an ``MPI_Status``."""

    def allreduce(self, buffer: np.ndarray) -> None:
        """Sum ``buffer`` (contiguous) over every rank, in place."""

    def broadcast(self, buffer: np.ndarray, what: str) -> None:
        """Overwrite ``buffer`` with rank 0's, within the handshake's deadline."""

    def exchange_checked(self, description: dict, compare: Callable) -> None:
        """Every rank sends ``description`` to rank 0, which calls
        ``compare(rank0_description, rank, description)`` for each other rank; the first
        message it returns is raised as :class:`DistributedError` on every rank."""

    def barrier(self, what: str = "a barrier", seconds: float | None = None) -> None:
        """Wait for every rank (at most ``seconds``, by default ``stall_timeout``)."""

    @contextlib.contextmanager
    def watch(self, what: str, seconds: float | None = None) -> Iterator[None]:
        """Abort the job if the body waits on the other ranks longer than ``seconds``."""
        yield

    def abort(self, message: str) -> None:
        """Print ``message`` to stderr and end every process of the job."""
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(ABORT_CODE)


class LocalCommunicator(Communicator):
    """One process: every operation is already done."""


class MPICommunicator(Communicator):
    """The ranks of ``MPI.COMM_WORLD`` (a duplicate of it, so that graphc's messages never
    meet the user's). ``timeout``: seconds the handshake waits for every rank;
    ``stall_timeout``: seconds any other wait may take before the job is aborted."""

    def __init__(self, timeout: float, stall_timeout: float) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.timeout = float(timeout)
        self.stall_timeout = float(stall_timeout)
        self.native_allreduce = _native_allreduce(MPI, self.comm)
        self.handle_dtype = np.dtype(self.native_allreduce.comm.dtype)
        self.status_bytes = MPI._sizeof(MPI.Status)
        self._section: tuple[str, float, float] | None = None
        self._whereabouts = "has not waited on the others yet"
        self._replies: list = []  # roll-call answers in flight (their buffers live here)
        self._lock = threading.Lock()
        # The watchdog also answers other ranks' roll calls, which needs MPI from a second
        # thread; mpi4py asks for MPI_THREAD_MULTIPLE unless told otherwise.
        self._threaded = MPI.Query_thread() == MPI.THREAD_MULTIPLE
        self._stop = threading.Event()
        if not self._threaded and self.size > 1:
            warnings.warn(
                "graphc: MPI was initialized without MPI_THREAD_MULTIPLE, so the stall "
                "watchdog cannot run: a rank that hangs leaves the others waiting (mpi4py "
                "asks for it unless mpi4py.rc.thread_level says otherwise)",
                stacklevel=3,
            )
        if self._threaded and self.size > 1:
            watchdog = threading.Thread(
                target=self._watch_loop, name="graphc-stall-watchdog", daemon=True
            )
            watchdog.start()
            # before mpi4py finalizes MPI at exit (atexit runs the last registered first):
            # a thread calling MPI after MPI_Finalize is an error
            atexit.register(self._stop_watchdog, watchdog)

    # -- the steady state --------------------------------------------------------------------

    def allreduce(self, buffer: np.ndarray) -> None:
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)

    def barrier(self, what: str = "a barrier", seconds: float | None = None) -> None:
        request = self.comm.Ibarrier()
        self._wait(request, what, self.stall_timeout if seconds is None else seconds, None)

    @contextlib.contextmanager
    def watch(self, what: str, seconds: float | None = None) -> Iterator[None]:
        limit = self.stall_timeout if seconds is None else float(seconds)
        with self._lock:
            self._section = (what, time.monotonic(), limit)
            self._whereabouts = f"is waiting in {what}"
        try:
            yield
        finally:
            with self._lock:
                self._section = None
                self._whereabouts = f"is not waiting on the others (it last left {what})"

    def _stop_watchdog(self, watchdog: threading.Thread) -> None:
        self._stop.set()
        watchdog.join()

    def _watch_loop(self) -> None:
        """Every 50 ms: answer the other ranks' roll calls, and abort the job when this
        rank's section has waited longer than its limit, naming the ranks that did not
        arrive (from their answers to a roll call; a rank that does not answer is gone)."""
        while not self._stop.wait(0.05):
            self._answer_roll_calls()
            with self._lock:
                section = self._section
            if section is None:
                continue
            what, start, limit = section
            waited = time.monotonic() - start
            if waited > limit:
                absent = self._roll_call()
                with self._lock:
                    if self._section is not section:  # it finished during the roll call
                        continue
                self.abort(
                    f"graphc: rank {self.rank} of {self.size}: {what} made no progress for "
                    f"{waited:.0f} s (stall_timeout={limit:g} s); the ranks that did not "
                    f"arrive: {absent or 'none found (every rank waits: a collective was missed)'}"
                    "; aborting the job"
                )

    def _answer_roll_calls(self) -> None:
        self._replies = [request for request in self._replies if not request.Test()]
        while self.comm.iprobe(source=self._mpi.ANY_SOURCE, tag=ROLL_CALL):
            status = self._mpi.Status()
            self.comm.recv(source=self._mpi.ANY_SOURCE, tag=ROLL_CALL, status=status)
            with self._lock:
                where = self._whereabouts
            self._replies.append(self.comm.isend(where, dest=status.Get_source(), tag=ANSWER))

    def _roll_call(self) -> str:
        """Ask every other rank where it is; the ones not waiting with us, described."""
        others = [rank for rank in range(self.size) if rank != self.rank]
        for rank in others:
            self._replies.append(self.comm.isend(None, dest=rank, tag=ROLL_CALL))
        answers: dict[int, str] = {}
        deadline = time.monotonic() + ROLL_CALL_SECONDS
        while len(answers) < len(others) and time.monotonic() < deadline:
            self._answer_roll_calls()  # another stalled rank may be asking us meanwhile
            for rank in others:
                if rank not in answers and self.comm.iprobe(source=rank, tag=ANSWER):
                    answers[rank] = self.comm.recv(source=rank, tag=ANSWER)
            time.sleep(0.01)
        absent = [
            f"rank {rank} " + answers.get(rank, "does not answer (it exited or crashed)")
            for rank in others
            if not answers.get(rank, "").startswith("is waiting in")
        ]
        return "; ".join(absent)

    def abort(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)
        # mpiexec forwards a rank's output through its proxies, and an abort ends them: give
        # the message time to get through first (seen lost with MPICH's Hydra otherwise)
        time.sleep(ABORT_GRACE_SECONDS)
        self._mpi.COMM_WORLD.Abort(ABORT_CODE)
        os._exit(ABORT_CODE)  # Abort does not return; should it, the process still ends

    # -- the handshake -----------------------------------------------------------------------

    def broadcast(self, buffer: np.ndarray, what: str) -> None:
        request = self.comm.Ibcast(buffer, root=0)
        self._wait(request, what, self.timeout, "rank 0")

    def exchange_checked(self, description: dict, compare: Callable) -> None:
        """Rank 0 receives every rank's description (waiting at most ``timeout`` for
        each, and naming the ranks that did not send one), compares them and sends its
        verdict back, which every rank then raises or not."""
        tag = HANDSHAKE
        deadline = time.monotonic() + self.timeout
        if self.rank != 0:
            request = self.comm.isend(description, dest=0, tag=tag)
            self._wait(request, "the fit handshake", self.timeout, "rank 0")
            verdict = self._receive_before(0, tag + 1, deadline, "rank 0 (the fit handshake)")
        else:
            received = {0: description}
            while len(received) < self.size:
                for source in range(1, self.size):
                    if source not in received and self.comm.iprobe(source=source, tag=tag):
                        received[source] = self.comm.recv(source=source, tag=tag)
                if len(received) < self.size and time.monotonic() > deadline:
                    missing = sorted(set(range(self.size)) - set(received))
                    self.abort(
                        f"graphc: rank 0 of {self.size}: the ranks {missing} did not reach the "
                        f"start of fit within {self.timeout:g} s (the kvstore's timeout): they "
                        "exited, failed or run another program; aborting the job"
                    )
                time.sleep(POLL_SECONDS)
            verdict = None
            for source in range(1, self.size):
                verdict = compare(description, source, received[source])
                if verdict is not None:
                    break
            for source in range(1, self.size):
                self.comm.send(verdict, dest=source, tag=tag + 1)
        if verdict is not None:
            raise DistributedError(verdict)

    def _receive_before(self, source: int, tag: int, deadline: float, who: str):
        while not self.comm.iprobe(source=source, tag=tag):
            if time.monotonic() > deadline:
                self.abort(
                    f"graphc: rank {self.rank} of {self.size}: {who} did not answer within "
                    f"{self.timeout:g} s (the kvstore's timeout); aborting the job"
                )
            time.sleep(POLL_SECONDS)
        return self.comm.recv(source=source, tag=tag)

    def _wait(self, request, what: str, limit: float, who: str | None) -> None:
        start = time.monotonic()
        deadline = start + limit
        while not request.Test():
            now = time.monotonic()
            if now < start + SPIN_SECONDS:
                continue  # the others are usually there already: no sleep's latency
            if now > deadline:
                waited_for = who or "another rank"
                self.abort(
                    f"graphc: rank {self.rank} of {self.size}: {what} waited {limit:g} s for "
                    f"{waited_for}, which stopped (it exited, crashed or hangs); aborting the job"
                )
            time.sleep(POLL_SECONDS)


def _native_allreduce(MPI, comm) -> CollectiveCall:
    """The address of ``MPI_Allreduce`` in the MPI library mpi4py loaded, and the handles
    compiled code passes it, each as the integer type of the library's handles (``int`` in
    MPICH, a pointer in Open MPI)."""
    library = ctypes.CDLL(MPI.__file__)  # dlsym searches the libraries it depends on too

    def address(name: str) -> np.int64:
        return np.int64(ctypes.cast(getattr(library, name), ctypes.c_void_p).value)

    unsigned, signed = {4: (np.uint32, np.int32), 8: (np.uint64, np.int64)}[MPI._sizeof(MPI.Comm)]

    def handle(value) -> np.integer:  # the bits of the handle, as a signed integer
        bits = MPI._handleof(value) & np.iinfo(unsigned).max  # mpi4py may sign-extend it
        return np.array(bits, dtype=unsigned).view(signed)[()]

    return CollectiveCall(
        allreduce=address("MPI_Allreduce"),
        float32=handle(MPI.FLOAT),
        float64=handle(MPI.DOUBLE),
        sum=handle(MPI.SUM),
        comm=handle(comm),
        iallreduce=address("MPI_Iallreduce"),
        waitall=address("MPI_Waitall"),
        in_place=np.int64(int(MPI.IN_PLACE)),
    )


_HOOKED = False


def install_abort_hook(communicator: Communicator) -> None:
    """Make an unhandled exception on any rank end the whole job at once (as ``python -m
    mpi4py script.py`` does), naming the rank; without it the other ranks would wait in
    their next collective."""
    global _HOOKED
    if _HOOKED or communicator.size == 1:
        return
    _HOOKED = True
    previous = sys.excepthook

    def hook(kind, value, trace) -> None:
        previous(kind, value, trace)
        communicator.abort(
            f"graphc: rank {communicator.rank} of {communicator.size} failed with "
            f"{kind.__name__}: {value}; aborting the job"
        )

    sys.excepthook = hook


__all__ = [
    "ABORT_CODE",
    "Communicator",
    "DistributedError",
    "LocalCommunicator",
    "MPICommunicator",
    "install_abort_hook",
]
