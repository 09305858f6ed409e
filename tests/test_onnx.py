"""ONNX export and import (issue [onnx]), checked against ONNX Runtime.

Every file written is checked by ``onnx.checker`` with ``full_check`` (inside
``gc.onnx.export``, and again here), run in ONNX Runtime on fixed inputs and compared with
graphc's own predictions (the compiled executor for the models, the NumPy reference for the
op cases), then read back with ``gc.onnx.load`` and evaluated the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.interop.onnx import MIN_OPSET
from graphc.ir.errors import ImportFormatError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL, ATOL = 1e-5, 1e-6
FIXTURES = Path(__file__).parent / "fixtures" / "mxnet"


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _params(symbol, shapes, rng, scale=0.5):
    args, _, _ = symbol.infer_shape_partial(**shapes)
    return {
        name: (scale * rng.standard_normal(shape)).astype(np.float32)
        for name, shape in zip(symbol.list_arguments(), args)
        if name not in shapes and not name.endswith("label") and shape is not None
    }


def _round_trip(path, feeds, want):
    """ONNX Runtime on the file, then graphc on what it reads back, both equal ``want``."""
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    got = _session(path).run(None, feeds)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    symbol, params = gc.onnx.load(path)
    values = {**params, **feeds}
    values.update({a: np.zeros(1, np.float32) for a in symbol.list_arguments() if a not in values})
    back = gc.evaluate(symbol, _drop_labels(symbol, values, feeds))
    for g, w in zip(back, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def _drop_labels(symbol, values, feeds):
    """A head restored by import reads its label; zeros of the shape the data gives."""
    shapes = {k: np.shape(v) for k, v in values.items() if k in feeds or not k.endswith("label")}
    args, _, _ = symbol.infer_shape_partial(**shapes)
    for name, shape in zip(symbol.list_arguments(), args):
        if name.endswith("label"):
            values[name] = np.zeros(shape, np.float32)
    return values


SEED_MODELS = {
    "linreg": (gc.models.linreg, {"data": (5, 13)}, None),
    "softmax": (gc.models.softmax_regression, {"data": (5, 784)}, None),
    "mlp": (gc.models.mlp, {"data": (5, 784)}, None),
    "lenet": (gc.models.lenet, {"data": (2, 1, 28, 28)}, None),
    "charlm": (lambda: gc.models.charlm(11, 6, 7), {"data": (5, 3)}, 11),
}


@pytest.mark.parametrize("name", SEED_MODELS)
def test_a_seed_model_runs_in_onnx_runtime_as_in_graphc(name, tmp_path):
    build, shapes, tokens = SEED_MODELS[name]
    rng = np.random.default_rng(0)
    symbol = build()
    params = _params(symbol, shapes, rng)
    x = {
        k: (rng.integers(0, tokens, s) if tokens else rng.standard_normal(s)).astype(np.float32)
        for k, s in shapes.items()
    }
    executor = symbol.simple_bind(gc.cpu(), grad_req="null", **shapes)
    executor.copy_params_from(params)
    want = executor.forward(**x)
    gc.onnx.export(symbol, params, shapes, tmp_path / f"{name}.onnx")
    _round_trip(tmp_path / f"{name}.onnx", x, want)


@pytest.mark.parametrize("name", ["mlp", "lenet", "lstm_cell", "rnn_fused", "misc"])
def test_an_mxnet_checkpoint_exports_to_what_mxnet_predicted(name, tmp_path):
    symbol, arg_params, _ = gc.mxnet.load_checkpoint(str(FIXTURES / name), 3)
    expected = np.load(FIXTURES / "expected.npz")
    x = expected[f"{name}:data"]
    gc.onnx.export(symbol, arg_params, {"data": x.shape}, tmp_path / f"{name}.onnx")
    _round_trip(tmp_path / f"{name}.onnx", {"data": x}, [expected[f"{name}:out0"]])


def test_a_trained_model_exports_and_comes_back_trainable(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 784)).astype(np.float32)
    y = rng.integers(0, 10, 200).astype(np.float32)
    model = gc.Model(gc.models.mlp())
    model.fit(gc.io.NDArrayIter(x, y, batch_size=50), num_epoch=1, verbose=False)
    model.export_onnx(str(tmp_path / "mlp.onnx"))  # the shapes of its last binding
    assert [i.shape for i in _session(tmp_path / "mlp.onnx").get_inputs()] == [[50, 784]]
    symbol, params = gc.onnx.load(tmp_path / "mlp.onnx")
    assert symbol.list_outputs() == ["softmax_output"]
    assert symbol.list_arguments()[-1] == "softmax_label"  # the loss head is back
    again = gc.Model(symbol)
    again.set_params(params)
    np.testing.assert_array_equal(again.predict(x[:50]), model.predict(x[:50]))
    again.fit(gc.io.NDArrayIter(x, y, batch_size=50), num_epoch=3, verbose=False)
    losses = again.history["train_loss"]
    assert losses[-1] < losses[0], losses


def test_readmes_three_lines_run(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "export_onnx" in b
    )
    model = gc.Model.load_mxnet(str(FIXTURES / "lenet"), 3)
    x = np.load(FIXTURES / "expected.npz")["lenet:data"]
    model.predict(x)  # binds it: export_onnx takes those shapes
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {"gc": gc, "model": model})
    np.testing.assert_allclose(
        _session(tmp_path / "lenet.onnx").run(None, {"data": x})[0],
        model.predict(x),
        rtol=RTOL,
        atol=ATOL,
    )


# -- the traps, each against ONNX Runtime -------------------------------------------------------

data, h0, c0, idx = gc.Variable("data"), gc.Variable("h0"), gc.Variable("c0"), gc.Variable("idx")
LSTM = gc.LSTM(data, num_hidden=4, state=h0, state_cell=c0, name="lstm")

TRAPS = {
    "pool_full_avg_pad": (
        gc.Pooling(
            data,
            kernel=(3, 3),
            stride=(2, 2),
            pad=(1, 1),
            pool_type="avg",
            pooling_convention="full",
        ),
        {"data": (1, 2, 6, 6)},
    ),
    "pool_full_avg_pad_no_count": (
        gc.Pooling(
            data,
            kernel=(3, 3),
            stride=(2, 2),
            pad=(1, 1),
            pool_type="avg",
            count_include_pad=False,
            pooling_convention="full",
        ),
        {"data": (1, 2, 7, 6)},
    ),
    "pool_full_max_pad": (
        gc.Pooling(
            data,
            kernel=(3, 3),
            stride=(2, 2),
            pad=(1, 1),
            pool_type="max",
            pooling_convention="full",
        ),
        {"data": (2, 1, 6, 6)},
    ),
    "pool_global": (
        gc.Pooling(data, kernel=(1, 1), global_pool=True, pool_type="avg")
        + gc.Pooling(data, kernel=(1, 1), global_pool=True, pool_type="max"),
        {"data": (2, 3, 4, 5)},
    ),
    "lstm_with_states": (
        gc.Group([LSTM[0], LSTM[1], LSTM[2]]),
        {"data": (3, 2, 5), "h0": (2, 4), "c0": (2, 4)},
    ),
    "lstm_without_states": (gc.LSTM(data, num_hidden=3, name="l")[0], {"data": (4, 2, 3)}),
    "fully_connected_4d": (
        gc.FullyConnected(data, num_hidden=3, name="fc"),
        {"data": (2, 3, 4, 5)},
    ),
    "fully_connected_no_flatten": (
        gc.FullyConnected(data, num_hidden=3, flatten=False, name="fc"),
        {"data": (2, 3, 4)},
    ),
    "convolution_pad_stride": (
        gc.Convolution(data, kernel=(3, 2), stride=(2, 1), pad=(1, 1), num_filter=3, name="c"),
        {"data": (2, 2, 6, 5)},
    ),
    "reshape_codes": (
        gc.Reshape(gc.Reshape(data, shape=(0, -3, -2)), shape=(-4, 2, -1, -2)),
        {"data": (4, 3, 2, 5)},
    ),
    "slice_channel_squeeze": (
        gc.SliceChannel(data, num_outputs=2, axis=1, squeeze_axis=True)[1] * 2.0,
        {"data": (3, 2, 4)},
    ),
    "slice_channel": (
        gc.Group(list(gc.SliceChannel(data, num_outputs=3, axis=2))),
        {"data": (2, 3, 6)},
    ),
    "embedding": (gc.Embedding(idx, input_dim=7, output_dim=3, name="e"), {"idx": (2, 5)}),
    "pick_and_one_hot": (
        gc.pick(data, idx, axis=1) + gc.sum(gc.one_hot(idx, depth=4), axis=1),
        {"data": (3, 4), "idx": (3,)},
    ),
    "one_hot_like": (gc.one_hot_like(idx, data, axis=0) * data, {"data": (3, 4), "idx": (4,)}),
    "elementwise": (
        gc.maximum(gc.exp(data) - 1.0, gc.sqrt(gc.abs(data)) * gc.sign(data))
        / (gc.square(data) + 1.0)
        + gc.LeakyReLU(data, act_type="elu", slope=0.3)
        + gc.LeakyReLU(data, slope=0.1)
        + gc.softrelu(data) * gc.greater(data, 0.1)
        + gc.not_equal(data, data)
        + (data**2.0),
        {"data": (3, 4)},
    ),
    "reductions_and_softmax": (
        gc.Concat(
            gc.sum(data, axis=1, keepdims=True),
            gc.max(data, axis=1, keepdims=True),
            gc.min(data, axis=1, keepdims=True),
            gc.mean(data, axis=1, keepdims=True),
            dim=1,
        )
        + gc.sum(gc.log_softmax(data, axis=0))
        + gc.softmax(data),
        {"data": (3, 4)},
    ),
    "products_and_shapes": (
        gc.batch_dot(data, gc.transpose(data, axes=(0, 2, 1)))
        + gc.expand_dims(gc.sum(gc.slice_axis(data, axis=2, begin=1, end=None), axis=2), axis=2)
        + gc.dot(data, gc.Variable("w", shape=(3, 4))),
        {"data": (2, 4, 3)},
    ),
    "heads": (
        gc.Group(
            [
                gc.SoftmaxOutput(data, name="sm", multi_output=True),
                gc.LogisticRegressionOutput(gc.Reshape(data, shape=(0, -1)), name="lo"),
                gc.MakeLoss(gc.sum(gc.square(data)), name="ml"),
                gc.LinearRegressionOutput(gc.BlockGrad(data, name="bg") * 2.0, name="lr"),
            ]
        ),
        {"data": (2, 3, 4)},
    ),
}


@pytest.mark.unit
@pytest.mark.parametrize("case", TRAPS, ids=str)
@pytest.mark.parametrize("opset", [None, MIN_OPSET], ids=["default", "oldest"])
def test_a_trap_case_runs_in_onnx_runtime_as_in_graphcs_reference(case, opset, tmp_path):
    symbol, shapes = TRAPS[case]
    rng = np.random.default_rng(3)
    params = _params(symbol, shapes, rng)
    feeds = {
        k: (rng.integers(0, 3, s) if k == "idx" else rng.standard_normal(s)).astype(np.float32)
        for k, s in shapes.items()
    }
    labels = {
        name: np.zeros(shape, np.float32)
        for name, shape in zip(symbol.list_arguments(), symbol.infer_shape(**shapes)[0])
        if name.endswith("label")
    }
    want = gc.evaluate(symbol, {**params, **feeds, **labels})
    path = tmp_path / f"{case}.onnx"
    model = gc.onnx.export(symbol, params, shapes, path, opset=opset)
    assert model.opset_import[0].version == (opset or gc.onnx.default_opset())
    _round_trip(path, feeds, want)


def _ops(symbol, kinds) -> list[str]:
    return sorted(node.op for node in symbol.graph.nodes if node.op in kinds)


@pytest.mark.unit
def test_heads_and_stop_gradients_come_back_as_they_were(tmp_path):
    symbol, shapes = TRAPS["heads"]
    gc.onnx.export(symbol, {}, shapes, tmp_path / "heads.onnx")
    back, _ = gc.onnx.load(tmp_path / "heads.onnx")
    assert back.list_outputs() == symbol.list_outputs()
    kept = ("SoftmaxOutput", "LogisticRegressionOutput", "MakeLoss", "LinearRegressionOutput")
    kept += ("BlockGrad",)
    assert _ops(back, kept) == _ops(symbol, kept)
    x = np.random.default_rng(5).standard_normal(shapes["data"])
    grads = [gc.grad(s, ["data"])[0] for s in (symbol, back)]
    labels = {
        "sm_label": np.zeros((2, 4)),
        "lo_label": np.zeros((2, 12)),
        "lr_label": np.zeros((2, 3, 4)),
    }
    feeds = {"data": x, **labels}
    got, want = (
        gc.evaluate(g, {k: v for k, v in feeds.items() if k in g.list_arguments()})[0]
        for g in reversed(grads)
    )
    np.testing.assert_allclose(got, want)  # the BlockGrad still stops the gradient


def test_a_stateful_model_exports_with_its_state_inputs(tmp_path):
    model = gc.Model(
        gc.models.charlm(11, 6, 7, stateful=True), state_names=gc.models.CHARLM_STATE_NAMES
    )
    tokens = np.random.default_rng(6).integers(0, 11, 3 * 21)
    model.fit(gc.io.BPTTIter(tokens, 3, 5, layout="TN"), num_epoch=1, verbose=False)
    model.export_onnx(str(tmp_path / "charlm.onnx"))
    inputs = {i.name: i.shape for i in _session(tmp_path / "charlm.onnx").get_inputs()}
    assert inputs == {"data": [5, 3], "lstm_state": [3, 7], "lstm_state_cell": [3, 7]}
    symbol, _ = gc.onnx.load(tmp_path / "charlm.onnx")
    assert symbol.list_outputs() == model.symbol.list_outputs()  # state_names still fit


@pytest.mark.unit
def test_a_float64_model_is_refused_before_a_file_ort_cannot_run(tmp_path):
    symbol = gc.Convolution(data, kernel=(3, 3), num_filter=2, name="c")
    params = {"c_weight": np.ones((2, 1, 3, 3)), "c_bias": np.zeros(2)}
    with pytest.raises(gc.GraphcError, match=r"parameters are float64; export writes float32"):
        gc.onnx.export(symbol, params, {"data": (1, 1, 5, 5)}, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def _foreign(tmp_path, nodes, inputs, outputs, initializers, opset=18):
    helper = onnx.helper
    graph = helper.make_graph(nodes, "foreign", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / "foreign.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.unit
def test_a_gemm_with_alpha_beta_transposes_and_a_matrix_bias_is_read(tmp_path):
    helper, tensor, nh = onnx.helper, onnx.TensorProto, onnx.numpy_helper
    rng = np.random.default_rng(7)
    a, b, c = (rng.standard_normal(s).astype(np.float32) for s in ((4, 3), (5, 4), (3, 5)))
    node = helper.make_node("Gemm", ["x", "b", "c"], ["y"], alpha=0.5, beta=2.0, transA=1, transB=1)
    path = _foreign(
        tmp_path,
        [node],
        [helper.make_tensor_value_info("x", tensor.FLOAT, [4, 3])],
        [helper.make_tensor_value_info("y", tensor.FLOAT, [3, 5])],
        [nh.from_array(b, "b"), nh.from_array(c, "c")],
    )
    want = _session(path).run(None, {"x": a})[0]
    symbol, params = gc.onnx.load(path)
    np.testing.assert_allclose(
        gc.evaluate(symbol, {**params, "x": a})[0], want, rtol=RTOL, atol=1e-5
    )


@pytest.mark.unit
def test_a_slice_past_the_end_is_clamped_as_onnx_does(tmp_path):
    helper, tensor, nh = onnx.helper, onnx.TensorProto, onnx.numpy_helper
    node = helper.make_node("Slice", ["x", "s", "e", "a"], ["y"])
    path = _foreign(
        tmp_path,
        [node],
        [helper.make_tensor_value_info("x", tensor.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", tensor.FLOAT, [3, 3])],
        [nh.from_array(np.array([v], np.int64), n) for n, v in (("s", -3), ("e", 100), ("a", 1))],
    )
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    symbol, params = gc.onnx.load(path)
    np.testing.assert_array_equal(gc.evaluate(symbol, {**params, "x": x})[0], x[:, 1:])


@pytest.mark.unit
def test_a_cast_that_would_round_and_an_old_opset_are_refused(tmp_path):
    helper, tensor = onnx.helper, onnx.TensorProto
    cast = helper.make_node("Cast", ["x"], ["y"], name="round", to=tensor.INT64)
    path = _foreign(
        tmp_path,
        [cast],
        [helper.make_tensor_value_info("x", tensor.FLOAT, [3])],
        [helper.make_tensor_value_info("y", tensor.INT64, [3])],
        [],
    )
    with pytest.raises(ImportFormatError, match=r"\('round', Cast\): a cast to int64 whose result"):
        gc.onnx.load(path)
    relu = helper.make_node("Relu", ["x"], ["y"])
    path = _foreign(
        tmp_path,
        [relu],
        [helper.make_tensor_value_info("x", tensor.FLOAT, [3])],
        [helper.make_tensor_value_info("y", tensor.FLOAT, [3])],
        [],
        opset=11,
    )
    with pytest.raises(ImportFormatError, match=r"opset 11; graphc reads opset 13 and newer"):
        gc.onnx.load(path)


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.unit
def test_an_op_without_a_mapping_is_an_error_naming_node_and_op(tmp_path):
    net = gc.sum_to_like(data, idx)  # the gradient graph's op: not in an inference graph
    with pytest.raises(gc.GraphcError, match=r"\(sum_to_like\) at test_onnx.py:\d+: .*no ONNX"):
        gc.onnx.export(net, {}, {"idx": (4,), "data": (3, 4)}, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()  # nothing written half-way


@pytest.mark.unit
def test_an_unsupported_onnx_op_or_attribute_is_an_error_naming_it(tmp_path):
    helper, tensor = onnx.helper, onnx.TensorProto
    x = helper.make_tensor_value_info("x", tensor.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", tensor.FLOAT, ["a", "b"])  # sizes left open
    for nodes, words in (
        (
            [helper.make_node("Erf", ["x"], ["y"], name="erf1")],
            r"node 0 \('erf1', Erf\): graphc has no op",
        ),
        (
            [helper.make_node("Flatten", ["x"], ["y"], name="flat", axis=2)],
            r"\('flat', Flatten\): Flatten at axis 2",
        ),
        (  # an attribute ONNX does not define: its checker's message, naming the node
            [helper.make_node("Relu", ["x"], ["y"], name="r", alpha=0.1)],
            r"(?s)bad.onnx: not a valid ONNX model: Unrecognized attribute: alpha.*Name: r OpType",
        ),
    ):
        graph = helper.make_graph(nodes, "g", [x], [y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        path = tmp_path / "bad.onnx"
        path.write_bytes(model.SerializeToString())
        with pytest.raises(ImportFormatError, match=words):
            gc.onnx.load(path)


@pytest.mark.unit
def test_a_grouped_convolution_is_named(tmp_path):
    helper, tensor = onnx.helper, onnx.TensorProto
    weight = onnx.numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", group=2, kernel_shape=[3, 3])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", tensor.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("y", tensor.FLOAT, [1, 4, 3, 3])],
        [weight],
    )
    path = tmp_path / "grouped.onnx"
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    )
    with pytest.raises(ImportFormatError, match=r"\('conv', Conv\): attribute group=2 is not"):
        gc.onnx.load(path)


@pytest.mark.unit
def test_the_equivalents_other_exporters_write_are_read(tmp_path):
    """MatMul + Add, Relu, a Reshape with a constant shape and Softmax, as torch.onnx
    writes a small MLP."""
    helper, tensor, nh = onnx.helper, onnx.TensorProto, onnx.numpy_helper
    rng = np.random.default_rng(4)
    w, b = rng.standard_normal((6, 4)).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["z"]),
        helper.make_node("Relu", ["z"], ["r"]),
        helper.make_node("Softmax", ["r"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "torch",
        [helper.make_tensor_value_info("x", tensor.FLOAT, [3, 2, 3])],
        [helper.make_tensor_value_info("y", tensor.FLOAT, [3, 4])],
        [
            nh.from_array(w, "w"),
            nh.from_array(b, "b"),
            nh.from_array(np.array([3, -1], np.int64), "shape"),
        ],
    )
    path = tmp_path / "torch.onnx"
    path.write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    )
    x = rng.standard_normal((3, 2, 3)).astype(np.float32)
    want = _session(path).run(None, {"x": x})[0]
    symbol, params = gc.onnx.load(path)
    assert sorted(params) == ["b", "w"]
    np.testing.assert_allclose(
        gc.evaluate(symbol, {**params, "x": x})[0], want, rtol=RTOL, atol=ATOL
    )


@pytest.mark.unit
def test_an_opset_out_of_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"opset 12 is not in \[13,"):
        gc.onnx.export(gc.relu(data), {}, {"data": (2,)}, tmp_path / "x.onnx", opset=12)
