"""``gc.kvstore``: data-parallel training as MXNet's ``kvstore`` names it.

``kv = gc.kvstore.create("dist_sync")`` in a script launched with ``mpiexec -n N python
train.py`` (or ``graphc train MODEL.py --np N``) makes ``N`` workers; ``Model.fit(...,
kvstore=kv)`` (or ``kvstore="dist_sync"``) then trains them as one: rank 0's parameters are
broadcast at the start, every step sums the gradients of all ranks (one allreduce of a
packed buffer, inside the compiled training loop) and every rank applies the same update,
with ``rescale_grad = 1 / (batch_size * num_workers)`` by default (MXNet Module's rule), so
``N`` ranks at batch ``B`` take the steps of one process at batch ``N * B``. Give each rank
its part of the data: ``gc.io.NDArrayIter(..., num_parts=kv.num_workers,
part_index=kv.rank)`` (``BPTTIter`` likewise).

``"local"`` (and MXNet's ``"device"``) is the one-process store, the default. The
communication is MPI through mpi4py (``pip install graphc[dist]``), imported only when a
``dist_sync`` store is made. What ends a job rather than letting it hang: see
``graphc.runtime.communicator``.

>>> kv = create("local")
>>> kv.type, kv.rank, kv.num_workers
('local', 0, 1)
>>> kv.init("w", np.ones(3)); kv.push("w", [np.ones(3), 2 * np.ones(3)])
>>> out = np.zeros(3); kv.pull("w", out); out.tolist()
[3.0, 3.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from graphc.runtime.communicator import (
    Communicator,
    DistributedError,
    LocalCommunicator,
    MPICommunicator,
    install_abort_hook,
)

TYPES = ("local", "device", "dist_sync", "dist_sync_device")
"""The store types: one process (``local``, ``device``) or one per MPI rank (``dist_*``)."""

DEFAULT_TIMEOUT = 30.0
"""Seconds the start-of-fit handshake waits for every rank."""

DEFAULT_STALL_TIMEOUT = 300.0
"""Seconds any other wait on the other ranks may take (a training chunk's allreduces, a
barrier) before the job is aborted: far above a step (LeNet's is 0.1-0.2 s here), and above
the slowest rank's first compile of the training loop, which the first chunk waits for."""


class KVStore:
    """A key-value store over the workers of a job, as ``mx.kv.KVStore``.

    Attributes: ``type``, ``rank`` (this worker, from 0), ``num_workers``, ``timeout`` and
    ``stall_timeout`` (seconds; see the module), ``bucket_mb`` (see :func:`create`),
    ``communicator`` (the transport)."""

    def __init__(
        self,
        kind: str,
        communicator: Communicator,
        timeout: float,
        stall_timeout: float,
        bucket_mb: float | None = None,
    ):
        self.type = kind
        self.communicator = communicator
        self.timeout = timeout
        self.stall_timeout = stall_timeout
        self.bucket_mb = bucket_mb
        self._store: dict = {}

    @property
    def bucket_bytes(self) -> int | None:
        """``bucket_mb`` in bytes (None: one allreduce after the backward pass)."""
        return None if self.bucket_mb is None else max(1, int(self.bucket_mb * 2**20))

    @property
    def rank(self) -> int:
        return self.communicator.rank

    @property
    def num_workers(self) -> int:
        return self.communicator.size

    @property
    def distributed(self) -> bool:
        return self.communicator.size > 1

    def barrier(self) -> None:
        """Wait until every worker reaches this call (aborting the job after
        ``stall_timeout`` seconds, naming this rank)."""
        self.communicator.barrier(f"the kvstore barrier on rank {self.rank}")

    def init(self, key, value: np.ndarray) -> None:
        """Store ``value`` under ``key``: rank 0's value, on every worker."""
        stored = np.array(value, dtype=np.result_type(value, np.float32), copy=True)
        self.communicator.broadcast(stored.reshape(-1), f"kvstore.init({key!r})")
        self._store[key] = stored

    def push(self, key, value: np.ndarray | Sequence[np.ndarray]) -> None:
        """Store the sum of ``value`` (a list is summed first, as MXNet sums the values of
        several devices) over every worker."""
        if key not in self._store:
            raise KeyError(f"kvstore.push: key {key!r} was not init()-ed")
        values = value if isinstance(value, (list, tuple)) else [value]
        total = np.array(self._store[key], copy=True)
        total[...] = 0
        for item in values:
            item = np.asarray(item)
            if item.shape != total.shape:
                raise ValueError(
                    f"kvstore.push({key!r}): a value of shape {item.shape} for a key of "
                    f"shape {total.shape}"
                )
            total += item
        with self.communicator.watch(f"kvstore.push({key!r}) on rank {self.rank}"):
            self.communicator.allreduce(total.reshape(-1))
        self._store[key] = total

    def pull(self, key, out: np.ndarray | Sequence[np.ndarray]) -> None:
        """Copy the value stored under ``key`` into ``out`` (or each array of a list)."""
        if key not in self._store:
            raise KeyError(f"kvstore.pull: key {key!r} was not init()-ed")
        for target in out if isinstance(out, (list, tuple)) else [out]:
            np.copyto(target, self._store[key])

    def __repr__(self) -> str:
        return f"<KVStore {self.type!r} rank {self.rank} of {self.num_workers}>"


_WORLD: Communicator | None = None


def create(
    name: str = "local",
    timeout: float = DEFAULT_TIMEOUT,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    bucket_mb: float | None = None,
) -> KVStore:
    """A store of type ``name`` (see :data:`TYPES`). ``dist_sync`` joins the MPI job this
    process belongs to (one process alone when it was not started by ``mpiexec``) and makes
    an unhandled exception on any rank end the whole job (``install_abort_hook``).

    ``bucket_mb``: sum the gradients in buckets of about this many MiB, each started
    (non-blocking) as soon as the backward pass has completed it, so that communication
    overlaps the rest of the backward pass (PyTorch DDP's ``bucket_cap_mb``). The default,
    None, sums all of them at once after the backward pass: on one machine there is
    nothing to overlap with (BENCHMARKS.md measures both)."""
    global _WORLD
    if name not in TYPES:
        extra = " (asynchronous updates are not implemented)" if name == "dist_async" else ""
        raise ValueError(f"kvstore.create: unknown type {name!r}{extra}; known: {list(TYPES)}")
    for label, value in (("timeout", timeout), ("stall_timeout", stall_timeout)):
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"kvstore.create: {label} must be a positive number of seconds")
    if bucket_mb is not None and not (isinstance(bucket_mb, (int, float)) and bucket_mb > 0):
        raise ValueError(f"kvstore.create: bucket_mb must be a positive number, got {bucket_mb!r}")
    if not name.startswith("dist"):
        return KVStore(name, LocalCommunicator(), timeout, stall_timeout, bucket_mb)
    if _WORLD is None:
        try:
            _WORLD = MPICommunicator(timeout, stall_timeout)
        except ImportError as error:
            raise ImportError(
                f"kvstore {name!r} needs mpi4py and an MPI library: pip install 'graphc[dist]'"
                f" ({error})"
            ) from error
        install_abort_hook(_WORLD)
    else:
        _WORLD.timeout, _WORLD.stall_timeout = float(timeout), float(stall_timeout)
    return KVStore(name, _WORLD, timeout, stall_timeout, bucket_mb)


def as_kvstore(kvstore) -> KVStore:
    """``fit``'s ``kvstore`` argument as a store: a ``KVStore``, a type name, or None
    (``local``)."""
    if kvstore is None:
        return create("local")
    if isinstance(kvstore, KVStore):
        return kvstore
    if isinstance(kvstore, str):
        return create(kvstore)
    raise TypeError(f"fit: kvstore must be a KVStore or a type name, got {kvstore!r}")


__all__ = ["DistributedError", "KVStore", "TYPES", "as_kvstore", "create"]
