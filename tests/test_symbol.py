"""Symbol API: MXNet's introspection, the LeNet shapes, JSON round trips, listings."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

pytestmark = pytest.mark.unit

LENET_ARGUMENTS = [
    ("data", (100, 1, 28, 28)),
    ("conv1_weight", (20, 1, 5, 5)),
    ("conv1_bias", (20,)),
    ("conv2_weight", (50, 20, 5, 5)),
    ("conv2_bias", (50,)),
    ("fc1_weight", (500, 800)),
    ("fc1_bias", (500,)),
    ("fc2_weight", (10, 500)),
    ("fc2_bias", (10,)),
    ("softmax_label", (100,)),
]


def test_lenet_shapes_match_mxnet():
    net = gc.models.lenet()
    arg_shapes, out_shapes, aux_shapes = net.infer_shape(data=(100, 1, 28, 28))
    assert list(zip(net.list_arguments(), arg_shapes)) == LENET_ARGUMENTS
    assert out_shapes == [(100, 10)]
    assert aux_shapes == []
    assert net.list_outputs() == ["softmax_output"]
    assert net.list_auxiliary_states() == []


def test_lenet_internals_shapes():
    internals = gc.models.lenet().get_internals()
    shapes = dict(zip(internals.list_outputs(), internals.infer_shape(data=(100, 1, 28, 28))[1]))
    assert shapes["conv1_output"] == (100, 20, 24, 24)
    assert shapes["pool1_output"] == (100, 20, 12, 12)
    assert shapes["conv2_output"] == (100, 50, 8, 8)
    assert shapes["pool2_output"] == (100, 50, 4, 4)
    assert shapes["flatten_output"] == (100, 800)
    fc1 = internals["fc1_output"]
    assert fc1.list_arguments() == [
        "data",
        "conv1_weight",
        "conv1_bias",
        "conv2_weight",
        "conv2_bias",
        "fc1_weight",
        "fc1_bias",
    ]


def _lenet_inputs(net, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    arg_shapes, _, _ = net.infer_shape(data=(batch, 1, 28, 28))
    values = {
        name: rng.standard_normal(shape) * 0.1
        for name, shape in zip(net.list_arguments(), arg_shapes)
    }
    values["softmax_label"] = rng.integers(0, 10, batch).astype(np.float64)
    return values


def test_lenet_json_round_trip_gives_same_results(tmp_path):
    net = gc.models.lenet()
    values = _lenet_inputs(net)
    path = tmp_path / "lenet.json"
    net.save(str(path))
    loaded = gc.load(str(path))
    assert loaded.list_arguments() == net.list_arguments()
    assert loaded.tojson() == net.tojson()
    np.testing.assert_array_equal(gc.evaluate(loaded, values)[0], gc.evaluate(net, values)[0])
    grads = gc.grad(net, ["fc1_weight", "conv1_weight"])
    reloaded = gc.load_json(gc.Group(grads).tojson())
    for got, want in zip(gc.evaluate(reloaded, values), gc.evaluate(gc.Group(grads), values)):
        np.testing.assert_array_equal(got, want)


def test_lenet_gradient_matches_finite_differences_on_a_few_weights():
    net = gc.models.lenet()
    values = _lenet_inputs(net, batch=2)
    (dw,) = gc.grad(net, ["fc2_bias"])
    errors = gc.gradcheck(net, values, wrt=["fc2_bias"])
    assert errors["fc2_bias"] < 1e-6
    assert gc.evaluate(dw, values)[0].shape == (10,)


def test_group_indexing_and_multi_output():
    x = gc.Variable("x")
    parts = gc.SliceChannel(x, num_outputs=3, axis=0, name="sc")
    assert len(parts) == 3
    assert parts.list_outputs() == ["sc_output0", "sc_output1", "sc_output2"]
    assert parts["sc_output1"].list_outputs() == ["sc_output1"]
    group = gc.Group([parts[2], parts[0] * 2.0])
    first, second = gc.evaluate(group, {"x": np.arange(3.0)})
    assert first.tolist() == [2.0] and second.tolist() == [0.0]
    with pytest.raises(IndexError):
        parts[3]


def test_infer_type_follows_data_dtype():
    net = gc.models.mlp()
    arg_types, out_types, _ = net.infer_type(data="float64")
    assert all(dtype == np.float64 for dtype in arg_types)
    assert out_types == [np.float64]
    arg_types, _, _ = net.infer_type()
    assert all(dtype == np.float32 for dtype in arg_types)


def test_infer_shape_partial_leaves_unknowns():
    x, y = gc.Variable("x"), gc.Variable("y")
    net = gc.FullyConnected(x, num_hidden=2, name="fc") + y
    args, outs, _ = net.infer_shape_partial()
    assert args == [None, None, None, None]
    args, outs, _ = net.infer_shape_partial(x=(3, 4))
    assert args == [(3, 4), (2, 4), (2,), None]
    assert outs == [None]


def test_debug_str_lists_every_node_with_shapes():
    net = gc.models.mlp()
    text = net.debug_str(data=(5, 7))
    lines = text.splitlines()
    assert (
        "fc1 = FullyConnected(data, fc1_weight, fc1_bias; flatten=True, no_bias=False, num_hidden=64) -> (5, 64)"
        in text
    )
    assert "relu1 = relu(fc1) -> (5, 64)" in text
    assert lines[0] == "data: Variable -> (5, 7)"
    assert lines[-1] == "outputs: softmax"
    assert "test_symbol.py:" in text  # the user's line, not the model zoo's


def test_explicit_parameters_and_variable_attributes():
    w = gc.Variable("w", shape=(3, 4), init="xavier", lr_mult=0.5)
    net = gc.FullyConnected(gc.Variable("x"), weight=w, num_hidden=3, no_bias=True, name="fc")
    assert net.list_arguments() == ["x", "w"]
    assert net.infer_shape(x=(2, 4))[0] == [(2, 4), (3, 4)]
    with pytest.raises(gc.ShapeError, match="weight expects 4 columns"):
        net.infer_shape(x=(2, 5))
    loaded = gc.load_json(net.tojson())
    assert loaded.attr_dict()["w"] == {"shape": (3, 4), "init": "xavier", "lr_mult": 0.5}


def test_reshape_codes_follow_mxnet():
    x = gc.Variable("x")
    cases = [
        ((2, 3, 4), (4, 0, 2), (4, 3, 2)),
        ((2, 3, 4), (2, 0, 0), (2, 3, 4)),
        ((2, 3, 4), (6, 1, -1), (6, 1, 4)),
        ((2, 3, 4), (3, -1, 8), (3, 1, 8)),
        ((2, 3, 4), (-1,), (24,)),
        ((2, 3, 4), (-2,), (2, 3, 4)),
        ((2, 3, 4), (2, -2), (2, 3, 4)),
        ((2, 3, 4), (-2, 1, 1), (2, 3, 4, 1, 1)),
        ((2, 3, 4), (-3, 4), (6, 4)),
        ((2, 3, 4, 5), (-3, -3), (6, 20)),
        ((2, 3, 4), (0, -3), (2, 12)),
        ((2, 3, 4), (-3, -2), (6, 4)),
        ((2, 3, 4), (-4, 1, 2, -2), (1, 2, 3, 4)),
        ((2, 3, 4), (2, -4, -1, 3, -2), (2, 1, 3, 4)),
    ]
    for source, spec, expected in cases:
        assert gc.Reshape(x, shape=spec).infer_shape(x=source)[1] == [expected], spec
    assert gc.Reshape(x, shape=(-1, 0), reverse=True).infer_shape(x=(10, 5, 4))[1] == [(50, 4)]
    with pytest.raises(gc.ShapeError, match=r"cannot reshape \(2, 3\) \(6 elements\) to \(4,\)"):
        gc.Reshape(x, shape=(4,)).infer_shape(x=(2, 3))
