"""Convolution on the GPU: its three passes as implicit GEMMs in the tiled GEMM kernel
(``gemm.py``), each reading its image operand straight from the NCHW tensor.

im2col would copy each input value kh*kw times into a workspace and then run the GEMM
over it; here the GEMM's tile loads compute the same column entries from the image as they
load them (zero where a window reaches into the padding), so no workspace exists, nothing
is written twice and each pass is one launch whatever the batch. The window geometry and
the plane sizes are constants of the generated source; the batch is read from the arrays at
run time, so one kernel per layer serves every batch size (not when the pass leads a fused
epilogue, whose sizes are constants). Each output is one thread's sum
over K in a fixed order, with no atomics: the same bits on every run.

With P = H'*W' output positions per image and K = C*kh*kw:

- forward: out (F x N*P) = weight (F x K) @ columns (K x N*P), + bias per row;
- weight gradient: dw (F x K) = dy (F x N*P) @ columns^T, summed over every position of
  every image;
- data gradient: dx (C x N*H*W) = weight^T (C x F*kh*kw) @ the window gradients: for each
  input cell, the output positions whose window covers it through tap (i, j), gathered
  (col2im as a gather, so no two threads add into one cell).
"""

from __future__ import annotations

import math

from graphc.backend.lowering import NodeSpec, uniform_float_dtype
from graphc.codegen_cuda.gemm import GemmForm, GemmOp, gemm_op

IMAGE_AT = """
C, H, W = {C}, {H}, {W}
KH, KW, SH, SW, PH, PW = {KH}, {KW}, {SH}, {SW}, {PH}, {PW}
OH, OW = {OH}, {OW}


@cuda.jit(device=True, inline="always")
def split_tap(tap):
    # (channel or filter, kernel row, kernel column) of a tap.
    first = tap // (KH * KW)
    rest = tap - first * (KH * KW)
    i = rest // KW
    return first, i, rest - i * KW


@cuda.jit(device=True, inline="always")
def image_at(x, tap, position):
    # Column entry (tap, position) of im2col: tap = (c, i, j), position = (n, oh, ow).
    c, i, j = split_tap(tap)
    n = position // (OH * OW)
    rest = position - n * (OH * OW)
    oh = rest // OW
    ow = rest - oh * OW
    y = oh * SH + i - PH
    x_ = ow * SW + j - PW
    if y >= 0 and y < H and x_ >= 0 and x_ < W:
        return x[n, c, y, x_]
    return {kind}(0)


@cuda.jit(device=True, inline="always")
def window_gradient_at(dy, tap, cell):
    # The gradient reaching input cell (n, y, x) through tap (f, i, j): dy at the output
    # position whose window puts tap (i, j) on that cell, or zero where none does.
    f, i, j = split_tap(tap)
    n = cell // (H * W)
    rest = cell - n * (H * W)
    y = rest // W
    x_ = rest - y * W
    py = y + PH - i
    px = x_ + PW - j
    if py >= 0 and px >= 0 and py % SH == 0 and px % SW == 0:
        oh = py // SH
        ow = px // SW
        if oh < OH and ow < OW:
            return dy[n, f, oh, ow]
    return {kind}(0)
"""


def _geometry(spec: NodeSpec, data_shape: tuple, out_shape: tuple) -> dict:
    """The constants of ``IMAGE_AT``: the layer's window and plane sizes, and the dtype."""
    attrs = spec.attrs
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel"], attrs["stride"], attrs["pad"]
    _, c, h, w = data_shape
    return dict(
        C=c, H=h, W=w, KH=kh, KW=kw, SH=sh, SW=sw, PH=ph, PW=pw, OH=out_shape[2], OW=out_shape[3],
        kind=uniform_float_dtype(spec).name,
    )  # fmt: skip


def _plane_index(plane: int, width: int) -> tuple[str, ...]:
    """The NCHW indices of C's (m, n) when m is the channel and n runs over the images'
    positions (``plane`` = H*W of one, ``width`` = W)."""
    return (
        f"i0 = n // {plane}",
        "i1 = m",
        f"i2 = (n % {plane}) // {width}",
        f"i3 = n % {width}",
    )


@gemm_op("Convolution")
def convolution(spec: NodeSpec) -> GemmOp:
    data_shape, out_shape = spec.in_shapes[0], spec.out_shapes[0]
    geometry = _geometry(spec, data_shape, out_shape)
    filters, positions = out_shape[1], out_shape[2] * out_shape[3]
    depth = math.prod(spec.in_shapes[1][1:])
    bias = not spec.attrs["no_bias"]
    form = GemmForm(
        params="",
        sizes=("weight.shape[0]", f"x.shape[0] * {positions}", "weight.shape[1]"),
        a_at="weight[m, k]",
        b_at="image_at(x, k, n)",
        a_k_fast=True,
        b_k_fast=False,
        store="",
        prelude=IMAGE_AT.format(**geometry),
    )

    def operands(inputs):
        weight = inputs[1].reshape(filters, depth)
        return (weight, inputs[0], inputs[2]) if bias else (weight, inputs[0])

    return GemmOp(
        form=form,
        result="value + bias[m]" if bias else "value",
        index=_plane_index(positions, out_shape[3]),
        rows=filters, cols=out_shape[0] * positions, depth=depth, batch=1,
        operand_params=("weight", "x", "bias") if bias else ("weight", "x"),
        operands=operands,
        output_at=f"out[n // {positions}, m, n % {positions}]",
        output=lambda out: out.reshape(out_shape[0], filters, positions),
    )  # fmt: skip


@gemm_op("_conv_backward_weight")
def convolution_weight_gradient(spec: NodeSpec) -> GemmOp:
    dy_shape, data_shape = spec.in_shapes
    geometry = _geometry(spec, data_shape, dy_shape)
    filters, positions = dy_shape[1], dy_shape[2] * dy_shape[3]
    taps = math.prod(spec.out_shapes[0][1:])
    form = GemmForm(
        params="",
        sizes=("out.shape[0]", "out.shape[1]", f"x.shape[0] * {positions}"),
        a_at=f"dy[k // {positions}, m, k % {positions}]",
        b_at="image_at(x, n, k)",
        a_k_fast=True,
        b_k_fast=True,
        store="",
        prelude=IMAGE_AT.format(**geometry),
    )
    window = spec.out_shapes[0][2] * spec.out_shapes[0][3]
    return GemmOp(
        form=form,
        result="value",
        index=(
            "i0 = m", f"i1 = n // {window}", f"i2 = (n % {window}) // {spec.out_shapes[0][3]}",
            f"i3 = n % {spec.out_shapes[0][3]}",
        ),
        rows=filters, cols=taps, depth=dy_shape[0] * positions, batch=1,
        operand_params=("dy", "x"),
        operands=lambda inputs: (inputs[0].reshape(dy_shape[0], filters, positions), inputs[1]),
        output_at="out[m, n]",
        output=lambda out: out.reshape(filters, taps),
    )  # fmt: skip


@gemm_op("_conv_backward_data")
def convolution_data_gradient(spec: NodeSpec) -> GemmOp:
    dy_shape, weight_shape, data_shape = spec.in_shapes
    geometry = _geometry(spec, data_shape, dy_shape)
    filters, channels = weight_shape[0], weight_shape[1]
    window = weight_shape[2] * weight_shape[3]
    cells = data_shape[2] * data_shape[3]
    form = GemmForm(
        params="",
        sizes=("out.shape[1]", f"out.shape[0] * {cells}", str(filters * window)),
        a_at=f"weight[k // {window}, m, k % {window}]",
        b_at="window_gradient_at(dy, k, n)",
        a_k_fast=True,
        b_k_fast=False,
        store="",
        prelude=IMAGE_AT.format(**geometry),
    )
    return GemmOp(
        form=form,
        result="value",
        index=_plane_index(cells, data_shape[3]),
        rows=channels, cols=data_shape[0] * cells, depth=filters * window, batch=1,
        operand_params=("weight", "dy"),
        operands=lambda inputs: (inputs[1].reshape(filters, channels, window), inputs[0]),
        output_at=f"out[n // {cells}, m, n % {cells}]",
        output=lambda out: out.reshape(data_shape[0], channels, cells),
    )  # fmt: skip
