"""Write the MXNet 1.9.1 checkpoints that tests/test_mxnet_import.py loads without MXNet.

Run in MXNet's own environment (it needs numpy < 1.24):

    python3 -m venv /tmp/mxenv && /tmp/mxenv/bin/pip install mxnet==1.9.1 'numpy<1.24'
    /tmp/mxenv/bin/python tools/make_mxnet_fixtures.py tests/fixtures/mxnet

Each model is written with ``mx.model.save_checkpoint`` (``<name>-symbol.json`` and
``<name>-0003.params``) after a few steps of training, so that its parameters are not
MXNet's initial ones, and ``expected.npz`` holds for each model a fixed input
(``<name>:data``) and MXNet's inference outputs on it (``<name>:out<k>``). The models are
tiny: the fixtures stay well under 1 MB together.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mxnet as mx
import numpy as np

EPOCH = 3


def mlp():
    data = mx.sym.Variable("data")
    net = mx.sym.FullyConnected(data, num_hidden=8, name="fc1")
    net = mx.sym.Activation(net, act_type="relu", name="relu1")
    net = mx.sym.Dropout(net, p=0.3, name="drop1")
    net = mx.sym.FullyConnected(net, num_hidden=3, name="fc2")
    net = mx.sym.SoftmaxOutput(net, name="softmax")
    return net, {"data": (5, 10)}, {"softmax_label": (5,)}


def lenet():
    data = mx.sym.Variable("data")
    net = mx.sym.Convolution(data, kernel=(3, 3), num_filter=4, name="conv1")
    net = mx.sym.Activation(net, act_type="tanh", name="tanh1")
    net = mx.sym.Pooling(net, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool1")
    net = mx.sym.Convolution(net, kernel=(2, 2), num_filter=6, pad=(1, 1), name="conv2")
    net = mx.sym.Activation(net, act_type="relu", name="relu2")
    net = mx.sym.Pooling(
        net, pool_type="avg", kernel=(2, 2), stride=(2, 2), pooling_convention="full", name="pool2"
    )
    net = mx.sym.Flatten(net, name="flatten")
    net = mx.sym.FullyConnected(net, num_hidden=10, name="fc1")
    net = mx.sym.Activation(net, act_type="sigmoid", name="sig1")
    net = mx.sym.FullyConnected(net, num_hidden=3, name="fc2")
    net = mx.sym.SoftmaxOutput(net, name="softmax")
    return net, {"data": (4, 1, 11, 11)}, {"softmax_label": (4,)}


def lstm_cell():
    """A character model unrolled from ``mx.rnn.LSTMCell``: Embedding, the cell's
    FullyConnected/SliceChannel/Activation/elemwise ops over ``_zeros`` begin states whose
    batch size MXNet infers (shape (0, 5)), Concat of the steps, SoftmaxOutput over T*N."""
    steps, batch = 4, 2
    data = mx.sym.Variable("data")
    embed = mx.sym.Embedding(data, input_dim=7, output_dim=3, name="embed")
    cell = mx.rnn.LSTMCell(num_hidden=5, prefix="lstm_")
    outputs, _ = cell.unroll(steps, inputs=embed, layout="TNC", merge_outputs=True)
    net = mx.sym.Reshape(outputs, shape=(-1, 5), name="flat")
    net = mx.sym.FullyConnected(net, num_hidden=7, name="pred")
    label = mx.sym.Reshape(mx.sym.Variable("softmax_label"), shape=(-1,), name="label_flat")
    net = mx.sym.SoftmaxOutput(net, label=label, name="softmax")
    return net, {"data": (steps, batch)}, {"softmax_label": (steps, batch)}


def rnn_fused():
    """The fused ``RNN`` op in LSTM mode, one layer, with ``_zeros`` initial states (the
    batch axis left for MXNet to infer) and its final states as extra heads."""
    steps, batch = 5, 3
    data = mx.sym.Variable("data")
    state = mx.sym.zeros(shape=(1, 0, 6), name="h0")
    state_cell = mx.sym.zeros(shape=(1, 0, 6), name="c0")
    rnn = mx.sym.RNN(
        data,
        state=state,
        state_cell=state_cell,
        state_size=6,
        num_layers=1,
        mode="lstm",
        state_outputs=True,
        name="rnn",
    )
    net = mx.sym.Reshape(rnn[0], shape=(-3, -2), name="flat")
    net = mx.sym.FullyConnected(net, num_hidden=4, name="pred")
    net = mx.sym.LinearRegressionOutput(net, name="lro")
    return net, {"data": (steps, batch, 2)}, {"lro_label": (steps * batch, 4)}


def misc():
    """Scalar, broadcast and shape ops a hand-built MXNet graph uses."""
    data = mx.sym.Variable("data")
    scale = mx.sym.Variable("scale", shape=(1, 6))
    net = mx.sym.FullyConnected(data, num_hidden=6, name="fc1")
    net = 2.0 - (net * 0.5 + 1.0) / 1.5  # _mul_scalar, _plus_scalar, _div_scalar, _rminus_scalar
    net = mx.sym.broadcast_mul(net, scale, name="scaled")
    net = mx.sym.LeakyReLU(net, act_type="leaky", slope=0.1, name="leaky")
    parts = mx.sym.SliceChannel(net, num_outputs=2, axis=1, name="halves")
    net = mx.sym.elemwise_add(parts[0], parts[1], name="sum_halves")
    net = mx.sym.Reshape(net, shape=(0, 1, -1), name="with_axis")
    net = mx.sym.expand_dims(net, axis=3, name="expanded")
    net = mx.sym.Reshape(net, shape=(0, -3, 0), name="merged")
    net = mx.sym.identity(net, name="copied")  # _copy
    net = mx.sym.broadcast_add(net, mx.sym.ones(shape=(1, 1, 1)), name="plus_ones")
    net = mx.sym.Flatten(net, name="flat")
    net = mx.sym.FullyConnected(net, num_hidden=1, name="fc2")
    net = mx.sym.LogisticRegressionOutput(net, name="out")
    return net, {"data": (6, 4)}, {"out_label": (6, 1)}


MODELS = {"mlp": mlp, "lenet": lenet, "lstm_cell": lstm_cell, "rnn_fused": rnn_fused, "misc": misc}


def sample(name, shape, rng):
    if name == "lstm_cell":
        return rng.integers(0, 7, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def label_sample(name, shape, rng):
    if name in ("mlp", "lenet"):
        return rng.integers(0, 3, shape).astype(np.float32)
    if name == "lstm_cell":
        return rng.integers(0, 7, shape).astype(np.float32)
    if name == "misc":
        return rng.integers(0, 2, shape).astype(np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def write(name, out_dir: Path, expected: dict) -> None:
    net, data_shapes, label_shapes = MODELS[name]()
    rng = np.random.default_rng(sum(map(ord, name)))
    mx.random.seed(7)
    inputs = set(data_shapes) | set(label_shapes)
    requests = {key: "null" if key in inputs else "write" for key in net.list_arguments()}
    executor = net.simple_bind(mx.cpu(), grad_req=requests, **data_shapes, **label_shapes)
    initializer = mx.init.Xavier(magnitude=2.0)
    params = {key: value for key, value in executor.arg_dict.items() if key not in inputs}
    for key, value in params.items():
        if key.endswith(("weight", "bias")):
            initializer(mx.init.InitDesc(key), value)
        else:  # the fused RNN's packed vector
            mx.init.Uniform(0.3)(mx.init.InitDesc(key + "_weight"), value)
    if name == "misc":  # a parameter the user declared: not its initial ones
        params["scale"][:] = mx.nd.array(rng.uniform(0.5, 1.5, (1, 6)))
    x = sample(name, data_shapes["data"], rng)
    label_name, label_shape = next(iter(label_shapes.items()))
    for _ in range(3):  # plain SGD, so the checkpoint is not MXNet's initial weights
        executor.arg_dict["data"][:] = x
        executor.arg_dict[label_name][:] = label_sample(name, label_shape, rng)
        executor.forward(is_train=True)
        executor.backward()
        for key, value in params.items():
            value -= 0.1 * executor.grad_dict[key]
    executor.arg_dict["data"][:] = x
    outputs = executor.forward(is_train=False)
    expected[f"{name}:data"] = x
    for index, output in enumerate(outputs):
        expected[f"{name}:out{index}"] = output.asnumpy()
    aux = {key: value for key, value in executor.aux_dict.items()}
    mx.model.save_checkpoint(str(out_dir / name), EPOCH, net, params, aux)


def main() -> None:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/mxnet")
    out_dir.mkdir(parents=True, exist_ok=True)
    expected: dict = {}
    for name in MODELS:
        write(name, out_dir, expected)
    np.savez(out_dir / "expected.npz", **expected)
    print(f"mxnet {mx.__version__}: wrote {', '.join(MODELS)} to {out_dir}")


if __name__ == "__main__":
    main()
