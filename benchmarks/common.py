"""Shared helpers for the benchmark scripts: timing by median of repeats, table printing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(function: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``function()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """A Markdown table, ready to paste into BENCHMARKS.md."""
    text_rows = [[_cell(value) for value in row] for row in rows]
    print("| " + " | ".join(headers) + " |")
    print("| " + " | ".join("---" for _ in headers) + " |")
    for row in text_rows:
        print("| " + " | ".join(row) + " |")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
