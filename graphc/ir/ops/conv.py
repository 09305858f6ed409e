"""2-D convolution (MXNet's Convolution, NCHW) and the two primitives its gradient is made of.

The three ops are the three partial derivatives of one trilinear form,
``T(x, w, dy) = <Convolution(x, w), dy>``:

- ``Convolution(x, w)`` is dT/d(dy),
- ``_conv_backward_data(dy, w, like=x)`` is dT/dx,
- ``_conv_backward_weight(dy, x)`` is dT/dw,

so the gradient of each is written with the other two, and convolutions are differentiable
any number of times without a fourth op.
"""

from __future__ import annotations

import numpy as np

from graphc.ir.ops.reduce import sum as reduce_sum
from graphc.ir.registry import Attr, OpDef, fill, get_op, known, register, require
from graphc.ir.symbol import Symbol, apply_op, make_constructor

# The window geometry every op here shares; the backward ops carry the forward's attributes.
_GEOMETRY_ATTRS = (
    Attr("kernel", "ints", length=2, low=1, doc="(kh, kw): the window size"),
    Attr("stride", "ints", (1, 1), length=2, low=1, doc="(sh, sw): the step between windows"),
    Attr("pad", "ints", (0, 0), length=2, low=0, doc="(ph, pw): zeros added on each side"),
    Attr("num_filter", "int", low=1, doc="F: the number of output channels"),
)


# -- windows: shared with pool.py ---------------------------------------------------------


def strided_windows(padded: np.ndarray, kernel: tuple, stride: tuple) -> np.ndarray:
    """A read-only (N, C, H', W', kh, kw) view of ``padded`` (N, C, Hp, Wp): window
    (oh, ow) is ``padded[:, :, oh*sh : oh*sh+kh, ow*sw : ow*sw+kw]``."""
    view = np.lib.stride_tricks.sliding_window_view(padded, kernel, axis=(2, 3))
    return view[:, :, :: stride[0], :: stride[1]]


def add_windows(values: np.ndarray, stride: tuple, padded_hw: tuple) -> np.ndarray:
    """The adjoint of :func:`strided_windows`: add each window of ``values``
    (N, C, H', W', kh, kw) back at its place in zeros shaped (N, C, *padded_hw)."""
    n, c, rows, cols, kh, kw = values.shape
    out = np.zeros((n, c) + tuple(padded_hw), dtype=values.dtype)
    sh, sw = stride
    # One strided slice per kernel offset: windows overlap, so a single scatter could not add.
    for i in range(kh):
        for j in range(kw):
            out[:, :, i : i + (rows - 1) * sh + 1 : sh, j : j + (cols - 1) * sw + 1 : sw] += values[
                :, :, :, :, i, j
            ]
    return out


def conv_output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Positions of a window along one axis: ``(size + 2*pad - kernel) // stride + 1``."""
    return (size + 2 * pad - kernel) // stride + 1


def _pad_spatial(data: np.ndarray, pad: tuple) -> np.ndarray:
    ph, pw = pad
    return np.pad(data, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


# -- shape rules ------------------------------------------------------------------------------


def _output_shape(attrs, data: tuple) -> tuple:
    """(N, F, H', W') of a convolution of ``data``; RuleViolation if it has no such output."""
    require(len(data) == 4, f"data must be 4-D (N, C, H, W), not {tuple(data)}")
    n, _, height, width = data
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel"], attrs["stride"], attrs["pad"]
    require(
        height + 2 * ph >= kh and width + 2 * pw >= kw,
        f"data {tuple(data)} padded by {attrs['pad']} is {height + 2 * ph}x{width + 2 * pw},"
        f" smaller than the kernel {kh}x{kw}",
    )
    return (
        n,
        attrs["num_filter"],
        conv_output_size(height, kh, sh, ph),
        conv_output_size(width, kw, sw, pw),
    )


def _weight_shape(attrs, data: tuple, weight: tuple | None) -> tuple:
    """``weight`` filled in or checked against (num_filter, C, kh, kw)."""
    expected = (attrs["num_filter"], data[1]) + tuple(attrs["kernel"])
    if weight is not None and len(weight) == 4:
        require(
            weight[1] == data[1],
            f"data {tuple(data)} has {data[1]} channels but weight {tuple(weight)}"
            f" expects {weight[1]}",
        )
    return fill(weight, expected, "weight")


def _conv_inputs(attrs):
    return ("data", "weight") if attrs.get("no_bias") else ("data", "weight", "bias")


def _conv_shape(attrs, in_shapes):
    data = known(in_shapes[0], "data")
    out = _output_shape(attrs, data)
    shapes = [data, _weight_shape(attrs, data, in_shapes[1])]
    if not attrs["no_bias"]:
        shapes.append(fill(in_shapes[2], (attrs["num_filter"],), "bias"))
    return shapes, [out]


def _backward_data_shape(attrs, in_shapes):
    like = known(in_shapes[2], "like")
    expected_dy = _output_shape(attrs, like)
    dy = fill(in_shapes[0], expected_dy, "output gradient")
    return [dy, _weight_shape(attrs, like, in_shapes[1]), like], [like]


def _backward_weight_shape(attrs, in_shapes):
    data = known(in_shapes[1], "data")
    dy = fill(in_shapes[0], _output_shape(attrs, data), "output gradient")
    return [dy, data], [_weight_shape(attrs, data, None)]


# -- NumPy references -------------------------------------------------------------------------


def _conv_forward(attrs, inputs, ctx):
    data, weight = inputs[0], inputs[1]
    windows = strided_windows(_pad_spatial(data, attrs["pad"]), attrs["kernel"], attrs["stride"])
    out = np.einsum("nchwij,fcij->nfhw", windows, weight, optimize=True)
    if not attrs["no_bias"]:
        out = out + inputs[2].reshape(1, -1, 1, 1)
    return [out]


def _backward_data_forward(attrs, inputs, ctx):
    dy, weight, like = inputs
    ph, pw = attrs["pad"]
    height, width = like.shape[2], like.shape[3]
    per_window = np.einsum("nfhw,fcij->nchwij", dy, weight, optimize=True)
    padded = add_windows(per_window, attrs["stride"], (height + 2 * ph, width + 2 * pw))
    return [padded[:, :, ph : ph + height, pw : pw + width]]


def _backward_weight_forward(attrs, inputs, ctx):
    dy, data = inputs
    windows = strided_windows(_pad_spatial(data, attrs["pad"]), attrs["kernel"], attrs["stride"])
    return [np.einsum("nfhw,nchwij->fcij", dy, windows, optimize=True)]


# -- gradient rules ---------------------------------------------------------------------------


def _geometry(attrs) -> dict:
    return {name: attrs[name] for name in ("kernel", "stride", "pad", "num_filter")}


def _convolve(data: Symbol, weight: Symbol, attrs) -> Symbol:
    return apply_op("Convolution", [data, weight], {**_geometry(attrs), "no_bias": True})


def _backward_data(dy: Symbol, weight: Symbol, like: Symbol, attrs) -> Symbol:
    return apply_op("_conv_backward_data", [dy, weight, like], _geometry(attrs))


def _backward_weight(dy: Symbol, data: Symbol, attrs) -> Symbol:
    return apply_op("_conv_backward_weight", [dy, data], _geometry(attrs))


def _conv_grad(args):
    data, weight = args.inputs[0], args.inputs[1]
    dy = args.out_grads[0]
    grads = [
        _backward_data(dy, weight, data, args.attrs) if args.wants[0] else None,
        _backward_weight(dy, data, args.attrs) if args.wants[1] else None,
    ]
    if not args.attrs["no_bias"]:
        grads.append(reduce_sum(dy, axis=(0, 2, 3)) if args.wants[2] else None)
    return grads


def _backward_data_grad(args):
    # <_conv_backward_data(dy, w), g> = T(g, w, dy).
    dy, weight, _ = args.inputs
    g = args.out_grads[0]
    return [
        _convolve(g, weight, args.attrs) if args.wants[0] else None,
        _backward_weight(dy, g, args.attrs) if args.wants[1] else None,
        None,
    ]


def _backward_weight_grad(args):
    # <_conv_backward_weight(dy, x), G> = T(x, G, dy).
    dy, data = args.inputs
    g = args.out_grads[0]
    return [
        _convolve(data, g, args.attrs) if args.wants[0] else None,
        _backward_data(dy, g, data, args.attrs) if args.wants[1] else None,
    ]


register(
    OpDef(
        name="Convolution",
        inputs=_conv_inputs,
        params=("weight", "bias"),
        attrs=_GEOMETRY_ATTRS + (Attr("no_bias", "bool", False),),
        infer_shape=_conv_shape,
        forward=_conv_forward,
        grad=_conv_grad,
        doc="""2-D convolution (cross-correlation, as in MXNet) of NCHW data.

data (N, C, H, W), weight (num_filter, C, kh, kw), bias (num_filter,); the output is
(N, num_filter, H', W') with H' = (H + 2*ph - kh) // sh + 1 and likewise W'.

>>> import graphc as gc
>>> conv = gc.Convolution(gc.Variable("x"), kernel=(3, 3), num_filter=8, name="conv1")
>>> conv.infer_shape(x=(2, 3, 28, 28))[1]
[(2, 8, 26, 26)]
""",
    )
)
register(
    OpDef(
        name="_conv_backward_data",
        inputs=("dy", "weight", "like"),
        attrs=_GEOMETRY_ATTRS,
        infer_shape=_backward_data_shape,
        forward=_backward_data_forward,
        grad=_backward_data_grad,
        doc="The gradient of Convolution with respect to its data, shaped like ``like`` (the"
        " input: with stride > 1 its size cannot be recovered from the output's).",
    )
)
register(
    OpDef(
        name="_conv_backward_weight",
        inputs=("dy", "data"),
        attrs=_GEOMETRY_ATTRS,
        infer_shape=_backward_weight_shape,
        forward=_backward_weight_forward,
        grad=_backward_weight_grad,
        doc="The gradient of Convolution with respect to its weight: (num_filter, C, kh, kw).",
    )
)

Convolution = make_constructor(get_op("Convolution"))

__all__ = ["Convolution"]
