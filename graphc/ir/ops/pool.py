"""2-D pooling (MXNet's Pooling, NCHW): max and average, and the primitives of its gradient.

Max pooling also returns a hidden ``argmax`` output (int32: the flat index ``h*W + w`` of the
winning cell in its input plane), so that its gradient is a scatter and needs no second pass
over the input. Average pooling is linear; its gradient's gradient is average pooling again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.ir.ops.conv import add_windows, strided_windows
from graphc.ir.registry import Attr, OpDef, fill, get_op, known, register, require
from graphc.ir.symbol import apply_op, make_constructor

_POOL_ATTRS = (
    # None only with global_pool, which pools the whole plane whatever the kernel says.
    Attr("kernel", "ints", None, length=2, low=1, doc="(kh, kw): the window size"),
    Attr("pool_type", "str", "max", choices=("max", "avg")),
    Attr("stride", "ints", (1, 1), length=2, low=1, doc="(sh, sw): the step between windows"),
    Attr("pad", "ints", (0, 0), length=2, low=0, doc="(ph, pw): padding on each side"),
    Attr("global_pool", "bool", False, doc="pool all of H and W to one value"),
    Attr("count_include_pad", "bool", True, doc="avg: padding counts as zeros in the divisor"),
    Attr("pooling_convention", "str", "valid", choices=("valid", "full")),
)


@dataclass(frozen=True)
class _Geometry:
    """Where the windows of one pooling lie, for an input plane of ``in_hw``."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]

    @property
    def extent(self) -> tuple[int, int]:
        """Rows and columns the windows span, starting at -pad: (out - 1) * stride + kernel.
        With 'full' this runs past the padded input; with 'valid' it may stop short of it."""
        return tuple(
            (out - 1) * s + k
            for out, s, k in zip(self.out_hw, self.stride, self.kernel, strict=True)
        )


def pooled_size(size: int, kernel: int, stride: int, pad: int, convention: str) -> int:
    """Windows along one axis: ``(size + 2*pad - kernel) / stride + 1`` rounded down for
    'valid', up for 'full'."""
    span = size + 2 * pad - kernel
    if convention == "full":
        return -(-span // stride) + 1
    return span // stride + 1


def _geometry(attrs, shape: tuple) -> _Geometry:
    """The window geometry for input ``shape``; RuleViolation where windows cannot fit."""
    require(len(shape) == 4, f"data must be 4-D (N, C, H, W), not {tuple(shape)}")
    in_hw = (shape[2], shape[3])
    if attrs["global_pool"]:
        return _Geometry(in_hw, (1, 1), (0, 0), in_hw, (1, 1))
    require(attrs["kernel"] is not None, "kernel is required unless global_pool=True")
    kernel, stride, pad = attrs["kernel"], attrs["stride"], attrs["pad"]
    require(
        all(p < k for p, k in zip(pad, kernel, strict=True)),
        f"pad {pad} must be smaller than the kernel {kernel}: a window of padding alone"
        " has nothing to pool",
    )
    require(
        all(size + 2 * p >= k for size, p, k in zip(in_hw, pad, kernel, strict=True)),
        f"input {in_hw} padded by {pad} is smaller than the kernel {kernel}",
    )
    convention = attrs["pooling_convention"]
    out_hw = tuple(
        pooled_size(*axis, convention) for axis in zip(in_hw, kernel, stride, pad, strict=True)
    )
    last_starts = tuple((out - 1) * s - p for out, s, p in zip(out_hw, stride, pad, strict=True))
    # Only 'full' can start a window past the input; MXNet would pool nothing there (a
    # lowest-float max, a 0/0 average), so it is refused instead.
    require(
        all(start < size for start, size in zip(last_starts, in_hw, strict=True)),
        f"with pooling_convention='full' the last window starts at {last_starts}, past the"
        f" input {in_hw}, and would pool no input cell; change stride or pad, or use 'valid'",
    )
    return _Geometry(kernel, stride, pad, in_hw, out_hw)


def _place(data: np.ndarray, geo: _Geometry) -> np.ndarray:
    """``data`` in zeros spanning the windows' extent, its cell (0, 0) at (ph, pw)."""
    (ph, pw), (rows, cols) = geo.pad, _covered(geo)
    out = np.zeros(data.shape[:2] + geo.extent, dtype=data.dtype)
    out[:, :, ph : ph + rows, pw : pw + cols] = data[:, :, :rows, :cols]
    return out


def _crop(placed: np.ndarray, geo: _Geometry) -> np.ndarray:
    """The adjoint of :func:`_place`: the input plane back out of the windows' extent."""
    (ph, pw), (rows, cols) = geo.pad, _covered(geo)
    out = np.zeros(placed.shape[:2] + geo.in_hw, dtype=placed.dtype)
    out[:, :, :rows, :cols] = placed[:, :, ph : ph + rows, pw : pw + cols]
    return out


def _covered(geo: _Geometry) -> tuple[int, int]:
    """Input rows and columns inside the extent ('valid' windows may not reach the end)."""
    return tuple(
        min(size, extent - p)
        for size, extent, p in zip(geo.in_hw, geo.extent, geo.pad, strict=True)
    )


def _window_counts(geo: _Geometry, include_pad: bool) -> np.ndarray:
    """(1, 1, H', W'): the cells each window divides by, as MXNet counts them: with padding,
    the window clipped to the padded input; without, only the input cells it covers."""
    if include_pad:
        counted = np.zeros((1, 1) + geo.extent)
        rows, cols = (
            min(size + 2 * p, ext)
            for size, p, ext in zip(geo.in_hw, geo.pad, geo.extent, strict=True)
        )
        counted[:, :, :rows, :cols] = 1.0
    else:
        counted = _place(np.ones((1, 1) + geo.in_hw), geo)
    return strided_windows(counted, geo.kernel, geo.stride).sum(axis=(-2, -1))


def _lowest(dtype: np.dtype):
    return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min


def _max_pool(data: np.ndarray, geo: _Geometry) -> tuple[np.ndarray, np.ndarray]:
    """The max over the input cells of each window and the flat index of the first winner."""
    windows = strided_windows(_place(data, geo), geo.kernel, geo.stride)
    n, c, out_h, out_w, kh, kw = windows.shape
    flat = windows.reshape(n, c, out_h, out_w, kh * kw)
    real_cells = _place(np.ones((1, 1) + geo.in_hw, dtype=bool), geo)
    real = strided_windows(real_cells, geo.kernel, geo.stride).reshape(1, 1, out_h, out_w, -1)
    best = np.max(flat, axis=-1, where=real, initial=_lowest(data.dtype))
    # A NaN wins its window (np.max propagates it), so it must be the cell argmax points at.
    winners = real & ((flat == best[..., None]) | np.isnan(flat))
    local = np.argmax(winners, axis=-1)
    (sh, sw), (ph, pw) = geo.stride, geo.pad
    rows = np.arange(out_h)[:, None] * sh - ph + local // kw
    cols = np.arange(out_w)[None, :] * sw - pw + local % kw
    return best, (rows * geo.in_hw[1] + cols).astype(np.int32)


# -- Pooling ----------------------------------------------------------------------------------


def _pool_hidden_outputs(attrs):
    return ("argmax",) if attrs["pool_type"] == "max" else ()


def _pooled_shape(attrs, data: tuple) -> tuple:
    return tuple(data[:2]) + _geometry(attrs, data).out_hw


def _pool_shape(attrs, in_shapes):
    data = known(in_shapes[0], "data")
    out = _pooled_shape(attrs, data)
    return [data], [out] * (1 + len(_pool_hidden_outputs(attrs)))


def _pool_type(attrs, in_dtypes):
    if attrs["pool_type"] == "max":
        return in_dtypes, [in_dtypes[0], np.dtype("int32")]
    return in_dtypes, in_dtypes[0]


def _pool_forward(attrs, inputs, ctx):
    data = inputs[0]
    geo = _geometry(attrs, data.shape)
    if attrs["pool_type"] == "max":
        return list(_max_pool(data, geo))
    windows = strided_windows(_place(data, geo), geo.kernel, geo.stride)
    counts = _window_counts(geo, attrs["count_include_pad"])
    return [windows.sum(axis=(-2, -1)) / counts]


def _given_attrs(attrs) -> dict:
    """Parsed attributes as apply_op takes them again (an unset kernel stays unset)."""
    return {name: value for name, value in attrs.items() if value is not None}


def _pool_grad(args):
    if not args.wants[0]:
        return [None]
    data, dy = args.inputs[0], args.out_grads[0]
    attrs = _given_attrs(args.attrs)
    if attrs["pool_type"] == "max":
        return [apply_op("_max_pool_backward", [dy, args.outputs[1], data], attrs)]
    return [apply_op("_avg_pool_backward", [dy, data], attrs)]


register(
    OpDef(
        name="Pooling",
        hidden_outputs=_pool_hidden_outputs,
        attrs=_POOL_ATTRS,
        infer_shape=_pool_shape,
        infer_type=_pool_type,
        forward=_pool_forward,
        grad=_pool_grad,
        doc="""2-D max or average pooling of NCHW data, as MXNet's Pooling.

Windows of ``kernel`` every ``stride`` over the input padded by ``pad``; padding never wins a
max, and counts as zeros in an average when ``count_include_pad``. ``global_pool`` pools the
whole plane. 'valid' rounds the number of windows down, 'full' up (windows past the end are
clipped). Max pooling has a hidden int32 output ``argmax``.

>>> import graphc as gc
>>> pool = gc.Pooling(gc.Variable("x"), kernel=(2, 2), stride=(2, 2), name="pool1")
>>> pool.infer_shape(x=(2, 8, 25, 25))[1]
[(2, 8, 12, 12)]
""",
    )
)


# -- the gradient primitives ------------------------------------------------------------------


def _max_backward_shape(attrs, in_shapes):
    like = known(in_shapes[2], "like")
    out = _pooled_shape(attrs, like)
    dy = fill(in_shapes[0], out, "output gradient")
    argmax = fill(in_shapes[1], out, "argmax")
    return [dy, argmax, like], [like]


def _max_backward_type(attrs, in_dtypes):
    dy, argmax, like = in_dtypes
    require(
        argmax is None or np.issubdtype(argmax, np.integer),
        f"argmax must have an integer dtype, not {argmax}",
    )
    common = dy if dy is not None else like
    argmax = np.dtype("int32") if argmax is None else argmax
    return [common, argmax, common], common


def _max_backward_forward(attrs, inputs, ctx):
    dy, argmax, like = inputs
    n, c, height, width = like.shape
    planes = np.zeros((n * c, height * width), dtype=dy.dtype)
    plane_index = np.arange(n * c)[:, None]
    # add.at, not assignment: overlapping windows can share a winner.
    np.add.at(planes, (plane_index, argmax.reshape(n * c, -1)), dy.reshape(n * c, -1))
    return [planes.reshape(like.shape)]


def _avg_backward_shape(attrs, in_shapes):
    like = known(in_shapes[1], "like")
    dy = fill(in_shapes[0], _pooled_shape(attrs, like), "output gradient")
    return [dy, like], [like]


def _avg_backward_forward(attrs, inputs, ctx):
    dy, like = inputs
    geo = _geometry(attrs, like.shape)
    share = dy / _window_counts(geo, attrs["count_include_pad"])
    per_window = np.broadcast_to(share[..., None, None], share.shape + geo.kernel)
    return [_crop(add_windows(per_window, geo.stride, geo.extent), geo)]


def _avg_backward_grad(args):
    # Average pooling is y = A x; this op is dx = A^T dy, so its own gradient is A g.
    if not args.wants[0]:
        return [None, None]
    return [apply_op("Pooling", [args.out_grads[0]], _given_attrs(args.attrs)), None]


register(
    OpDef(
        name="_max_pool_backward",
        inputs=("dy", "argmax", "like"),
        integer_inputs=("argmax",),
        attrs=_POOL_ATTRS,
        infer_shape=_max_backward_shape,
        infer_type=_max_backward_type,
        forward=_max_backward_forward,
        # No second derivative through max pooling: asking for one is a GradientError.
        grad=None,
        doc="The gradient of max pooling: ``dy`` added into zeros shaped like the input at"
        " the cells ``argmax`` names.",
    )
)
register(
    OpDef(
        name="_avg_pool_backward",
        inputs=("dy", "like"),
        attrs=_POOL_ATTRS,
        infer_shape=_avg_backward_shape,
        forward=_avg_backward_forward,
        grad=_avg_backward_grad,
        doc="The gradient of average pooling: each window's share of ``dy`` spread over it.",
    )
)

Pooling = make_constructor(get_op("Pooling"))

__all__ = ["Pooling"]
