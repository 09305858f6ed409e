"""MXNet's unknown sizes: a 0 in the shape of a ``_full`` node (``gc.zeros((0, H))``).

MXNet infers shapes in both directions, so a graph may hold a constant whose size it leaves
to the rest of the graph: the begin states of its RNN cells are ``zeros(shape=(0, H))``,
the 0 being the batch size, found where the state meets the data (``h2h(state) +
i2h(x_t)``). graphc's shape rules run forwards, so before inference a graph with such
sizes is settled against the input shapes: each unknown size is solved for among the
sizes those shapes hold, keeping the one value under which every shape rule holds. A
node whose sizes no value satisfies, or several do, is an error naming it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from graphc.ir.errors import MissingInputError, ShapeError
from graphc.ir.infer import describe, infer_dtypes, infer_shapes
from graphc.ir.node import Node, NodeOutput, freeze_attrs
from graphc.ir.symbol import Symbol

FULL_OP = "_full"


def unknown_size_nodes(symbol: Symbol) -> list[Node]:
    """The ``_full`` nodes of ``symbol`` whose shape holds a 0."""
    return [node for node in symbol.graph.nodes if node.op == FULL_OP and 0 in node.attrs["shape"]]


def resolve_unknown_dims(symbol: Symbol, given: Mapping[str, tuple]) -> Symbol:
    """``symbol`` with every unknown size of its ``_full`` nodes settled from the shapes
    ``given`` for its variables (``symbol`` itself when it has none).

    >>> import graphc as gc
    >>> x = gc.Variable("x")
    >>> state = gc.zeros((0, 3), name="begin")
    >>> net = gc.FullyConnected(state, num_hidden=4, name="h2h") + gc.FullyConnected(
    ...     x, num_hidden=4, name="i2h")
    >>> resolve_unknown_dims(net, {"x": (5, 2)}).infer_shape(x=(5, 2))[1]
    [(5, 4)]
    """
    open_nodes = unknown_size_nodes(symbol)
    if not open_nodes:
        return symbol
    given = {name: tuple(int(d) for d in shape) for name, shape in given.items() if shape}
    for node in symbol.graph.variables:
        declared = node.attrs.get("shape")
        if node.name not in given and declared is not None and 0 not in declared:
            given[node.name] = tuple(declared)
    candidates = sorted({dim for shape in given.values() for dim in shape if dim > 0})
    settled: dict[Node, tuple] = {}
    while open_nodes:
        progress = False
        for node in list(open_nodes):
            fits = [
                shape
                for shape in _fillings(node.attrs["shape"], candidates)
                if _consistent(_with_attrs(symbol, _as_attrs({**settled, node: shape})), given)
            ]
            if not fits:
                raise ShapeError(
                    f"{describe(node)}: no size for the unknown (0) sizes of shape"
                    f" {tuple(node.attrs['shape'])} fits the rest of the graph; sizes tried:"
                    f" {candidates} (from the given shapes {given})"
                )
            if len(fits) == 1:
                settled[node] = fits[0]
                open_nodes.remove(node)
                progress = True
        if not progress:
            raise MissingInputError(
                "cannot infer the unknown (0) sizes of "
                + ", ".join(
                    f"{describe(node)} shape {tuple(node.attrs['shape'])}" for node in open_nodes
                )
                + f": more than one of the sizes {candidates} fits (a size of 1 fits wherever"
                " an op broadcasts): meet the constant with an op that takes equal shapes"
                " (elemwise_add), or give its shape"
            )
    return _with_attrs(symbol, {node: {"shape": shape} for node, shape in settled.items()})


def settle_dtypes(symbol: Symbol, given: Mapping[str, object]) -> Symbol:
    """``symbol`` with each untyped ``_full`` node (``dtype=None``: the dtype of what it
    meets) given the dtype inference finds for it from the variables' dtypes ``given``, so
    that passes and backends, which may move it away from what it meets (a fused kernel's
    input), see a typed constant."""
    untyped = [n for n in symbol.graph.nodes if n.op == FULL_OP and n.attrs["dtype"] is None]
    if not untyped:
        return symbol
    inferred = infer_dtypes(symbol.graph, given)
    return _with_attrs(
        symbol, {node: {"dtype": np.dtype(inferred[NodeOutput(node, 0)]).name} for node in untyped}
    )


def _fillings(shape: tuple, candidates: list[int]):
    holes = [axis for axis, dim in enumerate(shape) if dim == 0]
    for values in itertools.product(candidates, repeat=len(holes)):
        filled = list(shape)
        for axis, value in zip(holes, values):
            filled[axis] = value
        yield tuple(filled)


def _consistent(symbol: Symbol, given: Mapping[str, tuple]) -> bool:
    """Whether no shape rule of ``symbol`` fails under ``given`` (unknowns are allowed)."""
    try:
        infer_shapes(symbol.graph, given, partial=True)
    except ShapeError:
        return False
    return True


def _as_attrs(shapes: Mapping[Node, tuple]) -> dict[Node, dict]:
    return {node: {"shape": shape} for node, shape in shapes.items()}


def _with_attrs(symbol: Symbol, changes: Mapping[Node, Mapping]) -> Symbol:
    """``symbol`` rebuilt with the attributes of the nodes in ``changes`` updated (names,
    sources and everything else kept)."""
    mapping: dict[Node, Node] = {}
    for node in symbol.graph.nodes:
        inputs = tuple(NodeOutput(mapping.get(e.node, e.node), e.index) for e in node.inputs)
        if node in changes:
            attrs = freeze_attrs({**node.attrs, **changes[node]})
            mapping[node] = Node(node.op, node.name, inputs, attrs, node.source)
        elif any(new.node is not old.node for new, old in zip(inputs, node.inputs)):
            mapping[node] = Node(node.op, node.name, inputs, node.attrs, node.source)
    return Symbol([NodeOutput(mapping.get(e.node, e.node), e.index) for e in symbol.entries])
