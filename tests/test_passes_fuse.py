"""Fusion and the -O2 memory plan: which groups form, what they never do (cycles, duplicated
GEMMs, forward mixed with backward), how a person sees them, and that -O0 and -O2 compute
the same numbers on the reference executor and on the CPU backend."""

from __future__ import annotations

import numpy as np
import pytest
from graph_strategies import SHAPES, VARIABLES, expression_graphs
from hypothesis import given, settings

import graphc as gc
from graphc.passes import ir_checker
from graphc.passes.fuse import fuse

x, y, w, b = (gc.Variable(name) for name in ("x", "y", "w", "b"))


def _fused_nodes(symbol: gc.Symbol) -> list:
    return [node for node in symbol.graph.nodes if node.op == "_fused"]


def _member_ops(node) -> list[str]:
    return [member.op for member in node.attrs["members"]]


def _same_values(original, optimized, inputs, tolerance=1e-12) -> None:
    expected, actual = gc.evaluate(original, inputs), gc.evaluate(optimized, inputs)
    for want, got in zip(expected, actual, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


def _random(*shapes, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.5, 1.5, shape).astype(dtype) for shape in shapes]


@pytest.mark.unit
def test_chain_becomes_one_node_that_names_the_user_nodes():
    first = gc.tanh(x, name="squash")
    out = first * 2.0 + y
    fused = fuse(out, {"x": (3, 4), "y": (3, 4)})
    (node,) = _fused_nodes(fused)
    assert _member_ops(node) == ["tanh", "multiply", "add"]
    assert node.attrs["members"][0].name == "squash"
    assert all("test_passes_fuse.py:" in member.source for member in node.attrs["members"])
    assert ("const", 2.0) in node.attrs["members"][1].operands, "scalar inlined"
    assert len(fused.graph.nodes) == 3  # x, y and the fused node
    xv, yv = _random((3, 4), (3, 4))
    _same_values(out, fused, {"x": xv, "y": yv})


@pytest.mark.unit
def test_diamond_with_two_outputs():
    shared = gc.exp(x)
    out = gc.Group([shared, (shared * 2.0) * (shared + 1.0)])
    fused = fuse(out, {"x": (2, 5)})
    (node,) = _fused_nodes(fused)
    assert sorted(_member_ops(node)) == ["add", "exp", "multiply", "multiply"]
    assert len(node.attrs["outputs"]) == 2, "exp leaves the group as an output too"
    (xv,) = _random((2, 5))
    _same_values(out, fused, {"x": xv})


@pytest.mark.unit
def test_epilogue_folds_bias_and_activation_into_the_layer():
    fc = gc.FullyConnected(x, num_hidden=6, name="fc")
    out = gc.relu(fc) * b
    shapes = {"x": (4, 3), "fc_weight": (6, 3), "fc_bias": (6,), "b": (6,)}
    fused = fuse(out, shapes)
    (node,) = _fused_nodes(fused)
    assert _member_ops(node) == ["FullyConnected", "relu", "multiply"]
    assert [entry.node.op for entry in node.inputs] == ["null"] * 4
    values = dict(zip(shapes, _random(*shapes.values())))
    _same_values(out, fused, values)


@pytest.mark.unit
def test_reduction_accumulates_inside_the_group():
    loss = gc.sum(gc.square(x - y), axis=0)
    fused = fuse(loss, {"x": (5, 3), "y": (5, 3)})
    (node,) = _fused_nodes(fused)
    assert _member_ops(node) == ["subtract", "square", "sum"]
    xv, yv = _random((5, 3), (5, 3))
    _same_values(loss, fused, {"x": xv, "y": yv})


@pytest.mark.unit
def test_a_group_that_would_make_a_cycle_is_split():
    """exp(x) feeds a dot that feeds the add: exp and add in one group would need the dot
    both before and after it."""
    start = gc.exp(x)
    product = gc.dot(start, w)
    out = gc.tanh(start) + product
    fused = fuse(out, {"x": (3, 3), "w": (3, 3)})
    groups = [set(_member_ops(node)) for node in _fused_nodes(fused)]
    assert {"exp", "tanh"} in groups
    assert {"dot", "add"} in groups, "the add takes the dot as its anchor instead"
    assert not any({"exp", "add"} <= group for group in groups)
    xv, wv = _random((3, 3), (3, 3))
    _same_values(out, fused, {"x": xv, "w": wv})


@pytest.mark.unit
def test_an_anchor_is_never_duplicated():
    """Two groups read the same GEMM: one takes it as anchor, the other reads its output."""
    product = gc.dot(x, w, name="gemm")
    out = gc.Group([gc.tanh(product) * 2.0, gc.sum(gc.exp(product) * product, axis=1)])
    fused = fuse(out, {"x": (3, 4), "w": (4, 5)})
    gemms = [op for node in fused.graph.nodes for op in _node_ops(node) if op == "dot"]
    assert gemms == ["dot"]
    xv, wv = _random((3, 4), (4, 5))
    _same_values(out, fused, {"x": xv, "w": wv})


def _node_ops(node) -> list[str]:
    return _member_ops(node) if node.op == "_fused" else [node.op]


@pytest.mark.unit
def test_forward_and_backward_stay_in_separate_kernels():
    loss = gc.sum(gc.tanh(x) * y)
    (gradient,) = gc.grad(loss, [x])
    both = gc.Group([loss, gradient])
    shapes = {"x": (3, 4), "y": (3, 4)}
    apart = fuse(both, shapes, forward_outputs=1)
    forward_nodes = set(gc.Group([apart[0]]).graph.nodes)
    for node in _fused_nodes(apart):
        if node in forward_nodes:
            assert set(_member_ops(node)) <= {"tanh", "multiply", "sum"}
    together = fuse(both, shapes)
    assert len(_fused_nodes(together)) < len(_fused_nodes(apart))
    xv, yv = _random((3, 4), (3, 4))
    _same_values(both, apart, {"x": xv, "y": yv})


@pytest.mark.unit
def test_a_lone_elementwise_node_is_left_alone():
    out = gc.dot(gc.exp(x), w)
    assert fuse(out, {"x": (2, 3), "w": (3, 2)}).entries == out.entries


@pytest.mark.unit
def test_fusion_needs_shapes_and_never_changes_its_input():
    out = gc.tanh(x) * 2.0
    listing = out.debug_str()
    with pytest.warns(UserWarning, match="no input shapes"):
        assert fuse(out).entries == out.entries, "without shapes nothing is proven equal-shaped"
    declared = gc.tanh(gc.Variable("v", shape=(2, 2))) * 2.0
    assert fuse(declared).node.op == "_fused", "a Variable's declared shape is enough"
    fuse(out, {"x": (2, 2)})
    assert out.debug_str() == listing


@pytest.mark.unit
def test_debug_str_and_dot_show_the_groups():
    net = gc.Activation(gc.FullyConnected(x, num_hidden=3, name="fc"), act_type="tanh", name="act")
    shapes = {"x": (4, 2)}
    optimized = gc.optimize(net, level=2, shapes=shapes)
    listing = optimized.debug_str(**shapes)
    assert "fused(fc, act) = _fused(x, fc_weight, fc_bias)" in listing
    assert "  | fc = FullyConnected(x, fc_weight, fc_bias" in listing
    assert "  | act = tanh(fc)  -> output 0  # test_passes_fuse.py:" in listing
    dot = gc.viz.to_dot(optimized, shapes)
    assert "subgraph cluster_n3 {" in dot
    assert 'label="fused(fc, act)";' in dot
    assert "n3_0 -> n3_1;" in dot, "the edge inside the group"
    assert "n0 -> n3_0;" in dot, "x enters at the FullyConnected member"


@pytest.mark.unit
def test_every_pass_keeps_the_ir_valid():
    net = gc.models.lenet()
    shapes = {"data": (2, 1, 28, 28)}
    params = [name for name in net.list_arguments() if name not in ("data", "softmax_label")]
    graph = gc.Group([net, *gc.grad(net, params)])
    seen = []

    def check(name, before, after):
        seen.append(name)
        ir_checker(shapes)(name, before, after)

    gc.optimize(graph, level=2, shapes=shapes, dump=check)
    assert seen == ["simplify", "fuse"]


# -- the executor: kernels, in-place execution, the arena, errors --------------------------


@pytest.mark.cpu
def test_lenet_step_meets_the_issue_targets():
    net = gc.models.lenet()
    grad_req = {name: "write" for name in net.list_arguments()}
    grad_req["data"] = "null"
    stats = {
        level: net.simple_bind(
            gc.cpu(), opt_level=level, grad_req=grad_req, data=(8, 1, 28, 28)
        ).stats()
        for level in (0, 2)
    }
    assert stats[2]["kernels_per_step"] <= 0.6 * stats[0]["kernels_per_step"]
    intermediates = {
        level: stats[level]["planned_peak_bytes"] - stats[level]["persistent_bytes"]
        for level in stats
    }
    assert stats[2]["persistent_bytes"] == stats[0]["persistent_bytes"] > 0, "the gradients"
    assert intermediates[2] <= 0.7 * intermediates[0]
    assert stats[2]["nodes"] < stats[0]["nodes"]


@pytest.mark.cpu
def test_elementwise_kernels_run_in_place_without_clobbering_outputs():
    first = gc.exp(x, name="first")
    chain = gc.tanh(gc.dot(first, w)) * 3.0
    out = gc.Group([first, gc.sum(chain * chain)])
    shapes = {"x": (3, 4), "w": (4, 4)}
    exe = out.simple_bind(gc.cpu(), grad_req="write", **shapes)
    plain = out.simple_bind(gc.cpu(), grad_req="write", opt_level=0, **shapes)
    xv, wv = _random((3, 4), (4, 4), dtype=np.float32)
    for executor in (exe, plain):
        executor.forward(is_train=True, x=xv, w=wv)
        executor.backward()
    assert exe._in_place, "some output shares a dying input's buffer"
    np.testing.assert_allclose(exe.outputs[0], np.exp(xv), rtol=1e-6)
    for name in ("x", "w"):
        np.testing.assert_allclose(exe.grad_dict[name], plain.grad_dict[name], rtol=1e-5)
    kept = {id(array) for array in exe.outputs}
    assert len(kept) == len(exe.outputs)


@pytest.mark.cpu
def test_a_kernel_error_names_the_user_nodes_it_replaced():
    labels = gc.Variable("label")
    probs = gc.softmax(x)
    out = gc.sum(probs - gc.one_hot_like(labels, probs))
    exe = out.simple_bind(gc.cpu(), grad_req="null", x=(2, 3), label=(2,))
    with pytest.raises(ValueError) as raised:
        exe.forward(x=np.zeros((2, 3), np.float32), label=np.array([0.0, 7.0], np.float32))
    notes = " ".join(getattr(raised.value, "__notes__", []))
    assert "one_hot_like" in notes and "test_passes_fuse.py:" in notes


@pytest.mark.cpu
def test_debug_str_has_the_lifetime_table_and_the_arena():
    exe = gc.models.mlp().simple_bind(gc.cpu(), data=(4, 784))
    text = exe.debug_str()
    assert "buffer lifetimes:" in text and "offset" in text
    assert "in one arena (greedy by size" in text or "in one arena (best fit" in text
    assert f"planned peak: {exe.stats()['planned_peak_bytes']:,} bytes in one arena" in text


# -- property: -O0 and -O2 agree ------------------------------------------------------------


def _training_graph(expression):
    out = gc.sum(expression) + gc.sum(expression * expression)
    names = out.list_arguments()
    return out, names


@pytest.mark.unit
@settings(max_examples=40, deadline=None)
@given(expression_graphs())
def test_property_level0_equals_level2_on_the_reference(case):
    expression, _ = case
    out, names = _training_graph(expression)
    graph = gc.Group([out, *gc.grad(out, [VARIABLES[name] for name in names])])
    shapes = {name: SHAPES[name] for name in names}
    plain = gc.optimize(graph, level=0, shapes=shapes)
    optimized = gc.optimize(graph, level=2, shapes=shapes, forward_outputs=1)
    rng = np.random.default_rng(5)
    inputs = {name: rng.uniform(-1.5, 1.5, SHAPES[name]) for name in names}
    _same_values(plain, optimized, inputs, tolerance=1e-10)


@pytest.mark.slow  # random graphs compiled cold at -O0 and -O2: 80 s on a cold cache
@pytest.mark.parametrize(
    "dtype, tolerance, examples", [(np.float64, 1e-10, 10), (np.float32, 1e-4, 6)]
)
def test_property_level0_equals_level2_on_the_cpu_backend(dtype, tolerance, examples):
    @settings(max_examples=examples, deadline=None)
    @given(expression_graphs())
    def check(case):
        expression, _ = case
        out, names = _training_graph(expression)
        shapes = {name: SHAPES[name] for name in names}
        types = {name: dtype for name in names}
        rng = np.random.default_rng(7)
        inputs = {name: rng.uniform(-1.5, 1.5, SHAPES[name]).astype(dtype) for name in names}
        results = []
        for level in (0, 2):
            exe = out.simple_bind(gc.cpu(), opt_level=level, type_dict=types, **shapes)
            value = exe.forward(is_train=True, **inputs)[0].copy()
            exe.backward()
            results.append((value, {name: exe.grad_dict[name].copy() for name in names}))
        (value0, grads0), (value2, grads2) = results
        scale = max(1.0, float(np.abs(value0)))
        np.testing.assert_allclose(value2, value0, rtol=tolerance, atol=tolerance * scale)
        for name in names:
            scale = max(1.0, float(np.abs(grads0[name]).max()))
            np.testing.assert_allclose(
                grads2[name], grads0[name], rtol=tolerance, atol=tolerance * scale
            )

    check()


@pytest.mark.cpu
@pytest.mark.parametrize("width", [3, 4, 33])
@pytest.mark.parametrize("num_threads", [1, 2])
def test_fused_reductions_in_lanes_match_the_reference(width, num_threads):
    """A convolution's bias gradient (N, C, H, W -> C) and a sum of everything: summed in a
    row of lanes along W from 4 on (``fused.LANE_EXTENTS``), as one chain below, and split
    over the batch in 2 parts; the same result to float64 reassociation, the same bits on a
    second run."""
    from graphc.codegen_cpu.fused import LANE_EXTENTS

    assert LANE_EXTENTS[0] == 4, "the widths straddle the lanes' lower bound"
    data = gc.Variable("data")
    product = gc.tanh(data) * 3.0
    out = gc.Group([gc.sum(product, axis=(0, 2, 3)), gc.sum(product), gc.exp(product)])
    shape = (5, 3, 7, width)
    options = {"num_threads": num_threads, "split_small": True}
    exe = out.simple_bind(gc.cpu(), type_dict={"data": np.float64}, options=options, data=shape)
    assert any(line.startswith("  | ") for line in exe.debug_str().splitlines()), "fused"
    values = {"data": _random(shape, dtype=np.float64)[0]}
    first = [array.copy() for array in exe.forward(**values)]
    second = [array.copy() for array in exe.forward(**values)]
    for got, again, want in zip(first, second, gc.evaluate(out, values), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-12)
        assert np.array_equal(got, again)


@pytest.mark.cpu
@pytest.mark.parametrize("axis, keepdims", [((0, 2, 3), False), ((1, 3), True), (None, False)])
def test_fused_reductions_on_the_cpu_match_the_reference(axis, keepdims):
    """A bias gradient's reduction over several axes, as in a convolution's backward, and a
    broadcast gradient summed back to a (1, C, 1, W) operand."""
    data, scale = gc.Variable("data"), gc.Variable("scale")
    product = gc.tanh(data) * scale
    out = gc.Group([gc.sum(product * 2.0, axis=axis, keepdims=keepdims), gc.exp(product)])
    shapes = {"data": (2, 3, 4, 5), "scale": (1, 3, 1, 5)}
    exe = out.simple_bind(gc.cpu(), grad_req="write", **shapes)
    # debug_str lists each fused node's members below it as "  | name = op(...".
    members = [
        line.split("=", 1)[1].split("(", 1)[0].strip()
        for line in exe.debug_str().splitlines()
        if line.startswith("  | ")
    ]
    assert "sum" in members and "sum_to_like" in members, "both reductions are fused"
    values = dict(zip(shapes, _random(*shapes.values(), dtype=np.float64)))
    exe64 = out.simple_bind(
        gc.cpu(), grad_req="write", type_dict=dict.fromkeys(shapes, np.float64), **shapes
    )
    outputs = exe64.forward(is_train=True, **values)
    exe64.backward()
    for got, want in zip(outputs, gc.evaluate(out, values), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    loss = gc.sum(out[0]) + gc.sum(out[1])
    expected = gc.evaluate(gc.Group(gc.grad(loss, ["data", "scale"])), values)
    for name, want in zip(("data", "scale"), expected, strict=True):
        np.testing.assert_allclose(exe64.grad_dict[name], want, rtol=1e-10, atol=1e-12)
