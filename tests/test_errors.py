"""Bad input gets a clear error naming the node, its op, the user's line and the shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest

import graphc as gc

pytestmark = pytest.mark.unit


def test_shape_error_names_node_op_line_and_upstream_shapes():
    data = gc.Variable("data")
    fc1 = gc.FullyConnected(data, num_hidden=8, name="fc1")
    fc2 = gc.FullyConnected(fc1, weight=gc.Variable("w2", shape=(4, 9)), num_hidden=4, name="fc2")
    with pytest.raises(gc.ShapeError) as info:
        fc2.infer_shape(data=(5, 3))
    message = str(info.value)
    assert "fc2 (FullyConnected) at test_errors.py:" in message
    assert "input (5, 8) but weight expects 9 columns" in message
    assert "data (5,3) -> fc1 (5,8)" in message


def test_broadcast_mismatch_names_both_shapes():
    a, b = gc.Variable("a"), gc.Variable("b")
    with pytest.raises(
        gc.ShapeError, match=r"add\d* \(add\).*\(2, 3\) and \(4,\) do not broadcast"
    ):
        (a + b).infer_shape(a=(2, 3), b=(4,))


def test_invalid_attributes_name_attribute_value_and_allowed():
    x = gc.Variable("x")
    with pytest.raises(ValueError, match=r"num_hidden=-3 is not allowed; allowed: a value >= 1"):
        gc.FullyConnected(x, num_hidden=-3)
    with pytest.raises(ValueError, match=r"act_type='swish' is not allowed; allowed: 'relu'"):
        gc.Activation(x, act_type="swish")
    with pytest.raises(ValueError, match=r"unknown attribute\(s\) \['num_hiden'\]"):
        gc.FullyConnected(x, num_hiden=3)
    with pytest.raises(ValueError, match=r"attribute num_hidden is required"):
        gc.FullyConnected(x)
    with pytest.raises(ValueError, match=r"p=1.0 is not allowed; allowed: a value >= 0 and < 1"):
        gc.Dropout(x, p=1.0)


def test_missing_shapes_and_inputs_are_listed():
    x, y = gc.Variable("x"), gc.Variable("y")
    net = x * y + gc.FullyConnected(x, num_hidden=2, name="fc")
    with pytest.raises(gc.MissingInputError, match=r"cannot infer the shape of \['y'\]"):
        net.infer_shape(x=(2, 2))
    with pytest.raises(
        gc.MissingInputError, match=r"no value given for \['fc_weight', 'fc_bias'\]"
    ):
        gc.evaluate(net, {"x": np.ones((2, 2)), "y": np.ones((2, 2))})
    with pytest.raises(gc.MissingInputError, match=r"\['z'\] are not arguments"):
        gc.evaluate(x * 2.0, {"x": np.ones(2), "z": np.ones(2)})
    with pytest.raises(gc.MissingInputError, match=r"unknown argument name\(s\) \['q'\]"):
        net.infer_shape(q=(1,))


def test_dtype_conflict_names_node():
    a = gc.Variable("a", dtype="float64")
    b = gc.Variable("b", dtype="float32")
    with pytest.raises(
        gc.DTypeError, match=r"add\d* \(add\) at test_errors.py:\d+: inputs have different dtypes"
    ):
        (a + b).infer_type()


def test_embedding_index_out_of_range_is_an_error_not_a_clip():
    idx = gc.Variable("idx")
    emb = gc.Embedding(idx, input_dim=3, output_dim=2, name="emb")
    with pytest.raises(
        ValueError, match=r"Embedding: index element 1 is not an integer in \[0, 3\)"
    ):
        gc.evaluate(emb, {"idx": np.array([0.0, 3.0]), "emb_weight": np.ones((3, 2))})


def test_duplicate_variable_names_are_rejected():
    with pytest.raises(gc.GraphFormatError, match="two different Variables are named 'w'"):
        (gc.Variable("w") + gc.Variable("w")).list_arguments()


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"nodes": []}', "non-empty 'heads'"),
        (
            '{"nodes": [{"op": "os.system", "name": "x", "inputs": []}], "heads": [[0, 0]]}',
            "unknown op 'os.system'",
        ),
        (
            '{"nodes": [{"op": "null", "name": "x"}, {"op": "FullyConnected", "name": "fc",'
            ' "attrs": {"num_hidden": 0}, "inputs": [[0, 0], [0, 0], [0, 0]]}], "heads": [[1, 0]]}',
            "num_hidden=0 is not allowed",
        ),
        (
            '{"nodes": [{"op": "null", "name": "x"}, {"op": "exp", "name": "e", "inputs": [[1, 0]]}],'
            ' "heads": [[1, 0]]}',
            "does not precede it",
        ),
        (
            '{"nodes": [{"op": "null", "name": "x"}, {"op": "exp", "name": "e", "inputs": []}],'
            ' "heads": [[1, 0]]}',
            "exp takes inputs ['data'], the file gives 0",
        ),
        ('{"nodes": [{"op": "null", "name": "x"}], "heads": [[0, 5]]}', "x has no output 5"),
    ],
)
def test_load_json_rejects_malformed_documents(text, message):
    with pytest.raises(gc.GraphFormatError) as info:
        gc.load_json(text)
    assert message in str(info.value)


def test_wrong_head_grad_count():
    x = gc.Variable("x")
    with pytest.raises(gc.GradientError, match="2 head gradients for 1 outputs"):
        gc.grad(x * 2.0, [x], head_grads=[None, None])


def test_json_document_is_plain_data():
    net = gc.FullyConnected(gc.Variable("x"), num_hidden=2, name="fc")
    document = json.loads(net.tojson())
    assert [node["op"] for node in document["nodes"]] == ["null", "null", "null", "FullyConnected"]


def test_load_json_accepts_mxnet_activation_and_flatten():
    text = (
        '{"nodes": [{"op": "null", "name": "x"},'
        ' {"op": "Activation", "name": "act", "attrs": {"act_type": "tanh"}, "inputs": [[0, 0]]},'
        ' {"op": "Flatten", "name": "flat", "inputs": [[1, 0]]}], "heads": [[2, 0]]}'
    )
    net = gc.load_json(text)
    (out,) = gc.evaluate(net, {"x": np.ones((2, 1, 3))})
    np.testing.assert_allclose(out, np.tanh(np.ones((2, 3))))
    bad = text.replace('"tanh"', '"swish"')
    with pytest.raises(gc.GraphFormatError, match="act_type='swish'"):
        gc.load_json(bad)
