"""Simplification passes: each rule fires, optimized graphs compute the same values and
gradients, and the input graph is never changed."""

from __future__ import annotations

import numpy as np
import pytest
from graph_strategies import SHAPES, VARIABLES, expression_graphs  # noqa: E402, I001
from hypothesis import given, settings

import graphc as gc
from graphc.ir.symbol import scalar
from graphc.passes import (
    IDENTITIES,
    eliminate_common_subexpressions,
    eliminate_dead_code,
    fold_constants,
    ir_checker,
    prune_zero_gradients,
    rewrite,
    simplify,
)

pytestmark = pytest.mark.unit


def _inputs(names, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(-1.5, 1.5, SHAPES[name]) for name in names}


def _values(symbol: gc.Symbol, inputs: dict) -> list[np.ndarray]:
    present = set(symbol.list_inputs())
    return gc.evaluate(symbol, {name: value for name, value in inputs.items() if name in present})


def _assert_same_values(original, optimized, inputs, tolerance=1e-12) -> None:
    expected, actual = _values(original, inputs), _values(optimized, inputs)
    assert len(expected) == len(actual)
    for want, got in zip(expected, actual):
        assert got.shape == want.shape
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


def _ops(symbol: gc.Symbol) -> list[str]:
    return [node.op for node in symbol.graph.nodes if not node.is_variable]


def _check_rewrite(original, optimize_fn, inputs):
    """optimize_fn's result: same values, fewer nodes, original unchanged."""
    listing = original.debug_str()
    optimized = optimize_fn(original)
    assert original.debug_str() == listing
    assert len(optimized.graph.nodes) < len(original.graph.nodes)
    _assert_same_values(original, optimized, inputs)
    return optimized


x, y, z = gc.Variable("x"), gc.Variable("y"), gc.Variable("z")


def _with_shapes(symbol):
    return simplify(symbol, SHAPES)


# One row per identity rule: a graph it fires on, and the ops left after simplification.
IDENTITY_CASES = {
    "mul_one_right": (gc.exp(x) * 1.0, ["exp"]),
    "mul_one_left": (1.0 * gc.exp(x), ["exp"]),
    "add_zero_right": (gc.exp(x) + 0.0, ["exp"]),
    "add_zero_left": (0.0 + gc.exp(x), ["exp"]),
    "sub_zero": (gc.exp(x) - 0.0, ["exp"]),
    "div_one": (gc.exp(x) / 1.0, ["exp"]),
    "double_negative": (gc.negative(gc.negative(gc.exp(x))), ["exp"]),
    "transpose_transpose": (gc.transpose(gc.transpose(x)), []),
    "reshape_reshape": (gc.Reshape(gc.Reshape(x, shape=(4, 3)), shape=(2, 6)), ["Reshape"]),
    "reshape_to_same_shape": (gc.exp(gc.Reshape(x, shape=(3, 4))), ["exp"]),
    # sum -> Reshape, then Reshape(Reshape(x)) -> Reshape to (3, 4), which is x itself.
    "sum_over_size_one_axes": (gc.sum(gc.Reshape(x, shape=(3, 1, 4)), axis=1), []),
    "sum_to_like_same_shape": (gc.sum_to_like(gc.exp(x), y), ["exp"]),
    "broadcast_like_same_shape": (gc.broadcast_like(gc.exp(x), y), ["exp"]),
    "reshape_like_same_shape": (gc.reshape_like(gc.exp(x), y), ["exp"]),
    "add_n_single": (gc.add_n(gc.exp(x)), ["exp"]),
    "mul_ones_like_right": (gc.exp(x) * gc.ones_like(y), ["exp"]),
    "mul_ones_like_left": (gc.ones_like(y) * gc.exp(x), ["exp"]),
    "add_zeros_like_right": (gc.exp(x) + gc.zeros_like(y), ["exp"]),
    "add_zeros_like_left": (gc.zeros_like(y) + gc.exp(x), ["exp"]),
    "sub_zeros_like": (gc.exp(x) - gc.zeros_like(y), ["exp"]),
}


def test_every_identity_has_a_case():
    assert sorted(IDENTITY_CASES) == sorted(rule.name for rule in IDENTITIES)
    assert all(rule.reason for rule in IDENTITIES)


@pytest.mark.parametrize("rule", sorted(IDENTITY_CASES))
def test_identity_fires_and_keeps_values(rule):
    original, remaining = IDENTITY_CASES[rule]
    optimized = _check_rewrite(original, _with_shapes, _inputs(SHAPES))
    assert _ops(optimized) == remaining


def test_reshape_reshape_merges_without_shapes_when_outer_reads_no_inner_shape():
    original = gc.Reshape(gc.Reshape(x, shape=(0, -1, 2)), shape=(-1, 6), name="outer")
    optimized = _check_rewrite(original, simplify, _inputs("x"))
    assert _ops(optimized) == ["Reshape"]
    assert optimized.name == "outer"
    assert optimized.node.attrs["shape"] == (-1, 6)


def test_reshape_reshape_with_copy_codes_needs_shapes():
    original = gc.Reshape(gc.Reshape(x, shape=(4, 3)), shape=(0, -1))
    assert simplify(original).entries == original.entries
    assert _ops(_check_rewrite(original, _with_shapes, _inputs("x"))) == ["Reshape"]


def test_transpose_pair_that_does_not_cancel_becomes_one_transpose():
    cube = gc.Variable("cube")
    original = gc.transpose(gc.transpose(cube, axes=(1, 2, 0)), axes=(1, 2, 0), name="t")
    inputs = {"cube": np.arange(24.0).reshape(2, 3, 4)}
    optimized = _check_rewrite(original, simplify, inputs)
    assert _ops(optimized) == ["transpose"]
    assert optimized.name == "t"


def test_shape_rules_do_not_fire_without_shapes():
    original = gc.sum_to_like(gc.exp(x), y)
    assert simplify(original).entries == original.entries


def test_zeros_like_that_broadcasts_is_not_removed():
    # z (4,) + zeros_like(x) (3, 4) is (3, 4): replacing it by z would change the shape.
    original = z + gc.zeros_like(x)
    assert simplify(original, SHAPES).entries == original.entries


def test_sum_over_a_larger_axis_is_kept():
    original = gc.sum(x, axis=1)
    assert simplify(original, SHAPES).entries == original.entries


def test_times_zero_is_deliberately_not_folded():
    # x * 0 -> 0 would turn inf * 0 (NaN) into 0 and hide a diverged run; graphc keeps it.
    for original in (x * 0.0, 0.0 * x, x * gc.zeros_like(x)):
        optimized = simplify(original, SHAPES)
        assert "multiply" in _ops(optimized)
        with np.errstate(invalid="ignore"):  # inf * 0 is NaN: the point of the test
            value = _values(optimized, {"x": np.array([[np.inf, 1.0, 2.0, 3.0]] * 3)})[0]
        assert np.isnan(value[0, 0])


def test_constant_folding_folds_scalar_subgraphs():
    constants = gc.exp(scalar(0.0)) * 2.0 + scalar(3.0) / scalar(4.0)
    original = x * constants
    optimized = _check_rewrite(original, fold_constants, _inputs("x"))
    scalars = [node.attrs["value"] for node in optimized.graph.nodes if node.op == "_scalar"]
    assert scalars == [2.75]
    assert _ops(optimized) == ["_scalar", "multiply"]


def test_constant_folding_keeps_the_folded_node_name():
    folded = fold_constants(gc.add(scalar(1.0), scalar(2.0), name="three"))
    assert (folded.name, folded.node.op, folded.node.attrs["value"]) == ("three", "_scalar", 3.0)


def test_constant_folding_leaves_non_scalar_constants():
    original = gc.ones_like(x) * 2.0
    assert fold_constants(original).entries == original.entries


def test_cse_merges_a_diamond():
    left = gc.tanh(gc.exp(x) * y)
    right = gc.tanh(gc.exp(x) * y)
    original = left + right
    optimized = _check_rewrite(original, eliminate_common_subexpressions, _inputs("xy"))
    assert sorted(_ops(optimized)) == ["add", "exp", "multiply", "tanh"]
    add_node = optimized.node
    assert add_node.inputs[0] == add_node.inputs[1]


def test_cse_compares_attributes_fully():
    same = gc.Group([gc.sum(x, axis=1), gc.sum(x, axis=1)])
    assert len(eliminate_common_subexpressions(same).graph.nodes) == 2
    different = gc.Group([gc.sum(x, axis=1), gc.sum(x, axis=1, keepdims=True), gc.sum(x, axis=0)])
    assert eliminate_common_subexpressions(different).entries == different.entries


def test_cse_never_merges_dropout_or_signed_zeros():
    dropouts = gc.Dropout(x, p=0.5) + gc.Dropout(x, p=0.5)
    assert _ops(eliminate_common_subexpressions(dropouts)).count("Dropout") == 2
    zeros = gc.Group([x / scalar(0.0), x / scalar(-0.0)])
    assert _ops(eliminate_common_subexpressions(zeros)).count("_scalar") == 2


def test_dce_drops_nodes_a_rewrite_bypassed():
    hidden = gc.exp(x)
    original = gc.tanh(hidden) + y
    bypassed = rewrite(original, {original.node.inputs[0]: y.entries[0]})
    assert _ops(bypassed) == ["add"]
    kept = eliminate_dead_code(bypassed)
    assert [node.name for node in kept.graph.nodes] == ["y", original.name]
    assert _ops(original) == ["exp", "tanh", "add"]


def test_prune_zero_gradients():
    original = gc.add_n(gc.exp(x), gc.zeros_like(y), gc.tanh(x), name="acc")
    optimized = _check_rewrite(original, prune_zero_gradients, _inputs("xy"))
    assert optimized.name == "acc"
    assert optimized.node.attrs["num_args"] == 2
    all_zero = gc.add_n(gc.zeros_like(x), gc.zeros_like(y))
    optimized = _check_rewrite(all_zero, prune_zero_gradients, _inputs("xy"))
    assert _ops(optimized) == ["zeros_like"]


def test_outputs_keep_order_and_names():
    first, second = gc.exp(x, name="first"), gc.tanh(y * 1.0, name="second")
    optimized = gc.optimize(gc.Group([second, first, x * 1.0]), level=1)
    assert [entry.node.name for entry in optimized.entries] == ["second", "first", "x"]


def test_levels_and_dump():
    original = gc.exp(x) * 1.0
    assert gc.optimize(original, level=0).entries == original.entries
    seen = []
    gc.optimize(
        original, level=2, shapes={"x": (3, 4)}, dump=lambda name, before, after: seen.append(name)
    )
    assert seen == ["simplify", "fuse"]
    with pytest.raises(ValueError, match="level"):
        gc.optimize(original, level=3)


def test_deep_chain_simplifies_without_recursion():
    chain = x
    for _ in range(5000):
        chain = gc.negative(gc.negative(chain)) * 1.0
    assert gc.optimize(gc.exp(chain), level=1).node.inputs[0].node.name == "x"


def test_training_gradient_graph_gets_smaller():
    w = gc.Variable("w")
    loss = gc.sum(gc.tanh(gc.dot(x, w)) * 1.0 + gc.zeros_like(gc.dot(x, w)))
    grads = gc.Group(gc.grad(loss, [x, w]))
    shapes = {"x": (3, 4), "w": (4, 2)}
    optimized = gc.optimize(grads, level=1, shapes=shapes, dump=ir_checker(shapes))
    rng = np.random.default_rng(1)
    inputs = {"x": rng.normal(size=(3, 4)), "w": rng.normal(size=(4, 2))}
    assert len(optimized.graph.nodes) < len(grads.graph.nodes)
    _assert_same_values(grads, optimized, inputs)


def test_viz_to_dot_plain_graph_has_no_clusters():
    from graphc.ir.node import Node, NodeOutput, freeze_attrs

    plain = Node("exp", "e", (x.entries[0],), freeze_attrs({}), "t")
    text = gc.viz.to_dot(gc.Symbol([NodeOutput(plain, 0)]), {"x": (3, 4)})
    assert "e\\nexp\\n(3, 4)" in text
    assert "cluster" not in text


# -- property: level 0 and level 1 agree on values and gradients --------------------------


@settings(max_examples=50, deadline=None)
@given(expression_graphs())
def test_property_level0_equals_level1_values_and_gradients(case):
    expression, with_shapes = case
    out = gc.sum(expression) + gc.sum(expression * expression)
    arguments = out.list_arguments()
    variables = [VARIABLES[name] for name in arguments]
    graph = gc.Group([out, *gc.grad(out, variables)])
    shapes = {name: SHAPES[name] for name in arguments} if with_shapes else None
    listing = graph.debug_str()
    checker = ir_checker({name: SHAPES[name] for name in arguments})
    plain = gc.optimize(graph, level=0, shapes=shapes)
    optimized = gc.optimize(graph, level=1, shapes=shapes, dump=checker)
    assert graph.debug_str() == listing
    assert len(optimized.graph.nodes) <= len(plain.graph.nodes)
    _assert_same_values(plain, optimized, _inputs(arguments, seed=3), tolerance=1e-10)
