"""Symbols of the five models in Knet's benchmark table, with MXNet's layer names. Each
takes ``dtype``, which its inputs then declare, so that every parameter and value has it
(float64 for exact comparisons); by default nothing is declared, and binding gives float32
as MXNet does.

>>> import graphc as gc
>>> net = gc.models.lenet()
>>> net.infer_shape(data=(100, 1, 28, 28))[1]
[(100, 10)]
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from graphc.ir import Group, Symbol, Variable
from graphc.ir.ops import (
    LSTM,
    Activation,
    BlockGrad,
    Convolution,
    Embedding,
    Flatten,
    FullyConnected,
    LinearRegressionOutput,
    Pooling,
    Reshape,
    SoftmaxOutput,
)


def linreg(num_outputs: int = 1, dtype: str | None = None) -> Symbol:
    """Linear regression: one FullyConnected layer and a squared-error head."""
    data = Variable("data", dtype=dtype)
    fc = FullyConnected(data, num_hidden=num_outputs, name="fc")
    return LinearRegressionOutput(fc, name="lro")


def softmax_regression(num_classes: int = 10, dtype: str | None = None) -> Symbol:
    """Multinomial logistic regression on flattened images."""
    data = Variable("data", dtype=dtype)
    fc = FullyConnected(data, num_hidden=num_classes, name="fc")
    return SoftmaxOutput(fc, name="softmax")


def mlp(
    hidden: tuple[int, ...] = (64,),
    num_classes: int = 10,
    act_type: str = "relu",
    dtype: str | None = None,
) -> Symbol:
    """Multi-layer perceptron: FullyConnected + activation per hidden layer, softmax head."""
    net = Variable("data", dtype=dtype)
    for index, width in enumerate(hidden, start=1):
        net = FullyConnected(net, num_hidden=width, name=f"fc{index}")
        net = Activation(net, act_type=act_type, name=f"{act_type}{index}")
    net = FullyConnected(net, num_hidden=num_classes, name=f"fc{len(hidden) + 1}")
    return SoftmaxOutput(net, name="softmax")


def lenet(num_classes: int = 10, dtype: str | None = None) -> Symbol:
    """The LeNet of MXNet's MNIST example: two 5x5 convolutions (20, 50 filters) with tanh
    and 2x2 max pooling, FullyConnected 500 with tanh, FullyConnected 10, SoftmaxOutput."""
    data = Variable("data", dtype=dtype)
    conv1 = Convolution(data, kernel=(5, 5), num_filter=20, name="conv1")
    tanh1 = Activation(conv1, act_type="tanh", name="tanh1")
    pool1 = Pooling(tanh1, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool1")
    conv2 = Convolution(pool1, kernel=(5, 5), num_filter=50, name="conv2")
    tanh2 = Activation(conv2, act_type="tanh", name="tanh2")
    pool2 = Pooling(tanh2, pool_type="max", kernel=(2, 2), stride=(2, 2), name="pool2")
    flatten = Flatten(pool2, name="flatten")
    fc1 = FullyConnected(flatten, num_hidden=500, name="fc1")
    tanh3 = Activation(fc1, act_type="tanh", name="tanh3")
    fc2 = FullyConnected(tanh3, num_hidden=num_classes, name="fc2")
    return SoftmaxOutput(fc2, name="softmax")


CHARLM_STATE_NAMES: Mapping[str, str] = MappingProxyType(
    {"lstm_state": "lstm_state_next_output", "lstm_state_cell": "lstm_state_cell_next_output"}
)
"""``Model``'s ``state_names`` for ``charlm(stateful=True)``: each state input and the output
that feeds it."""


def charlm(
    vocab_size: int,
    embed: int = 256,
    hidden: int = 256,
    stateful: bool = False,
    dtype: str | None = None,
) -> Symbol:
    """Character language model: Embedding, one LSTM layer, a softmax over the vocabulary
    at every step.

    ``data`` is (seq_len, batch) character indices, time-major as ``BPTTIter(...,
    layout='TN')`` gives them, and ``softmax_label`` the next characters in the same layout.
    The ``softmax`` output is (seq_len * batch, vocab_size): row ``t * batch + n`` is step
    ``t`` of stream ``n``.

    With ``stateful=True`` the LSTM starts from the variables ``lstm_state`` and
    ``lstm_state_cell`` (batch, hidden) instead of zeros, and the symbol has two more
    outputs, the final states ``lstm_state_next_output`` and ``lstm_state_cell_next_output``
    (batch, hidden), behind ``BlockGrad``. ``Model(net, state_names=CHARLM_STATE_NAMES)``
    then carries each stream's state from one ``BPTTIter`` batch into the next (truncated
    back-propagation through time, ``graphc.training.states``).

    >>> import graphc as gc
    >>> net = gc.models.charlm(30, embed=8, hidden=16, stateful=True)
    >>> net.list_outputs()
    ['softmax_output', 'lstm_state_next_output', 'lstm_state_cell_next_output']
    >>> net.infer_shape(data=(10, 4))[1]
    [(40, 30), (4, 16), (4, 16)]
    >>> gc.models.charlm(30, embed=8, hidden=16).list_outputs()
    ['softmax_output']
    """
    data = Variable("data", dtype=dtype)
    weight = Variable("embed_weight", dtype=dtype)  # indices say nothing of its dtype
    embedded = Embedding(data, weight=weight, input_dim=vocab_size, output_dim=embed, name="embed")
    state = state_cell = None
    if stateful:
        state = Variable("lstm_state", dtype=dtype)
        state_cell = Variable("lstm_state_cell", dtype=dtype)
    lstm = LSTM(embedded, num_hidden=hidden, state=state, state_cell=state_cell, name="lstm")
    states = Reshape(lstm[0], shape=(-1, hidden), name="states")
    logits = FullyConnected(states, num_hidden=vocab_size, name="decoder")
    softmax = SoftmaxOutput(
        logits, Variable("softmax_label"), normalization="batch", name="softmax"
    )
    if not stateful:
        return softmax
    return Group(
        [
            softmax,
            BlockGrad(lstm[1], name="lstm_state_next"),
            BlockGrad(lstm[2], name="lstm_state_cell_next"),
        ]
    )
