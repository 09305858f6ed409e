"""Model files: plain Python that builds a graph with graphc's API.

A model file exposes the graph as a module-level ``net`` (or ``symbol``) Symbol, or as a
``get_symbol(**options)`` or ``build(**options)`` function returning one; it may set
``input_shapes = {"data": (100, 1, 28, 28)}`` (the defaults ``--shape`` overrides) and
``label_names``. A saved graph (``.json``, ``Symbol.save``) loads too.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field

import graphc as gc


class ModelFileError(gc.GraphcError, ValueError):
    """A model file that raises, defines no model or defines something else: the message
    names the user's file and line; ``original`` is what the file raised, if it did."""

    original: BaseException | None = None


@dataclass(frozen=True)
class ModelFile:
    path: str
    symbol: gc.Symbol
    input_shapes: dict[str, tuple] = field(default_factory=dict)
    label_names: tuple[str, ...] | None = None


def load_model_file(path: str, options: Mapping[str, object] | None = None) -> ModelFile:
    """The model a file defines; ``options`` go to its ``get_symbol`` or ``build``."""
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such file")
    if path.endswith(".json"):
        return ModelFile(path, gc.load(path))
    # As `python path` would: the file's own folder first on the path (it may import its
    # siblings), and not run as __main__ (a script's training stays behind its guard).
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        namespace = runpy.run_path(path, run_name="graphc_model")
        symbol = _symbol_of(namespace, dict(options or {}))
    except gc.GraphcError:
        raise  # graphc's own errors already name the user's file and line
    except Exception as exc:  # the user's code raised: name where, in their file
        error = ModelFileError(f"{_where(exc, path)}: {type(exc).__name__}: {exc}")
        error.original = exc  # what --traceback shows
        raise error from None
    finally:
        sys.path.pop(0)
    if not isinstance(symbol, gc.Symbol):
        raise ModelFileError(
            f"{path}: defines no model: give it a Symbol named 'net', or get_symbol() or"
            " build() returning one"
        )
    return ModelFile(path, symbol, *_declared(namespace, symbol, path))


def _declared(namespace: dict, symbol: gc.Symbol, path: str) -> tuple[dict, tuple | None]:
    """The file's ``input_shapes`` and ``label_names``, checked against its symbol."""
    arguments = symbol.list_arguments()
    shapes = namespace.get("input_shapes") or {}
    try:
        shapes = {str(name): tuple(int(d) for d in shape) for name, shape in dict(shapes).items()}
    except (TypeError, ValueError):
        raise ModelFileError(
            f"{path}: input_shapes must map input names to shapes, e.g. {{'data': (100, 784)}}"
        ) from None
    labels = namespace.get("label_names")
    if labels is not None:
        labels = (labels,) if isinstance(labels, str) else tuple(labels)
    for what, names in (("input_shapes", list(shapes)), ("label_names", list(labels or ()))):
        unknown = [name for name in names if name not in arguments]
        if unknown:
            raise ModelFileError(f"{path}: {what} names {unknown}, not arguments of {arguments}")
    return shapes, labels


def _symbol_of(namespace: dict, options: dict):
    for name in ("get_symbol", "build"):
        if callable(namespace.get(name)):
            return namespace[name](**options)
    if options:
        raise TypeError(
            f"options {sorted(options)} given, but no get_symbol() or build() takes them"
        )
    return namespace.get("net", namespace.get("symbol"))


def _where(exc: BaseException, path: str) -> str:
    """``file:line`` of the innermost frame of ``path`` in the exception's traceback (a
    SyntaxError carries its own)."""
    target = os.path.abspath(path)
    if isinstance(exc, SyntaxError) and exc.filename and os.path.abspath(exc.filename) == target:
        return f"{path}:{exc.lineno}"
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == target:
            line = frame.lineno
    return f"{path}:{line}" if line is not None else path
