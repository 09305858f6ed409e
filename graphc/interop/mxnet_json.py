"""MXNet's symbol JSON (``<prefix>-symbol.json``) read into a graphc Symbol.

MXNet 1.x writes ``{"nodes": [...], "arg_nodes": [...], "node_row_ptr": [...], "heads":
[...], "attrs": {"mxnet_version": ["int", 10901]}}``; each node has ``op`` (``"null"``
for a variable), ``name``, ``inputs`` (``[node, output, version]``) and ``attrs``, every
value a string (``"(5, 5)"``, ``"True"``, ``"None"``, ``"relu"``). Files of MXNet before
1.0 hold the op's attributes in ``param`` and the node's in ``attr``. Nothing in a file is
executed: values are read as Python literals (``ast.literal_eval``) or kept as strings.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any

from graphc.interop.mxnet_ndarray import TYPE_FLAGS
from graphc.interop.mxnet_ops import MXNET_OPS, Unsupported
from graphc.ir.errors import GraphcError, ImportFormatError
from graphc.ir.node import source_as
from graphc.ir.symbol import Group, Symbol, Variable

# mshadow's type flags, as __dtype__ holds them.
_DTYPE_FLAGS = {
    0: "float32",
    1: "float64",
    2: "float16",
    3: "uint8",
    4: "int32",
    5: "int8",
    6: "int64",
}


@dataclass(frozen=True)
class PackedRNN:
    """A fused RNN node whose packed ``parameters`` vector graphc holds as four arrays."""

    packed: str
    """The packed vector's name in the checkpoint (``rnn_parameters``)."""
    prefix: str
    """The LSTM's name: its parameters are ``{prefix}_i2h_weight`` and so on."""
    num_hidden: int


@dataclass(frozen=True)
class MXNetGraph:
    symbol: Symbol
    packed_rnns: tuple[PackedRNN, ...]
    mxnet_version: int | None


def parse_value(text: Any) -> Any:
    """An MXNet attribute string as a Python value: ``"(2, 2)"`` -> (2, 2), ``"True"`` ->
    True, ``"None"`` -> None, ``"0.5"`` -> 0.5; anything that is not a literal (``"relu"``,
    ``"float32"``) stays a string."""
    if not isinstance(text, str):
        return text
    if text.strip().lower() in ("true", "false"):  # dmlc also writes lower case
        return text.strip().lower() == "true"
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    return tuple(value) if isinstance(value, list) else value


def read_symbol_json(text: str, where: str) -> MXNetGraph:
    """The graph of MXNet symbol JSON ``text``; ``where`` names the file in errors."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("nodes"), list):
        raise ImportFormatError(f"{where}: an MXNet symbol file is an object with a 'nodes' list")
    heads = document.get("heads")
    if not isinstance(heads, list) or not heads:
        raise ImportFormatError(f"{where}: no 'heads' (the symbol's outputs)")
    version = _mxnet_version(document.get("attrs"), where)
    outputs: list[list[Symbol]] = []
    packed: list[PackedRNN] = []
    for index, record in enumerate(document["nodes"]):
        place = f"{where} node {index}"
        outputs.append(_read_node(record, place, outputs, packed))
    entries = [_entry(edge, outputs, len(outputs), f"{where} heads") for edge in heads]
    symbol = entries[0] if len(entries) == 1 else Group(entries)
    return MXNetGraph(symbol, tuple(packed), version)


def _mxnet_version(attrs: Any, where: str) -> int | None:
    if not isinstance(attrs, dict) or "mxnet_version" not in attrs:
        return None
    value = attrs["mxnet_version"]
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
        return value[1]
    raise ImportFormatError(f"{where}: mxnet_version {value!r} is not ['int', <version>]")


def _read_node(record: Any, place: str, outputs: list, packed: list) -> list[Symbol]:
    if not isinstance(record, dict):
        raise ImportFormatError(f"{place}: expected an object, got {type(record).__name__}")
    op, name = record.get("op"), record.get("name")
    if not isinstance(op, str) or not isinstance(name, str) or not name:
        raise ImportFormatError(f"{place}: 'op' and 'name' must be non-empty strings")
    place = f"{place} ({name!r}, {op})"
    raw = {}
    for key in ("attr", "param", "attrs"):  # MXNet < 1.0: attr (node) and param (op)
        section = record.get(key) or {}
        if not isinstance(section, dict):
            raise ImportFormatError(f"{place}: {key!r} must be an object")
        if key == "attr":  # the node's annotations (ctx_group, ...): never the op's
            section = {k: v for k, v in section.items() if k.startswith("__")}
        raw.update(section)
    attrs = {key: parse_value(value) for key, value in raw.items()}
    edges = record.get("inputs", [])
    if not isinstance(edges, list):
        raise ImportFormatError(f"{place}: 'inputs' must be a list")
    inputs = [_entry(edge, outputs, len(outputs), place) for edge in edges]
    if op == "null":
        if inputs:
            raise ImportFormatError(f"{place}: a variable has no inputs")
        return [_variable(name, attrs, place)]
    mapping = MXNET_OPS.get(op)
    if mapping is None:
        raise ImportFormatError(f"{place}: graphc has no op for MXNet's {op!r}")
    try:
        passed = mapping.attrs_for(attrs)
        with source_as(place):
            built = mapping.build(inputs, passed, name)
    except Unsupported as exc:
        raise ImportFormatError(f"{place}: {exc}") from None
    except (GraphcError, ValueError) as exc:  # graphc's own checks of what the file holds
        raise ImportFormatError(f"{place}: {exc}") from None
    if op == "RNN":
        packed.append(PackedRNN(inputs[1].name, name, int(passed["state_size"])))
    return list(built) if isinstance(built, list) else [built[i] for i in range(len(built))]


def _variable(name: str, attrs: dict, place: str) -> Symbol:
    options: dict[str, Any] = {}
    shape = attrs.get("__shape__")
    if isinstance(shape, tuple) and shape and 0 not in shape:  # 0: a size left to inference
        options["shape"] = shape
    dtype = attrs.get("__dtype__")
    if dtype is not None:
        if dtype not in TYPE_FLAGS:  # mshadow's type flags, as the .params file's
            raise ImportFormatError(f"{place}: __dtype__ {dtype!r} is not a type flag")
        options["dtype"] = TYPE_FLAGS[dtype]
    for key, option in (("__lr_mult__", "lr_mult"), ("__wd_mult__", "wd_mult")):
        if key in attrs:
            options[option] = float(attrs[key])
    if attrs.get("__storage_type__", 0) not in (0, "0", "default"):
        raise ImportFormatError(f"{place}: sparse storage is not supported")
    # Other attributes are annotations (__init__, __layout__; a fused RNN copies its own onto
    # the variables it made): the values come from the checkpoint, not an initializer.
    with source_as(place):
        return Variable(name, **options)


def _entry(edge: Any, outputs: list[list[Symbol]], limit: int, place: str) -> Symbol:
    if not (
        isinstance(edge, list) and len(edge) in (2, 3) and all(isinstance(i, int) for i in edge)
    ):
        raise ImportFormatError(f"{place}: an input is [node, output, version], not {edge!r}")
    node, index = edge[0], edge[1]
    if not 0 <= node < limit:
        raise ImportFormatError(f"{place}: input {edge!r} names a node that does not precede it")
    if not 0 <= index < len(outputs[node]):
        raise ImportFormatError(
            f"{place}: input {edge!r}: node {node} has {len(outputs[node])} output(s)"
        )
    return outputs[node][index]
