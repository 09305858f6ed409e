"""Symbols of the five models in Knet's benchmark table, with MXNet's layer names.

>>> import graphc as gc
>>> net = gc.models.lenet()
>>> net.infer_shape(data=(100, 1, 28, 28))[1]
[(100, 10)]
"""

from __future__ import annotations

import graphc as gc


def linreg(num_outputs: int = 1) -> gc.Symbol:
    """Linear regression: one FullyConnected layer and a squared-error head."""
    data = gc.Variable("data")
    fc = gc.FullyConnected(data, num_hidden=num_outputs, name="fc")
    return gc.LinearRegressionOutput(fc, name="lro")


def softmax_regression(num_classes: int = 10) -> gc.Symbol:
    """Multinomial logistic regression on flattened images."""
    data = gc.Variable("data")
    fc = gc.FullyConnected(data, num_hidden=num_classes, name="fc")
    return gc.SoftmaxOutput(fc, name="softmax")


def mlp(
    hidden: tuple[int, ...] = (64,), num_classes: int = 10, act_type: str = "relu"
) -> gc.Symbol:
    """Multi-layer perceptron: FullyConnected + activation per hidden layer, softmax head."""
    net = gc.Variable("data")
    for index, width in enumerate(hidden, start=1):
        net = gc.FullyConnected(net, num_hidden=width, name=f"fc{index}")
        net = gc.Activation(net, act_type=act_type, name=f"{act_type}{index}")
    net = gc.FullyConnected(net, num_hidden=num_classes, name=f"fc{len(hidden) + 1}")
    return gc.SoftmaxOutput(net, name="softmax")


def lenet(num_classes: int = 10) -> gc.Symbol:
    """The LeNet of MXNet's MNIST example: two 5x5 convolutions (20, 50 filters) with tanh
    and 2x2 max pooling, FullyConnected 500 with tanh, FullyConnected 10, SoftmaxOutput."""
    data = gc.Variable("data")
    conv1 = gc.Convolution(data, kernel=(5, 5), num_filter=20, name="conv1")
    tanh1 = gc.Activation(conv1, act_type="tanh", name="tanh1")
    pool1 = gc.Pooling(tanh1, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool1")
    conv2 = gc.Convolution(pool1, kernel=(5, 5), num_filter=50, name="conv2")
    tanh2 = gc.Activation(conv2, act_type="tanh", name="tanh2")
    pool2 = gc.Pooling(tanh2, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool2")
    flatten = gc.Flatten(pool2, name="flatten")
    fc1 = gc.FullyConnected(flatten, num_hidden=500, name="fc1")
    tanh3 = gc.Activation(fc1, act_type="tanh", name="tanh3")
    fc2 = gc.FullyConnected(tanh3, num_hidden=num_classes, name="fc2")
    return gc.SoftmaxOutput(fc2, name="softmax")


def charlm(vocab_size: int, embed: int = 256, hidden: int = 256) -> gc.Symbol:
    """Character language model: Embedding, one LSTM layer, a softmax over the vocabulary
    at every step. data is (seq_len, batch) character indices, label the next characters."""
    data = gc.Variable("data")
    embedded = gc.Embedding(data, input_dim=vocab_size, output_dim=embed, name="embed")
    lstm = gc.LSTM(embedded, num_hidden=hidden, name="lstm")
    states = gc.Reshape(lstm[0], shape=(-1, hidden), name="states")
    logits = gc.FullyConnected(states, num_hidden=vocab_size, name="decoder")
    return gc.SoftmaxOutput(
        logits, gc.Variable("softmax_label"), normalization="batch", name="softmax"
    )
