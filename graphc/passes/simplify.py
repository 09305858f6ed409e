"""Simplification passes: each a function ``Symbol -> Symbol`` that keeps the value of every
output (same shape, same dtype, same numbers) and never changes its input.

``simplify`` runs them to a fixed point. Passes that need shapes take ``shapes``, the input
shapes the caller knows (``{"data": (100, 784)}``); rules that need a shape nobody can infer
are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from graphc.ir.infer import infer_shapes
from graphc.ir.node import Node, NodeOutput
from graphc.ir.ops.reduce import reduced_axes
from graphc.ir.registry import EvalContext, get_op
from graphc.ir.symbol import Symbol
from graphc.passes.identities import first_identity
from graphc.passes.rewrite import make_node, num_outputs, transform

if TYPE_CHECKING:  # fuse imports this module
    from graphc.passes.fuse import FusionCapabilities

MAX_ROUNDS = 10
"""``simplify`` stops after this many rounds even if a rewrite still fires."""

NEVER_MERGED = frozenset({"Dropout"})
"""Ops CSE leaves alone even when two nodes look equal: two Dropouts are two masks."""


def entry_shapes(symbol: Symbol, shapes: Mapping[str, tuple] | None) -> dict[NodeOutput, Any]:
    """The shape of every entry inferable from the given input shapes (None elsewhere).

    Names the graph no longer has (a rewrite removed the variable) are ignored."""
    if not shapes:
        return {}
    present = set(symbol.list_inputs())
    given = {name: shape for name, shape in shapes.items() if name in present}
    return dict(infer_shapes(symbol.graph, given, partial=True).values)


def eliminate_dead_code(symbol: Symbol, shapes: Mapping[str, tuple] | None = None) -> Symbol:
    """Keep only the nodes the outputs reach.

    A symbol's graph is by construction the set of nodes reachable from its outputs, so this
    is a fresh symbol over the same entries: the nodes that other rewrites bypassed are gone
    from it. Output entries and their order are unchanged.

    >>> import graphc as gc
    >>> x = gc.Variable("x")
    >>> len(eliminate_dead_code(gc.exp(x)).graph.nodes)
    2
    """
    return Symbol(symbol.entries)


def _attr_key(value: Any) -> Any:
    """A hashable key under which equal attributes are equal and only those: floats by their
    bits (0.0 and -0.0 differ: x / 0.0 is not x / -0.0), tuples item by item."""
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, (tuple, list)):
        return ("tuple", tuple(_attr_key(item) for item in value))
    return (type(value).__name__, repr(value))


def eliminate_common_subexpressions(
    symbol: Symbol, shapes: Mapping[str, tuple] | None = None
) -> Symbol:
    """Merge nodes with the same op, the same attributes and the same inputs into the first.

    Keeps: every output's value. Variables are never merged (each is its own input), nor
    Dropout (two Dropouts with equal attributes still draw two masks in the user's mind, and
    a seed change must not silently couple them). Attributes are compared fully.

    >>> import graphc as gc
    >>> x = gc.Variable("x")
    >>> both = gc.exp(x) + gc.exp(x)
    >>> len(both.graph.nodes), len(eliminate_common_subexpressions(both).graph.nodes)
    (4, 3)
    """
    seen: dict[tuple, Node] = {}

    def replace(old: Node, rebuilt: Node) -> list[NodeOutput] | None:
        if rebuilt.is_variable or rebuilt.op in NEVER_MERGED:
            return None
        key = (
            rebuilt.op,
            tuple((name, _attr_key(value)) for name, value in rebuilt.attrs.items()),
            tuple((id(entry.node), entry.index) for entry in rebuilt.inputs),
        )
        first = seen.setdefault(key, rebuilt)
        if first is rebuilt:
            return None
        return [NodeOutput(first, index) for index in range(num_outputs(rebuilt))]

    return transform(symbol, replace)


def _foldable(node: Node) -> bool:
    """A node computed from constants only, by an op whose value depends on nothing else
    (elementwise ops with a scalar expression; Dropout and friends are excluded)."""
    if node.is_variable or node.op == "_scalar" or not node.inputs:
        return False
    if get_op(node.op).expr is None or num_outputs(node) != 1:
        return False
    return all(entry.node.op == "_scalar" for entry in node.inputs)


def fold_constants(symbol: Symbol, shapes: Mapping[str, tuple] | None = None) -> Symbol:
    """Replace each subgraph whose leaves are all ``_scalar`` constants by one ``_scalar``.

    Keeps: the value, computed by the op's reference in float64 (a constant takes the dtype
    of its consumers, so in a float32 graph the folded value may differ from the unfolded
    one in the last bit). A folded node keeps its name. Only 0-d results are folded; other
    constants are left alone. The walk is bottom-up, so a whole constant subgraph folds in
    one pass.

    >>> import graphc as gc
    >>> from graphc.ir.symbol import scalar
    >>> folded = fold_constants(gc.Variable("x") * (scalar(2.0) + scalar(3.0)))
    >>> [node.attrs["value"] for node in folded.graph.nodes if node.op == "_scalar"]
    [5.0]
    """

    def replace(old: Node, rebuilt: Node) -> list[NodeOutput] | None:
        if not _foldable(rebuilt):
            return None
        operands = [np.array(entry.node.attrs["value"]) for entry in rebuilt.inputs]
        with np.errstate(all="ignore"):  # log(0) and 0/0 fold to -inf and NaN, as they run
            (value,) = get_op(rebuilt.op).forward(rebuilt.attrs, operands, EvalContext())
        if np.ndim(value) != 0:
            return None
        constant = make_node("_scalar", [], {"value": float(value)}, rebuilt)
        return [NodeOutput(constant, 0)]

    return transform(symbol, replace)


def fold_sizes(symbol: Symbol, shapes: Mapping[str, tuple] | None = None) -> Symbol:
    """Replace ``_size`` (an element count, as in ``mean`` and the losses' normalizations)
    by a ``_scalar`` constant where the input's shape is known.

    Keeps: the value (a count is exact in float32 up to 2**24 elements over the axes, and
    a larger count is left alone); a ``_size`` that is itself an output of the graph is left
    alone too, since an untyped constant must not stand for a typed output.

    >>> import graphc as gc
    >>> x = gc.Variable("x")
    >>> folded = fold_sizes(x / gc.size_array(x, axis=0), {"x": (4, 3)})
    >>> [node.attrs["value"] for node in folded.graph.nodes if node.op == "_scalar"]
    [4.0]
    """
    known = entry_shapes(symbol, shapes)
    outputs = {entry.node for entry in symbol.entries}

    def replace(old: Node, rebuilt: Node) -> list[NodeOutput] | None:
        if rebuilt.op != "_size" or old in outputs:
            return None
        source = known.get(old.inputs[0])
        if source is None:
            return None
        axes = reduced_axes(old.attrs["axis"], len(source))
        count = int(np.prod([source[axis] for axis in axes], dtype=np.int64))
        if count > 2**24:
            return None
        constant = make_node("_scalar", [], {"value": float(count)}, rebuilt)
        return [NodeOutput(constant, 0)]

    return transform(symbol, replace, known)


def apply_identities(symbol: Symbol, shapes: Mapping[str, tuple] | None = None) -> Symbol:
    """Rewrite with the table ``graphc.passes.identities.IDENTITIES`` (x * 1 -> x, ...).

    Keeps: every replaced value has the same shape and dtype as the original (see that
    module for how; ``x * 0`` is deliberately not folded). A node built by a rule keeps the
    name and source of the node it replaces.

    >>> import graphc as gc
    >>> x = gc.Variable("x")
    >>> apply_identities(gc.negative(gc.negative(x)) * 1.0).name
    'x'
    """
    known = entry_shapes(symbol, shapes)

    def replace(old: Node, rebuilt: Node) -> list[NodeOutput] | None:
        if rebuilt.is_variable or num_outputs(rebuilt) != 1:
            return None
        replacement = first_identity(rebuilt, known.get(NodeOutput(old, 0)), known)
        return None if replacement is None else [replacement]

    return transform(symbol, replace, known)


def prune_zero_gradients(symbol: Symbol, shapes: Mapping[str, tuple] | None = None) -> Symbol:
    """Drop ``zeros_like`` terms from ``add_n`` (the gradient walk's accumulations).

    Keeps: the sum, its shape and dtype (``add_n`` terms all have the result's shape). When
    every term is zero the first ``zeros_like`` term stands for the sum; when one term is
    left it replaces the ``add_n``; otherwise a smaller ``add_n`` keeps the node's name.

    >>> import graphc as gc
    >>> x = gc.Variable("x")
    >>> prune_zero_gradients(gc.add_n(x, gc.zeros_like(x))).name
    'x'
    """

    def replace(old: Node, rebuilt: Node) -> list[NodeOutput] | None:
        if rebuilt.op != "add_n":
            return None
        terms = [entry for entry in rebuilt.inputs if entry.node.op != "zeros_like"]
        if len(terms) == len(rebuilt.inputs):
            return None
        if not terms:
            return [rebuilt.inputs[0]]
        if len(terms) == 1:
            if terms[0].node.op == "_scalar":
                return None  # an untyped constant must not stand for a typed sum
            return [terms[0]]
        smaller = make_node("add_n", terms, {"num_args": len(terms)}, rebuilt)
        return [NodeOutput(smaller, 0)]

    return transform(symbol, replace)


SIMPLIFICATIONS = (
    prune_zero_gradients,
    fold_sizes,
    apply_identities,
    fold_constants,
    eliminate_common_subexpressions,
    eliminate_dead_code,
)
"""One round of ``simplify``, in order."""


def simplify(
    symbol: Symbol,
    shapes: Mapping[str, tuple] | None = None,
    forward_outputs: int | None = None,
    capabilities: FusionCapabilities | None = None,
) -> Symbol:
    """Run every simplification until none changes the graph (at most MAX_ROUNDS rounds).
    ``forward_outputs`` and ``capabilities`` are accepted for the pipeline's uniform call
    and not needed here.

    Keeps: the value, shape and dtype of every output, in order; the outputs' node names
    where those nodes survive.

    >>> import graphc as gc
    >>> x = gc.Variable("x")
    >>> y = gc.transpose(gc.transpose(x)) * 1.0 + 0.0
    >>> simplify(y).name
    'x'
    """
    for _ in range(MAX_ROUNDS):
        before = symbol.entries
        for simplification in SIMPLIFICATIONS:
            symbol = simplification(symbol, shapes)
        if symbol.entries == before:
            break
    return symbol
