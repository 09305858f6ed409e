"""The IR record: an immutable node and a reference to one of its outputs.

A node is an op applied to inputs (outputs of other nodes) with attributes. Nodes compare
and hash by identity: two structurally equal nodes are still two nodes until a pass (CSE)
merges them. Variables are nodes whose op is ``"null"``, as in MXNet's JSON.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

VARIABLE_OP = "null"

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_SOURCE_OVERRIDE: ContextVar[str | None] = ContextVar("graphc_source", default=None)


@contextmanager
def source_as(where: str) -> Iterator[None]:
    """Nodes made inside this block record ``where`` as their source instead of the
    caller's ``file:line``: an importer names the place in the file it reads
    (``lenet-symbol.json node 5``)."""
    token = _SOURCE_OVERRIDE.set(where)
    try:
        yield
    finally:
        _SOURCE_OVERRIDE.reset(token)


def user_source() -> str:
    """The ``file:line`` of the innermost caller outside the graphc package (or the place
    set by :func:`source_as`)."""
    override = _SOURCE_OVERRIDE.get()
    if override is not None:
        return override
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return "<graphc>"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


def freeze_attrs(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only copy of an attribute mapping, keys sorted for a stable listing."""
    return MappingProxyType({key: attrs[key] for key in sorted(attrs)})


@dataclass(frozen=True, eq=False)
class Node:
    """One op application. ``inputs`` are :class:`NodeOutput` references."""

    op: str
    name: str
    inputs: tuple[NodeOutput, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    source: str = "<graphc>"

    @property
    def is_variable(self) -> bool:
        return self.op == VARIABLE_OP

    def __repr__(self) -> str:
        return f"Node({self.name!r}, op={self.op!r})"


@dataclass(frozen=True)
class NodeOutput:
    """Output ``index`` of ``node``; the edge type of the graph."""

    node: Node
    index: int = 0

    def __repr__(self) -> str:
        return f"{self.node.name}[{self.index}]"


class NameManager:
    """Hands out MXNet-style default names: ``fullyconnected0``, ``fullyconnected1``, ..."""

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}

    def next_name(self, hint: str) -> str:
        hint = hint.lower().lstrip("_")
        count = self._counters.get(hint, 0)
        self._counters[hint] = count + 1
        return f"{hint}{count}"


NAMES = NameManager()
