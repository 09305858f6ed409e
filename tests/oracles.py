"""Forward values of the layers computed independently of graphc: convolution and pooling as
the loops their definitions are written with, an LSTM one time step after another with one
matrix per gate. The op table (optable.py) and the layers' own tests check graphc's
reference executor against these.
"""

from __future__ import annotations

import numpy as np


def naive_convolution(x, weight, bias, stride, pad) -> np.ndarray:
    """MXNet's Convolution (a cross-correlation), one output element at a time."""
    N, C, H, W = x.shape
    F, _, kh, kw = weight.shape
    out_h = (H + 2 * pad[0] - kh) // stride[0] + 1
    out_w = (W + 2 * pad[1] - kw) // stride[1] + 1
    out = np.zeros((N, F, out_h, out_w))
    for n, f, i, j in np.ndindex(out.shape):
        total = 0.0 if bias is None else bias[f]
        for c, di, dj in np.ndindex(C, kh, kw):
            r = i * stride[0] - pad[0] + di
            s = j * stride[1] - pad[1] + dj
            if 0 <= r < H and 0 <= s < W:
                total += x[n, c, r, s] * weight[f, c, di, dj]
        out[n, f, i, j] = total
    return out


def naive_pooling(x, kernel, stride, pad, pool_type, count_include_pad, convention):
    """MXNet's pool.h loops: windows clipped to the padded input, then to the input. Returns
    the pooled values and, for max pooling, the flat index in its (H, W) plane of each
    window's first largest element."""
    N, C, H, W = x.shape
    rounding = np.ceil if convention == "full" else np.floor
    out_h = int(rounding((H + 2 * pad[0] - kernel[0]) / stride[0])) + 1
    out_w = int(rounding((W + 2 * pad[1] - kernel[1]) / stride[1])) + 1
    out = np.zeros((N, C, out_h, out_w))
    argmax = np.zeros((N, C, out_h, out_w), dtype=np.int64)
    for n, c, i, j in np.ndindex(out.shape):
        h0, w0 = i * stride[0] - pad[0], j * stride[1] - pad[1]
        h1, w1 = min(h0 + kernel[0], H + pad[0]), min(w0 + kernel[1], W + pad[1])
        padded_size = (h1 - h0) * (w1 - w0)
        h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, H), min(w1, W)
        region = x[n, c, h0:h1, w0:w1]
        if pool_type == "max":
            out[n, c, i, j] = region.max()
            r, s = np.unravel_index(np.argmax(region), region.shape)
            argmax[n, c, i, j] = (h0 + r) * W + (w0 + s)
        else:
            out[n, c, i, j] = region.sum() / (padded_size if count_include_pad else region.size)
    return out, argmax


def lstm_steps(data, i2h_weight, h2h_weight, i2h_bias, h2h_bias, state=None, state_cell=None):
    """An LSTM over ``data`` (T, N, I), time step by time step, with one matrix per gate
    (MXNet's and PyTorch's order: input, forget, candidate, output) and the textbook
    sigmoid 1 / (1 + e^-x). Returns the hidden states (T, N, H), the last hidden state and
    the last cell state; missing initial states are zeros."""
    T, N, _ = data.shape
    H = h2h_weight.shape[1]
    w_x = np.split(i2h_weight, 4)
    w_h = np.split(h2h_weight, 4)
    bias = np.split(i2h_bias + h2h_bias, 4)
    h = np.zeros((N, H)) if state is None else state
    c = np.zeros((N, H)) if state_cell is None else state_cell

    def pre_activation(gate: int, x: np.ndarray) -> np.ndarray:
        return x @ w_x[gate].T + h @ w_h[gate].T + bias[gate]

    def sigmoid(value: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-value))

    hidden_states = []
    for t in range(T):
        input_gate = sigmoid(pre_activation(0, data[t]))
        forget_gate = sigmoid(pre_activation(1, data[t]))
        candidate = np.tanh(pre_activation(2, data[t]))
        output_gate = sigmoid(pre_activation(3, data[t]))
        c = forget_gate * c + input_gate * candidate
        h = output_gate * np.tanh(c)
        hidden_states.append(h)
    return np.stack(hidden_states), h, c
