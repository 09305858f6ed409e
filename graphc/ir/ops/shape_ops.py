"""Ops that move data without arithmetic: reshape, transpose, concat, split, slice."""

from __future__ import annotations

import numpy as np

from graphc.ir.ops.broadcast import zeros_like
from graphc.ir.registry import (
    Attr,
    OpDef,
    get_op,
    known,
    normalize_axis,
    register,
    require,
    size_of,
)
from graphc.ir.symbol import Symbol, apply_op, make_constructor


def _fmt(shape) -> str:
    return str(tuple(shape))


# -- Reshape with MXNet's special codes ------------------------------------------------------


def reshape_target(source: tuple, spec: tuple, reverse: bool = False) -> tuple:
    """MXNet's Reshape codes: 0 copies a dimension, -1 infers one, -2 copies all the rest,
    -3 merges two dimensions, -4 splits one into the next two values (one may be -1).
    With ``reverse`` the codes are matched from the right."""
    if reverse:
        return tuple(_reshape_forward(tuple(source)[::-1], _reverse_spec(spec)))[::-1]
    return tuple(_reshape_forward(tuple(source), tuple(spec)))


def _reverse_spec(spec: tuple) -> tuple:
    items = list(spec)
    groups = []
    index = 0
    while index < len(items):
        if items[index] == -4:
            groups.append([items[index], items[index + 2], items[index + 1]])
            index += 3
        else:
            groups.append([items[index]])
            index += 1
    flat = []
    for group in reversed(groups):
        flat.extend(group)
    return tuple(flat)


def _reshape_forward(source: tuple, spec: tuple) -> list:
    out: list[int] = []
    infer_at = None
    src = 0
    index = 0
    while index < len(spec):
        code = spec[index]
        if code > 0:
            out.append(code)
            src += 1
        elif code == 0:
            require(src < len(source), f"code 0 at position {index} has no input dimension to copy")
            out.append(source[src])
            src += 1
        elif code == -1:
            require(infer_at is None, "more than one -1 in the shape")
            infer_at = len(out)
            out.append(-1)
            src += 1
        elif code == -2:
            out.extend(source[src:])
            src = len(source)
        elif code == -3:
            require(src + 1 < len(source), "code -3 needs two input dimensions to merge")
            out.append(source[src] * source[src + 1])
            src += 2
        elif code == -4:
            require(index + 2 < len(spec), "code -4 needs two values after it")
            require(src < len(source), "code -4 has no input dimension to split")
            first, second = spec[index + 1], spec[index + 2]
            dim = source[src]
            require(not (first == -1 and second == -1), "code -4 with two -1 values")
            if first == -1:
                require(second > 0 and dim % second == 0, f"cannot split {dim} by {second}")
                first = dim // second
            if second == -1:
                require(first > 0 and dim % first == 0, f"cannot split {dim} by {first}")
                second = dim // first
            require(first * second == dim, f"cannot split {dim} into {first} x {second}")
            out.extend([first, second])
            src += 1
            index += 2
        else:
            raise AssertionError(code)
        index += 1
    total = size_of(source)
    if infer_at is not None:
        rest = size_of([dim for dim in out if dim != -1])
        require(rest > 0 and total % rest == 0, f"cannot infer -1: {total} elements into {out}")
        out[infer_at] = total // rest
    require(
        size_of(out) == total,
        f"cannot reshape {_fmt(source)} ({total} elements) to {_fmt(out)} ({size_of(out)} elements)",
    )
    return out


def _reshape_shape(attrs, in_shapes):
    source = known(in_shapes[0])
    return in_shapes, [reshape_target(source, attrs["shape"], attrs["reverse"])]


def _reshape_forward_np(attrs, inputs, ctx):
    target = reshape_target(inputs[0].shape, attrs["shape"], attrs["reverse"])
    return [inputs[0].reshape(target)]


register(
    OpDef(
        name="Reshape",
        attrs=(
            Attr("shape", "shape", low=-4),
            Attr("reverse", "bool", False),
        ),
        infer_shape=_reshape_shape,
        forward=_reshape_forward_np,
        grad=lambda args: [reshape_like(args.out_grads[0], args.inputs[0])],
        doc="Reshape with MXNet's codes 0 (copy), -1 (infer), -2 (rest), -3 (merge), -4 (split).",
    )
)


def _reshape_like_shape(attrs, in_shapes):
    source, target = known(in_shapes[0]), known(in_shapes[1])
    require(
        size_of(source) == size_of(target),
        f"cannot reshape {_fmt(source)} to the shape of like {_fmt(target)}",
    )
    return in_shapes, [target]


register(
    OpDef(
        name="reshape_like",
        inputs=("lhs", "rhs"),
        infer_shape=_reshape_like_shape,
        infer_type=lambda attrs, dtypes: (dtypes, dtypes[0]),
        forward=lambda attrs, inputs, ctx: [inputs[0].reshape(inputs[1].shape)],
        grad=lambda args: [reshape_like(args.out_grads[0], args.inputs[0]), None],
        doc="Reshape ``lhs`` to the shape of ``rhs``.",
    )
)


def Flatten(data: Symbol, name: str | None = None) -> Symbol:
    """Collapse all axes but the first: (N, C, H, W) -> (N, C*H*W). A Reshape node."""
    return apply_op("Reshape", [data], {"shape": (0, -1)}, name=name or _auto("flatten"))


def _auto(hint: str) -> str:
    from graphc.ir.node import NAMES

    return NAMES.next_name(hint)


# -- expand_dims, transpose --------------------------------------------------------------------


def _expand_axes(axis, ndim_out: int) -> tuple:
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    normalized = tuple(sorted(normalize_axis(a, ndim_out) for a in axes))
    require(len(set(normalized)) == len(normalized), f"repeated axis in {axis}")
    return normalized


def _expand_dims_shape(attrs, in_shapes):
    source = known(in_shapes[0])
    axes = _expand_axes(attrs["axis"], len(source) + _count(attrs["axis"]))
    out = list(source)
    for axis in axes:
        out.insert(axis, 1)
    return in_shapes, [tuple(out)]


def _count(axis) -> int:
    return 1 if isinstance(axis, int) else len(axis)


register(
    OpDef(
        name="expand_dims",
        attrs=(Attr("axis", "axis"),),
        infer_shape=_expand_dims_shape,
        forward=lambda attrs, inputs, ctx: [np.expand_dims(inputs[0], attrs["axis"])],
        grad=lambda args: [reshape_like(args.out_grads[0], args.inputs[0])],
        doc="Insert size-1 axes at ``axis`` (an int or a tuple, NumPy's rule).",
    )
)


def _transpose_axes(attrs, ndim: int) -> tuple:
    axes = attrs["axes"]
    if axes is None or axes == ():
        return tuple(reversed(range(ndim)))
    require(len(axes) == ndim, f"axes {axes} has {len(axes)} entries for {ndim} dimensions")
    normalized = tuple(normalize_axis(a, ndim) for a in axes)
    require(sorted(normalized) == list(range(ndim)), f"axes {axes} is not a permutation")
    return normalized


def _transpose_shape(attrs, in_shapes):
    source = known(in_shapes[0])
    axes = _transpose_axes(attrs, len(source))
    return in_shapes, [tuple(source[a] for a in axes)]


def _transpose_grad(args):
    axes = args.attrs["axes"]
    if axes is None or axes == ():
        return [transpose(args.out_grads[0])]
    ndim = len(axes)
    normalized = [a % ndim for a in axes]
    inverse = tuple(int(i) for i in np.argsort(normalized))
    return [transpose(args.out_grads[0], axes=inverse)]


register(
    OpDef(
        name="transpose",
        attrs=(Attr("axes", "axis", None),),
        infer_shape=_transpose_shape,
        forward=lambda attrs, inputs, ctx: [
            # copy, not ascontiguousarray, which would make a 0-d array 1-d
            np.transpose(inputs[0], _transpose_axes(attrs, inputs[0].ndim)).copy(order="C")
        ],
        grad=_transpose_grad,
        doc="Permute axes (reverse them when ``axes`` is not given).",
    )
)


# -- Concat and its inverse -------------------------------------------------------------------


def _concat_inputs(attrs):
    return tuple(f"arg{i}" for i in range(attrs.get("num_args") or 0))


def _concat_shape(attrs, in_shapes):
    shapes = [known(shape) for shape in in_shapes]
    first = shapes[0]
    axis = normalize_axis(attrs["dim"], len(first), "dim")
    for index, shape in enumerate(shapes):
        require(
            len(shape) == len(first), f"arg{index} has {len(shape)} dims, arg0 has {len(first)}"
        )
        for a, (dim, ref) in enumerate(zip(shape, first)):
            require(
                a == axis or dim == ref,
                f"arg{index} {_fmt(shape)} and arg0 {_fmt(first)} differ on axis {a} (not dim {axis})",
            )
    out = list(first)
    out[axis] = sum(shape[axis] for shape in shapes)
    return in_shapes, [tuple(out)]


def _concat_grad(args):
    dim = args.attrs["dim"]
    parts = apply_op(
        "_split_like",
        [args.out_grads[0], *args.inputs],
        {"axis": dim, "num_args": len(args.inputs)},
    )
    return list(parts)


register(
    OpDef(
        name="Concat",
        inputs=_concat_inputs,
        variadic=True,
        attrs=(Attr("num_args", "int", low=1), Attr("dim", "int", 1)),
        infer_shape=_concat_shape,
        forward=lambda attrs, inputs, ctx: [np.concatenate(inputs, axis=attrs["dim"])],
        grad=_concat_grad,
        doc="Join arrays along ``dim``.",
    )
)


def _split_like_inputs(attrs):
    return ("data",) + tuple(f"like{i}" for i in range(attrs.get("num_args") or 0))


def _split_like_outputs(attrs):
    return tuple(f"output{i}" for i in range(attrs.get("num_args") or 0))


def _split_like_shape(attrs, in_shapes):
    source = known(in_shapes[0])
    likes = [known(shape) for shape in in_shapes[1:]]
    axis = normalize_axis(attrs["axis"], len(source))
    total = sum(like[axis] for like in likes)
    require(total == source[axis], f"parts sum to {total} on axis {axis}, data has {source[axis]}")
    return in_shapes, [tuple(like) for like in likes]


def _split_like_forward(attrs, inputs, ctx):
    axis = attrs["axis"]
    offsets = np.cumsum([like.shape[axis] for like in inputs[1:]])[:-1]
    return [np.ascontiguousarray(part) for part in np.split(inputs[0], offsets, axis=axis)]


register(
    OpDef(
        name="_split_like",
        inputs=_split_like_inputs,
        outputs=_split_like_outputs,
        attrs=(Attr("num_args", "int", low=1), Attr("axis", "int", 1)),
        infer_shape=_split_like_shape,
        infer_type=lambda attrs, dtypes: (dtypes, dtypes[0]),
        forward=_split_like_forward,
        grad=lambda args: (
            [
                apply_op(
                    "Concat",
                    list(args.out_grads),
                    {"dim": args.attrs["axis"], "num_args": len(args.out_grads)},
                )
            ]
            + [None] * (len(args.inputs) - 1)
        ),
        doc="Split ``data`` along ``axis`` into parts shaped like the ``like`` inputs (Concat's gradient).",
    )
)


# -- SliceChannel / split, slice_axis ----------------------------------------------------------


def _slice_channel_outputs(attrs):
    return tuple(f"output{i}" for i in range(attrs.get("num_outputs") or 0))


def _slice_channel_shape(attrs, in_shapes):
    source = known(in_shapes[0])
    axis = normalize_axis(attrs["axis"], len(source))
    parts = attrs["num_outputs"]
    require(
        source[axis] % parts == 0, f"axis {axis} of size {source[axis]} does not split into {parts}"
    )
    out = list(source)
    out[axis] = source[axis] // parts
    if attrs["squeeze_axis"]:
        require(out[axis] == 1, f"squeeze_axis needs parts of size 1, not {out[axis]}")
        del out[axis]
    return in_shapes, [tuple(out)] * parts


def _slice_channel_forward(attrs, inputs, ctx):
    parts = np.split(inputs[0], attrs["num_outputs"], axis=attrs["axis"])
    if attrs["squeeze_axis"]:
        parts = [np.squeeze(part, axis=attrs["axis"]) for part in parts]
    return [np.ascontiguousarray(part) for part in parts]


def _slice_channel_grad(args):
    grads = list(args.out_grads)
    axis = args.attrs["axis"]
    if args.attrs["squeeze_axis"]:
        grads = [apply_op("expand_dims", [g], {"axis": axis}) for g in grads]
    return [apply_op("Concat", grads, {"dim": axis, "num_args": len(grads)})]


register(
    OpDef(
        name="SliceChannel",
        outputs=_slice_channel_outputs,
        attrs=(
            Attr("num_outputs", "int", low=1),
            Attr("axis", "int", 1),
            Attr("squeeze_axis", "bool", False),
        ),
        infer_shape=_slice_channel_shape,
        forward=_slice_channel_forward,
        grad=_slice_channel_grad,
        doc="Split into ``num_outputs`` equal parts along ``axis`` (MXNet's split).",
    )
)


def _slice_bounds(attrs, size: int) -> tuple[int, int]:
    begin = attrs["begin"]
    end = size if attrs["end"] is None else attrs["end"]
    begin = begin + size if begin < 0 else begin
    end = end + size if end < 0 else end
    require(
        0 <= begin < end <= size,
        f"slice [{attrs['begin']}, {attrs['end']}) is empty or out of range for size {size}",
    )
    return begin, end


def _slice_axis_shape(attrs, in_shapes):
    source = known(in_shapes[0])
    axis = normalize_axis(attrs["axis"], len(source))
    begin, end = _slice_bounds(attrs, source[axis])
    out = list(source)
    out[axis] = end - begin
    return in_shapes, [tuple(out)]


def _slice_axis_forward(attrs, inputs, ctx):
    data = inputs[0]
    axis = attrs["axis"] % data.ndim
    begin, end = _slice_bounds(attrs, data.shape[axis])
    index = [slice(None)] * data.ndim
    index[axis] = slice(begin, end)
    return [np.ascontiguousarray(data[tuple(index)])]


_SLICE_ATTRS = (Attr("axis", "int"), Attr("begin", "int"), Attr("end", "optional_int", None))

register(
    OpDef(
        name="slice_axis",
        attrs=_SLICE_ATTRS,
        infer_shape=_slice_axis_shape,
        forward=_slice_axis_forward,
        grad=lambda args: [
            apply_op("_slice_axis_backward", [args.out_grads[0], args.inputs[0]], dict(args.attrs))
        ],
        doc="Take [begin, end) along ``axis`` (negative indices count from the end).",
    )
)


def _slice_backward_shape(attrs, in_shapes):
    grad_shape, like = known(in_shapes[0]), known(in_shapes[1])
    _, (expected,) = _slice_axis_shape(attrs, [like])
    require(
        tuple(grad_shape) == expected,
        f"gradient {_fmt(grad_shape)} does not match slice {_fmt(expected)}",
    )
    return in_shapes, [like]


def _slice_backward_forward(attrs, inputs, ctx):
    grad_value, like = inputs
    out = np.zeros(like.shape, dtype=grad_value.dtype)
    axis = attrs["axis"] % like.ndim
    begin, end = _slice_bounds(attrs, like.shape[axis])
    index = [slice(None)] * like.ndim
    index[axis] = slice(begin, end)
    out[tuple(index)] = grad_value
    return [out]


register(
    OpDef(
        name="_slice_axis_backward",
        inputs=("data", "like"),
        attrs=_SLICE_ATTRS,
        infer_shape=_slice_backward_shape,
        infer_type=lambda attrs, dtypes: (dtypes, dtypes[0]),
        forward=_slice_backward_forward,
        grad=lambda args: [apply_op("slice_axis", [args.out_grads[0]], dict(args.attrs)), None],
        doc="Scatter a slice's gradient into zeros shaped like the sliced input.",
    )
)

Reshape = make_constructor(get_op("Reshape"))
reshape_like = make_constructor(get_op("reshape_like"))
expand_dims = make_constructor(get_op("expand_dims"))
transpose = make_constructor(get_op("transpose"))
Concat = make_constructor(get_op("Concat"))
SliceChannel = make_constructor(get_op("SliceChannel"))
slice_axis = make_constructor(get_op("slice_axis"))
concat = Concat
split = SliceChannel
reshape = Reshape
flatten = Flatten

__all__ = [
    "Concat",
    "Flatten",
    "Reshape",
    "SliceChannel",
    "concat",
    "expand_dims",
    "flatten",
    "reshape",
    "reshape_like",
    "slice_axis",
    "split",
    "transpose",
    "zeros_like",
]
