"""Where the wait before the first step goes: every kernel a bound graph calls, and how it
was found — compiled in this process, compiled by a worker, loaded from Numba's disk cache
or already in memory — with the seconds it took.

``GRAPHC_LOG=compile`` prints a line per kernel to stderr as it is found (kernels found in
memory are left out: one line per kernel a process compiles or loads), and a line per
round of worker compiles; :func:`records` gives the same for a program, such as
``graphc compile --train``, to report.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

ENVIRONMENT = "GRAPHC_LOG"
TOPIC = "compile"

COMPILED = "compiled"
WORKER = "compiled by a worker"
LOADED = "loaded from the disk cache"
MEMORY = "in memory"
OUTCOMES = (COMPILED, WORKER, LOADED, MEMORY)


@dataclass(frozen=True)
class Record:
    """One kernel found for one argument tuple: what it is, how and how long."""

    function: str  # module.name of the Numba function
    label: str  # the user's nodes it computes, where the caller knows them
    arguments: int  # how many arguments it takes
    outcome: str  # COMPILED, WORKER, LOADED or MEMORY
    seconds: float  # here, to compile or to load; for WORKER, the worker's compile


_records: list[Record] = []
_ahead: dict[tuple[int, tuple], tuple[str, float]] = {}


def enabled() -> bool:
    return TOPIC in (part.strip() for part in os.environ.get(ENVIRONMENT, "").split(","))


def records() -> list[Record]:
    """Every kernel found so far in this process, in order."""
    return list(_records)


def clear() -> None:
    _records.clear()


def note_ahead(dispatcher, kinds: tuple, outcome: str, seconds: float) -> None:
    """``dispatcher`` was compiled for ``kinds`` ahead of its caller (``compile_workers``),
    here (COMPILED) or by a worker (WORKER), in ``seconds``: the caller's lookup that
    follows, in memory or on disk, is reported as that compile."""
    _ahead[(id(dispatcher), kinds)] = (outcome, seconds)


def say(message: str) -> None:
    if enabled():
        print(f"graphc compile: {message}", file=sys.stderr, flush=True)


def compile_logged(dispatcher, kinds: tuple, label: str = "") -> None:
    """``dispatcher.compile(kinds)``, recorded (and printed under ``GRAPHC_LOG=compile``)."""
    kinds = tuple(kinds)
    ahead = _ahead.pop((id(dispatcher), kinds), None)
    if kinds in dispatcher.overloads:
        if ahead is None or ahead[0] != COMPILED:
            _records.append(Record(_name(dispatcher), label, len(kinds), MEMORY, 0.0))
            return
        outcome, seconds = ahead  # compiled here, ahead of this call
    else:
        hits = dispatcher.stats.cache_hits[kinds]
        start = time.perf_counter()
        dispatcher.compile(kinds)
        seconds = time.perf_counter() - start
        outcome = LOADED if dispatcher.stats.cache_hits[kinds] > hits else COMPILED
        if outcome == LOADED and ahead is not None:  # what a worker left in the cache
            outcome, seconds = ahead
    record = Record(_name(dispatcher), label, len(kinds), outcome, seconds)
    _records.append(record)
    say(describe(record))


def describe(record: Record) -> str:
    where = f" ({record.label})" if record.label else ""
    return f"{record.seconds:7.2f} s  {record.outcome:<26}  {record.function}{where}"


def _name(dispatcher) -> str:
    function = dispatcher.py_func
    return f"{function.__module__}.{function.__qualname__}"
