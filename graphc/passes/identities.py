"""Algebraic identities as data: a table of pattern -> replacement, one reason each.

A pattern names an op and patterns for its inputs; ``X("x")`` matches any entry and binds
it. A replacement is either the name of a bound entry or a named function of the match that
builds a new node (or returns None when the identity does not hold after all).

The invariant every rule keeps: the replacement has exactly the shape and dtype of the value
it replaces, so no consumer can tell the difference.

- Shape: the engine (``simplify.apply_identities``) compares the shapes of the original and
  the replacement whenever both are known. A rule marked ``needs_shapes`` only fires when they
  are known and equal, which is how ``x + zeros_like(y)`` with ``y`` larger than ``x`` (the
  sum broadcasts ``x`` up) is left alone. The other rules are shape-safe by construction: a
  0-d constant never broadcasts its partner to a new shape.
- Dtype: every op in the table takes the common dtype of its inputs (or of its first input),
  so its value has the dtype of the bound entry. The exception is an untyped ``_scalar``
  constant, which takes the dtype of its consumers: a rule never replaces a node by a
  ``_scalar``; constant folding handles subgraphs made only of constants.

Deliberately not folded: ``x * 0 -> 0`` (and ``x * zeros_like(y)``). It is wrong whenever x
holds NaN or Inf (``inf * 0`` is NaN), and users rely on NaN propagating to notice a
diverged training run; folding it would hide exactly that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphc.ir.node import Node, NodeOutput
from graphc.ir.ops.reduce import reduced_axes
from graphc.passes.rewrite import make_node


@dataclass(frozen=True)
class Pattern:
    """Matches an entry: ``op`` None matches anything; ``inputs`` None matches any inputs;
    ``value`` is the value a ``_scalar`` constant must have; ``bind`` names the entry."""

    op: str | None = None
    inputs: tuple[Pattern, ...] | None = None
    value: float | None = None
    bind: str | None = None


def X(bind: str | None = None) -> Pattern:
    """Any entry, bound under ``bind``."""
    return Pattern(bind=bind)


def op(name: str, *inputs: Pattern, bind: str | None = None) -> Pattern:
    """An output 0 of an ``name`` node whose inputs match ``inputs`` in order."""
    return Pattern(op=name, inputs=tuple(inputs), bind=bind)


def const(value: float) -> Pattern:
    """A ``_scalar`` constant equal to ``value``."""
    return Pattern(op="_scalar", inputs=(), value=value)


@dataclass(frozen=True)
class Match:
    """What a replacement function sees: the (rebuilt) matched node, the bound entries, the
    shape of the value being replaced and the shapes known for entries."""

    node: Node
    bound: Mapping[str, NodeOutput]
    shape: tuple | None
    shapes: Mapping[NodeOutput, Any] = field(repr=False)

    def shape_of(self, name: str) -> tuple | None:
        return self.shapes.get(self.bound[name])


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: Pattern
    replacement: str | Callable[[Match], NodeOutput | None]
    reason: str
    needs_shapes: bool = False


def match(pattern: Pattern, entry: NodeOutput, bound: dict[str, NodeOutput]) -> bool:
    """True if ``entry`` matches ``pattern``; bindings are added to ``bound``.

    Patterns are a few levels deep, so plain recursion over the pattern is fine here."""
    node = entry.node
    if pattern.op is not None:
        if node.op != pattern.op or entry.index != 0:
            return False
        if pattern.value is not None and node.attrs.get("value") != pattern.value:
            return False
        if pattern.inputs is not None:
            if len(pattern.inputs) != len(node.inputs):
                return False
            for sub, child in zip(pattern.inputs, node.inputs):
                if not match(sub, child, bound):
                    return False
    if pattern.bind is not None:
        if pattern.bind in bound and bound[pattern.bind] != entry:
            return False
        bound[pattern.bind] = entry
    return True


# -- replacements that build a node ------------------------------------------------------


def merge_transposes(m: Match) -> NodeOutput | None:
    """transpose(transpose(x, a), b) is x when the permutations cancel, else one transpose
    of x by the composed permutation (output axis i is input axis a[b[i]])."""
    inner = m.bound["inner"].node
    inner_axes, outer_axes = inner.attrs["axes"] or None, m.node.attrs["axes"] or None
    if inner_axes is None and outer_axes is None:
        return m.bound["x"]
    ndim = len(inner_axes) if inner_axes is not None else len(outer_axes)
    first = _permutation(inner_axes, ndim)
    second = _permutation(outer_axes, ndim)
    composed = tuple(first[axis] for axis in second)
    if composed == tuple(range(ndim)):
        return m.bound["x"]
    return NodeOutput(make_node("transpose", [m.bound["x"]], {"axes": composed}, m.node))


def _permutation(axes, ndim: int) -> tuple[int, ...]:
    if axes is None:
        return tuple(reversed(range(ndim)))
    return tuple(axis % ndim for axis in axes)


def merge_reshapes(m: Match) -> NodeOutput | None:
    """Reshape(Reshape(x, s1), s2) is one Reshape of x: to the final shape when it is known,
    else to s2 when s2 has only sizes and -1 (then it does not read the inner shape)."""
    if m.shape is not None:
        attrs = {"shape": m.shape}
    elif all(code > 0 or code == -1 for code in m.node.attrs["shape"]):
        attrs = dict(m.node.attrs)
    else:
        return None
    return NodeOutput(make_node("Reshape", [m.bound["x"]], attrs, m.node))


def sum_of_size_one_axes(m: Match) -> NodeOutput | None:
    """sum over axes that all have size 1 adds nothing: it is a Reshape to the result shape."""
    source = m.shape_of("x")
    axes = reduced_axes(m.node.attrs["axis"], len(source))
    if any(source[axis] != 1 for axis in axes):
        return None
    return NodeOutput(make_node("Reshape", [m.bound["x"]], {"shape": m.shape}, m.node))


_ANY = X()

# fmt: off
IDENTITIES: tuple[Rule, ...] = (
    Rule("mul_one_right", op("multiply", X("x"), const(1.0)), "x",
         "x * 1 == x exactly; a 0-d 1 never broadcasts x to a new shape"),
    Rule("mul_one_left", op("multiply", const(1.0), X("x")), "x",
         "1 * x == x exactly"),
    Rule("add_zero_right", op("add", X("x"), const(0.0)), "x",
         "x + 0 == x (up to the sign of a zero result)"),
    Rule("add_zero_left", op("add", const(0.0), X("x")), "x",
         "0 + x == x (up to the sign of a zero result)"),
    Rule("sub_zero", op("subtract", X("x"), const(0.0)), "x",
         "x - 0 == x exactly"),
    Rule("div_one", op("divide", X("x"), const(1.0)), "x",
         "x / 1 == x exactly"),
    Rule("double_negative", op("negative", op("negative", X("x"))), "x",
         "-(-x) == x exactly: negation only flips the sign bit"),
    Rule("transpose_transpose", op("transpose", op("transpose", X("x"), bind="inner")),
         merge_transposes, "two permutations compose into one (or none)"),
    Rule("reshape_reshape", op("Reshape", op("Reshape", X("x"))), merge_reshapes,
         "only the last reshape's shape matters; the data order is unchanged"),
    Rule("reshape_to_same_shape", op("Reshape", X("x")), "x",
         "a reshape to the shape x already has is x", needs_shapes=True),
    Rule("sum_over_size_one_axes", op("sum", X("x")), sum_of_size_one_axes,
         "summing one element is that element", needs_shapes=True),
    Rule("sum_to_like_same_shape", op("sum_to_like", X("x"), _ANY), "x",
         "nothing to reduce when x already has the target shape", needs_shapes=True),
    Rule("broadcast_like_same_shape", op("broadcast_like", X("x"), _ANY), "x",
         "nothing to broadcast when x already has the target shape", needs_shapes=True),
    Rule("reshape_like_same_shape", op("reshape_like", X("x"), _ANY), "x",
         "a reshape to the shape x already has is x", needs_shapes=True),
    Rule("add_n_single", op("add_n", X("x")), "x",
         "a sum of one term is the term"),
    Rule("mul_ones_like_right", op("multiply", X("x"), op("ones_like", _ANY)), "x",
         "x * 1 == x when the ones do not broadcast x up", needs_shapes=True),
    Rule("mul_ones_like_left", op("multiply", op("ones_like", _ANY), X("x")), "x",
         "1 * x == x when the ones do not broadcast x up", needs_shapes=True),
    Rule("add_zeros_like_right", op("add", X("x"), op("zeros_like", _ANY)), "x",
         "x + 0 == x when the zeros do not broadcast x up", needs_shapes=True),
    Rule("add_zeros_like_left", op("add", op("zeros_like", _ANY), X("x")), "x",
         "0 + x == x when the zeros do not broadcast x up", needs_shapes=True),
    Rule("sub_zeros_like", op("subtract", X("x"), op("zeros_like", _ANY)), "x",
         "x - 0 == x when the zeros do not broadcast x up", needs_shapes=True),
)
# fmt: on

RULES_BY_OP: dict[str, tuple[Rule, ...]] = {}
for _rule in IDENTITIES:
    RULES_BY_OP[_rule.pattern.op] = RULES_BY_OP.get(_rule.pattern.op, ()) + (_rule,)


def first_identity(node: Node, shape, shapes: Mapping[NodeOutput, Any]) -> NodeOutput | None:
    """The replacement for output 0 of ``node`` from the first rule that applies, or None.

    ``shape`` is the known shape of the value being replaced (None when unknown)."""
    for rule in RULES_BY_OP.get(node.op, ()):
        bound: dict[str, NodeOutput] = {}
        if not match(rule.pattern, NodeOutput(node, 0), bound):
            continue
        if rule.needs_shapes and (
            shape is None or any(shapes.get(entry) is None for entry in bound.values())
        ):
            continue
        if isinstance(rule.replacement, str):
            replacement = bound[rule.replacement]
        else:
            replacement = rule.replacement(Match(node, bound, shape, shapes))
        if replacement is None or replacement.node.op == "_scalar":
            continue
        found = shapes.get(replacement)
        if found is not None and shape is not None and tuple(found) != tuple(shape):
            continue
        return replacement
    return None
