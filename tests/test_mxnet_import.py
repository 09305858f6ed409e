"""MXNet 1.x checkpoints loaded without MXNet (issue [mxnet-import]).

The fixtures in tests/fixtures/mxnet were written by MXNet 1.9.1 itself
(``tools/make_mxnet_fixtures.py``, whose docstring gives the command), with MXNet's
inference outputs on fixed inputs in ``expected.npz``: an MLP, a LeNet (max and 'full' avg
pooling), a character LSTM unrolled from ``mx.rnn.LSTMCell`` (begin states of unknown
batch size), the fused ``RNN`` op, and a graph of scalar, broadcast and shape ops.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.interop.mxnet_json import parse_value
from graphc.ir.errors import ImportFormatError

FIXTURES = Path(__file__).parent / "fixtures" / "mxnet"
README = Path(__file__).resolve().parent.parent / "README.md"
EXPECTED = np.load(FIXTURES / "expected.npz")
MODELS = ("mlp", "lenet", "lstm_cell", "rnn_fused", "misc")
EPOCH = 3
TN_MODELS = ("lstm_cell", "rnn_fused")  # time-major data: batched on axis 1


def prefix(name: str, directory: Path = FIXTURES) -> str:
    return str(directory / name)


def label_shapes(symbol, data_shape) -> dict:
    """Zeros for the labels, whose shapes the data decides."""
    args, _, _ = symbol.infer_shape_partial(data=data_shape)
    shapes = dict(zip(symbol.list_arguments(), args))
    if "softmax_label" in shapes and shapes["softmax_label"] is None:  # behind a Reshape
        shapes["softmax_label"] = data_shape
    return shapes


def test_the_fixtures_stay_small():
    assert sum(p.stat().st_size for p in FIXTURES.iterdir()) < 400_000


@pytest.mark.unit
@pytest.mark.parametrize("name", MODELS)
def test_the_reference_predicts_what_mxnet_predicted(name):
    symbol, arg_params, aux_params = gc.mxnet.load_checkpoint(prefix(name), EPOCH)
    assert all(isinstance(v, np.ndarray) for v in arg_params.values()) and aux_params == {}
    x = EXPECTED[f"{name}:data"]
    shapes = label_shapes(symbol, x.shape)
    values = {**arg_params, "data": x}
    for arg in set(symbol.list_arguments()) - set(values):
        values[arg] = np.zeros(shapes[arg], np.float32)
    outputs = gc.evaluate(symbol, values)
    np.testing.assert_allclose(outputs[0], EXPECTED[f"{name}:out0"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_the_compiled_executor_predicts_what_mxnet_predicted(name):
    symbol, arg_params, _ = gc.mxnet.load_checkpoint(prefix(name), EPOCH)
    x = EXPECTED[f"{name}:data"]
    shapes = {k: v for k, v in label_shapes(symbol, x.shape).items() if k not in arg_params}
    executor = symbol.simple_bind(gc.cpu(), grad_req="null", **shapes)
    executor.copy_params_from(arg_params)
    (out,) = executor.forward(data=x)
    np.testing.assert_allclose(out, EXPECTED[f"{name}:out0"], rtol=1e-5, atol=1e-6)


@pytest.mark.unit
def test_the_fused_rnn_becomes_graphcs_lstm_with_its_parameters_unpacked():
    symbol, arg_params, _ = gc.mxnet.load_checkpoint(prefix("rnn_fused"), EPOCH)
    lstm = [node for node in symbol.graph.nodes if node.op == "LSTM"]
    assert [node.name for node in lstm] == ["rnn"]
    assert not lstm[0].attrs["has_state"]  # the _zeros begin states: graphc's own zeros
    assert "rnn_parameters" not in arg_params
    assert arg_params["rnn_i2h_weight"].shape == (24, 2)
    assert arg_params["rnn_h2h_weight"].shape == (24, 6)
    assert arg_params["rnn_i2h_bias"].shape == arg_params["rnn_h2h_bias"].shape == (24,)
    _, packed_args, _ = _raw(prefix("rnn_fused"))
    packed = packed_args["rnn_parameters"]
    np.testing.assert_array_equal(arg_params["rnn_i2h_weight"].ravel(), packed[:48])
    np.testing.assert_array_equal(arg_params["rnn_h2h_bias"], packed[-24:])


def _raw(prefix_):
    symbol = gc.mxnet.load_symbol(prefix_ + "-symbol.json")
    args, aux = gc.mxnet.load_params(f"{prefix_}-{EPOCH:04d}.params")
    return symbol, args, aux


@pytest.mark.unit
def test_unpacking_a_vector_of_the_wrong_length_is_an_error():
    with pytest.raises(ValueError, match=r"4H \(I \+ H \+ 2\).*shape \(241,\)"):
        gc.mxnet.unpack_rnn_parameters(np.zeros(241), 6)


def test_the_unrolled_cells_begin_states_take_the_batch_size_bound():
    """``LSTMCell.begin_state`` is ``_zeros(shape=(0, 5))``: the batch decides the 0."""
    symbol, arg_params, _ = gc.mxnet.load_checkpoint(prefix("lstm_cell"), EPOCH)
    zeros = [node for node in symbol.graph.nodes if node.op == "_full"]
    assert zeros and all(node.attrs["shape"] == (0, 5) for node in zeros)
    x = EXPECTED["lstm_cell:data"]
    executor = symbol.simple_bind(gc.cpu(), grad_req="null", data=x.shape, softmax_label=x.shape)
    executor.copy_params_from(arg_params)
    wider = executor.reshape(data=(4, 3), softmax_label=(4, 3))
    wide_input = np.concatenate([x, x[:, :1]], axis=1)
    (out,) = wider.forward(data=wide_input)
    assert out.shape == (12, 7)
    # Column-major rows (t, n): the first two streams are the bound batch's.
    np.testing.assert_allclose(
        out.reshape(4, 3, 7)[:, :2].reshape(8, 7), EXPECTED["lstm_cell:out0"], rtol=1e-5
    )


def test_a_batch_of_one_settles_the_begin_states_too():
    """With elemwise_add taking equal shapes, as MXNet's does, a begin state of size 1
    cannot pass for the batch by broadcasting: the size is the batch's, even at 1."""
    symbol, arg_params, _ = gc.mxnet.load_checkpoint(prefix("lstm_cell"), EPOCH)
    x = EXPECTED["lstm_cell:data"][:, :1]
    executor = symbol.simple_bind(gc.cpu(), grad_req="null", data=x.shape, softmax_label=x.shape)
    executor.copy_params_from(arg_params)
    (out,) = executor.forward(data=x)
    np.testing.assert_allclose(out, EXPECTED["lstm_cell:out0"].reshape(4, 2, 7)[:, 0], rtol=1e-5)


@pytest.mark.unit
def test_elemwise_ops_take_equal_shapes_as_mxnets_do():
    x, y = gc.Variable("x"), gc.Variable("y")
    with pytest.raises(gc.ShapeError, match=r"sum \(elemwise_add\).*lhs \(2, 3\) and rhs \(1, 3\)"):
        gc.elemwise_add(x, y, name="sum").infer_shape(x=(2, 3), y=(1, 3))
    assert gc.broadcast_add(x, y).infer_shape(x=(2, 3), y=(1, 3))[1] == [(2, 3)]


@pytest.mark.parametrize("name", ["mlp", "lenet", "misc"])
def test_a_loaded_model_predicts_fine_tunes_and_saves_in_graphcs_format(name, tmp_path):
    model = gc.Model.load_mxnet(prefix(name), EPOCH)
    x = EXPECTED[f"{name}:data"]
    np.testing.assert_allclose(
        model.predict(x, batch_size=len(x)), EXPECTED[f"{name}:out0"], rtol=1e-5, atol=1e-6
    )
    rng = np.random.default_rng(0)
    data = np.concatenate([x] * 4) + 0.1 * rng.standard_normal((4 * len(x),) + x.shape[1:])
    label = (
        rng.integers(0, 2, (len(data), 1)) if name == "misc" else rng.integers(0, 3, len(data))
    ).astype(np.float32)
    train = gc.io.NDArrayIter(data.astype(np.float32), label, batch_size=len(x))
    model.fit(train, num_epoch=8, optimizer_params={"learning_rate": 0.1}, verbose=False)
    losses = model.history["train_loss"]
    assert losses[-1] < losses[0], losses
    model.save_checkpoint(str(tmp_path / name), 8)
    again = gc.Model.load(str(tmp_path / name), 8)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert json.loads((tmp_path / f"{name}-symbol.json").read_text())["graphc_format"]


def test_the_unrolled_lstm_fine_tunes_over_bptt_windows_and_saves(tmp_path):
    model = gc.Model.load_mxnet(prefix("lstm_cell"), EPOCH)
    assert model.label_names == ("softmax_label",)  # read through the head's Reshape
    tokens = np.random.default_rng(1).integers(0, 7, 2 * 41)
    train = gc.io.BPTTIter(tokens, batch_size=2, seq_len=4, layout="TN")
    model.fit(train, num_epoch=6, optimizer_params={"learning_rate": 0.5}, verbose=False)
    losses = model.history["train_loss"]
    assert losses[-1] < losses[0], losses
    model.save_checkpoint(str(tmp_path / "cell"), 6)
    again = gc.Model.load(str(tmp_path / "cell"), 6)
    x = EXPECTED["lstm_cell:data"]
    label = np.zeros_like(x)
    exe = again.symbol.simple_bind(gc.cpu(), grad_req="null", data=x.shape, softmax_label=x.shape)
    exe.copy_params_from(again.get_params()[0])
    reference = model.symbol.simple_bind(
        gc.cpu(), grad_req="null", data=x.shape, softmax_label=x.shape
    )
    reference.copy_params_from(model.get_params()[0])
    np.testing.assert_array_equal(
        exe.forward(data=x, softmax_label=label)[0],
        reference.forward(data=x, softmax_label=label)[0],
    )


def test_the_fused_rnn_model_fine_tunes_and_saves(tmp_path):
    model = gc.Model.load_mxnet(prefix("rnn_fused"), EPOCH)
    assert model.label_names == ("lro_label",)
    assert "rnn_i2h_weight" in model.param_names
    rng = np.random.default_rng(2)
    # Time-major batches (T=5, N=3, I=2): the iterator cuts along T, four windows; the
    # label (T, N, 4) has the head's (T * N, 4) elements in its order.
    data = rng.standard_normal((20, 3, 2)).astype(np.float32)
    label = np.tanh(data.sum(axis=2, keepdims=True) * np.ones((1, 1, 4), np.float32))
    train = gc.io.NDArrayIter(data, label, batch_size=5, label_name="lro_label")
    model.fit(train, num_epoch=10, optimizer_params={"learning_rate": 0.05}, verbose=False)
    losses = model.history["train_loss"]
    assert losses[-1] < losses[0], losses
    model.save_checkpoint(str(tmp_path / "rnn"), 10)
    again = gc.Model.load(str(tmp_path / "rnn"), 10)
    x = EXPECTED["rnn_fused:data"]
    np.testing.assert_array_equal(
        again.predict(x, batch_size=len(x)), model.predict(x, batch_size=len(x))
    )


@pytest.mark.unit
def test_files_of_mxnet_before_1_0_load_the_same_graph(tmp_path):
    """MXNet < 1.0 wrote the op's attributes under ``param``, the node's under ``attr``,
    and inputs as [node, output]."""
    document = json.loads((FIXTURES / "lenet-symbol.json").read_text())
    for node in document["nodes"]:
        attrs = node.pop("attrs", {})
        node["param"] = {k: v for k, v in attrs.items() if not k.startswith("__")}
        node["attr"] = {k: v for k, v in attrs.items() if k.startswith("__")}
        node["attr"]["ctx_group"] = "stage1"  # an annotation of the node, not the op's
        node["inputs"] = [edge[:2] for edge in node["inputs"]]
    del document["attrs"], document["node_row_ptr"]
    (tmp_path / "old-symbol.json").write_text(json.dumps(document))
    shutil.copy(FIXTURES / "lenet-0003.params", tmp_path / "old-0003.params")
    old, arg_params, _ = gc.mxnet.load_checkpoint(str(tmp_path / "old"), EPOCH)
    new, _, _ = gc.mxnet.load_checkpoint(prefix("lenet"), EPOCH)
    assert [(n.op, n.name, dict(n.attrs)) for n in old.graph.nodes] == [
        (n.op, n.name, dict(n.attrs)) for n in new.graph.nodes
    ]


@pytest.mark.unit
def test_attribute_strings_are_read_as_literals_and_never_run():
    assert parse_value("false") is False and parse_value("TRUE") is True  # dmlc's spellings
    assert parse_value("(5, 5)") == (5, 5)
    assert parse_value("[1, 2]") == (1, 2)
    assert parse_value("True") is True and parse_value("None") is None
    assert parse_value("0.5") == 0.5 and parse_value("relu") == "relu"
    assert parse_value("__import__('os').system('false')") == "__import__('os').system('false')"


@pytest.mark.unit
def test_the_imported_nodes_name_their_place_in_the_file():
    symbol = gc.mxnet.load_symbol(FIXTURES / "mlp-symbol.json")
    fc1 = next(node for node in symbol.graph.nodes if node.name == "fc1")
    assert fc1.source.endswith("mlp-symbol.json node 3 ('fc1', FullyConnected)")


def test_the_mxnet_example_runs_on_a_real_checkpoint(tmp_path, monkeypatch):
    """README's three lines, on the LeNet MXNet 1.9.1 wrote (tests/fixtures/mxnet)."""
    block = next(
        b
        for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
        if "load_mxnet" in b
    )
    fixtures = FIXTURES
    shutil.copy(fixtures / "lenet-symbol.json", tmp_path / "lenet-symbol.json")
    shutil.copy(fixtures / "lenet-0003.params", tmp_path / "lenet-0010.params")
    monkeypatch.chdir(tmp_path)
    expected = np.load(fixtures / "expected.npz")
    namespace = {"gc": gc, "images": expected["lenet:data"]}
    exec(compile(block, "README.md", "exec"), namespace)
    np.testing.assert_allclose(namespace["probs"], expected["lenet:out0"], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "lenet-graphc-symbol.json").exists()


# -- bad files ---------------------------------------------------------------------------


def _copy_checkpoint(name, tmp_path) -> str:
    for suffix in ("-symbol.json", f"-{EPOCH:04d}.params"):
        shutil.copy(FIXTURES / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    return str(tmp_path / name)


def _edit_params(tmp_path, name, edit) -> str:
    where = _copy_checkpoint(name, tmp_path)
    path = Path(f"{where}-{EPOCH:04d}.params")
    path.write_bytes(edit(bytearray(path.read_bytes())))
    return where


# The first array of mlp-0003.params starts at byte 24: magic, storage type, ndim, the two
# sizes (int64), device type and id, type flag, then 8 x 10 float32 values.
FIRST_ARRAY = 24


def _set(data: bytearray, offset: int, fmt: str, value) -> bytearray:
    struct.pack_into("<" + fmt, data, offset, value)
    return data


BAD_PARAMS = {
    "truncated": (
        lambda d: d[:-7],
        r"truncated: name 3 needs 12 bytes, 5 are left \(at byte 708\)",
    ),
    "cut_inside_an_array": (lambda d: d[:100], r"truncated: array 0's 80 float32 elements"),
    "list_magic": (lambda d: _set(d, 0, "Q", 0x113), r"not an MXNet NDArray file \(magic 0x113"),
    "array_magic": (
        lambda d: _set(d, FIRST_ARRAY, "I", 0xF993FAC7),
        r"array 0 has magic 0xf993fac7; MXNet 1.x writes",
    ),
    "length_past_the_end": (
        lambda d: _set(d, FIRST_ARRAY + 12, "q", 1 << 40),
        r"truncated: array 0's 10995116277760 float32 elements of shape \(1099511627776, 10\)",
    ),
    "array_count": (lambda d: _set(d, 16, "Q", 1 << 50), r"claims 1125899906842624 arrays"),
    "sparse": (
        lambda d: _set(d, FIRST_ARRAY + 4, "i", 1),
        r"array 0 has row_sparse storage; graphc reads dense arrays only",
    ),
    "float16": (
        lambda d: _set(d, FIRST_ARRAY + 36, "i", 2),
        r"array 0 is float16; graphc computes in float32 and float64",
    ),
    "trailing_bytes": (lambda d: d + b"\0\0", r"2 unexpected bytes after the names"),
}


@pytest.mark.unit
@pytest.mark.parametrize("case", BAD_PARAMS, ids=str)
def test_a_damaged_params_file_is_an_error_naming_the_file_and_place(case, tmp_path):
    edit, words = BAD_PARAMS[case]
    where = _edit_params(tmp_path, "mlp", edit)
    with pytest.raises(ImportFormatError, match=words) as caught:
        gc.mxnet.load_checkpoint(where, EPOCH)
    assert f"mlp-{EPOCH:04d}.params" in str(caught.value)


def _edit_symbol(tmp_path, name, edit) -> str:
    where = _copy_checkpoint(name, tmp_path)
    path = Path(f"{where}-symbol.json")
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    return where


def _node(document, name):
    return next(node for node in document["nodes"] if node["name"] == name)


BAD_SYMBOLS = {
    "unknown_op": (
        "mlp",
        lambda d: _node(d, "relu1").update(op="SwapAxis"),
        r"node 4 \('relu1', SwapAxis\): graphc has no op for MXNet's 'SwapAxis'",
    ),
    "unsupported_attribute": (
        "lenet",
        lambda d: _node(d, "conv1")["attrs"].update(dilate="(2, 2)"),
        r"\('conv1', Convolution\): attribute dilate=\(2, 2\) is not supported",
    ),
    "unknown_attribute": (
        "mlp",
        lambda d: _node(d, "fc1")["attrs"].update(magic="1"),
        r"\('fc1', FullyConnected\): attribute magic=1 is not one graphc knows",
    ),
    "bad_attribute_value": (
        "mlp",
        lambda d: _node(d, "fc1")["attrs"].update(num_hidden="-3"),
        r"\('fc1', FullyConnected\): .*num_hidden=-3",
    ),
    "multi_layer_rnn": (
        "rnn_fused",
        lambda d: _node(d, "rnn")["attrs"].update(num_layers="2"),
        r"\('rnn', RNN\): num_layers=2.*one unidirectional layer",
    ),
    "bidirectional_rnn": (
        "rnn_fused",
        lambda d: _node(d, "rnn")["attrs"].update(bidirectional="True"),
        r"\('rnn', RNN\): .*bidirectional=True",
    ),
    "gru": (
        "rnn_fused",
        lambda d: _node(d, "rnn")["attrs"].update(mode="gru"),
        r"\('rnn', RNN\): mode='gru'",
    ),
    "edge_forward": (
        "mlp",
        lambda d: d["nodes"][3].update(inputs=[[9, 0, 0], [1, 0, 0], [2, 0, 0]]),
        r"node 3 \('fc1', FullyConnected\): input \[9, 0, 0\] names a node that does not precede",
    ),
    "no_heads": ("mlp", lambda d: d.pop("heads"), r"no 'heads'"),
}


@pytest.mark.unit
@pytest.mark.parametrize("case", BAD_SYMBOLS, ids=str)
def test_a_bad_symbol_file_is_an_error_naming_the_file_node_and_op(case, tmp_path):
    name, edit, words = BAD_SYMBOLS[case]
    where = _edit_symbol(tmp_path, name, edit)
    with pytest.raises(ImportFormatError, match=words) as caught:
        gc.mxnet.load_checkpoint(where, EPOCH)
    assert f"{name}-symbol.json" in str(caught.value)


def test_parameters_that_do_not_fit_the_symbol_are_named(tmp_path):
    # Without the data's shape a checkpoint holds no shapes to check against, so the
    # mismatch shows at the first bind, naming the parameter, both files and the node.
    where = _edit_symbol(tmp_path, "mlp", lambda d: _node(d, "fc2")["attrs"].update(num_hidden="4"))
    model = gc.Model.load_mxnet(where, EPOCH)
    with pytest.raises(
        gc.ShapeError,
        match=r"'fc2_weight' \(from .*mlp-0003.params\) has shape \(3, 8\), the symbol"
        r" needs \(4, 8\).*read by fc2 \(FullyConnected\) at .*mlp-symbol.json node 8",
    ):
        model.predict(EXPECTED["mlp:data"])


@pytest.mark.unit
def test_parameters_the_symbol_does_not_have_are_named(tmp_path):
    where = _edit_symbol(tmp_path, "mlp", lambda d: _node(d, "fc2_bias").update(name="dense2_bias"))
    with pytest.raises(ImportFormatError, match=r"arg:fc2_bias is not an argument of the symbol"):
        gc.mxnet.load_checkpoint(where, EPOCH)


@pytest.mark.unit
def test_a_parameter_the_checkpoint_lacks_is_an_error_not_a_label(tmp_path):
    where = _copy_checkpoint("mlp", tmp_path)
    path = Path(f"{where}-{EPOCH:04d}.params")
    data = path.read_bytes()
    # Rewrite the file without fc1_bias: the arrays and names of graphc's own reader.
    from graphc.interop.mxnet_ndarray import read_ndarray_list

    arrays = read_ndarray_list(path)
    del arrays["arg:fc1_bias"]
    path.write_bytes(_ndarray_list(arrays))
    assert len(path.read_bytes()) < len(data)
    with pytest.raises(
        ImportFormatError, match=r"mlp-0003.params: no 'arg:' entry for \['fc1_bias'\]"
    ):
        gc.Model.load_mxnet(where, EPOCH)


def _ndarray_list(arrays: dict) -> bytes:
    """MXNet's V2 NDArray list of float32 arrays (the layout mxnet_ndarray documents)."""
    out = struct.pack("<QQQ", 0x112, 0, len(arrays))
    for array in arrays.values():
        out += struct.pack("<Iii", 0xF993FAC9, 0, array.ndim)
        out += struct.pack(f"<{array.ndim}q", *array.shape) + struct.pack("<iii", 1, 0, 0)
        out += np.ascontiguousarray(array, "<f4").tobytes()
    out += struct.pack("<Q", len(arrays))
    for name in arrays:
        out += struct.pack("<Q", len(name)) + name.encode()
    return out


@pytest.mark.unit
def test_an_empty_array_is_named(tmp_path):
    """MXNet 1.5+ writes an empty NDArray as ndim -1 (signed) in a V2 file."""
    path = tmp_path / "empty.params"
    path.write_bytes(
        struct.pack("<QQQ", 0x112, 0, 1)
        + struct.pack("<Iii", 0xF993FAC9, 0, -1)
        + struct.pack("<Q", 1)
        + struct.pack("<Q", 5)
        + b"arg:e"
    )
    with pytest.raises(ImportFormatError, match=r"'arg:e' is an empty \(none\) NDArray"):
        gc.mxnet.load_params(path)


@pytest.mark.unit
def test_a_missing_file_is_named():
    with pytest.raises(FileNotFoundError, match="nothing-symbol.json"):
        gc.mxnet.load_checkpoint(prefix("nothing"), EPOCH)
