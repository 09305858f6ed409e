"""Every op graphc knows, one module per family; importing this registers them all."""

from graphc.ir.ops import (  # noqa: F401 - imported to register the ops
    broadcast,
    conv,
    dense,
    dropout,
    elementwise,
    fused,
    indexing,
    loss,
    lstm,
    pool,
    probability,
    reduce,
    shape_ops,
)
from graphc.ir.ops.broadcast import (
    add_n,
    broadcast_like,
    full,
    ones,
    ones_like,
    sum_to_like,
    zeros,
    zeros_like,
)
from graphc.ir.ops.conv import Convolution
from graphc.ir.ops.dense import FullyConnected, batch_dot, dot
from graphc.ir.ops.dropout import BlockGrad, Dropout, stop_gradient
from graphc.ir.ops.elementwise import (
    Activation,
    LeakyReLU,
    abs,
    add,
    divide,
    elemwise_add,
    elemwise_div,
    elemwise_mul,
    elemwise_sub,
    equal,
    exp,
    greater,
    greater_equal,
    lesser,
    lesser_equal,
    log,
    maximum,
    minimum,
    multiply,
    negative,
    not_equal,
    power,
    relu,
    sigmoid,
    sign,
    softrelu,
    sqrt,
    square,
    subtract,
    tanh,
)
from graphc.ir.ops.indexing import Embedding, one_hot, one_hot_like, pick
from graphc.ir.ops.loss import (
    LinearRegressionOutput,
    LogisticRegressionOutput,
    MakeLoss,
    SoftmaxOutput,
    softmax_cross_entropy,
)
from graphc.ir.ops.lstm import LSTM
from graphc.ir.ops.pool import Pooling
from graphc.ir.ops.probability import log_softmax, softmax
from graphc.ir.ops.reduce import max, mean, min, size_array, sum
from graphc.ir.ops.shape_ops import (
    Concat,
    Flatten,
    Reshape,
    SliceChannel,
    concat,
    expand_dims,
    flatten,
    reshape,
    reshape_like,
    slice_axis,
    split,
    transpose,
)

# MXNet's names for the broadcasting arithmetic.
broadcast_add = broadcast_plus = add
broadcast_sub = broadcast_minus = subtract
broadcast_mul = multiply
broadcast_div = divide
broadcast_power = power
broadcast_maximum = maximum
broadcast_minimum = minimum
# MXNet's elemwise_* (equal shapes only) are ops of their own (ops/elementwise.py).
