"""Data movement on the GPU: reshapes are views of their input's device buffer (no kernel
runs); concatenation, splits, slices and transposes are grid-stride copies, one thread per
element of the whole array, so each output element is written once."""

from __future__ import annotations

import math

from graphc.backend.lowering import Kernel, NodeSpec, lowering
from graphc.codegen_cuda.loops import grid_stride_launch, grid_stride_source, unravel
from graphc.codegen_cuda.target import TARGET
from graphc.ir.ops.shape_ops import _slice_bounds, _transpose_axes


@lowering(TARGET, "Reshape", "reshape_like", "expand_dims")
def lower_view(spec: NodeSpec) -> Kernel:
    return Kernel(fn=None, view_of=0, name=f"view_{spec.op}")


def _axis_view(array, shape: tuple, axis: int):
    """``array`` as (outer, shape[axis], inner) around ``axis``."""
    outer = math.prod(shape[:axis])
    return array.reshape(max(1, outer), shape[axis], max(1, math.prod(shape[axis + 1 :])))


def _pieces_kernel(name: str, spec: NodeSpec, axis: int, pieces, gather: bool) -> Kernel:
    """Copies between one whole array and pieces of it along ``axis``, all as (outer, extent,
    inner) views: ``pieces`` are (array slot, offset along the axis, extent). ``gather``: the
    output is whole and each piece an input (Concat; a slice's gradient, zero elsewhere);
    otherwise the input is whole and each piece an output (the splits, slice_axis). One
    thread per element of the whole array; the piece is found by its offset."""
    whole = spec.out_shapes[0] if gather else spec.in_shapes[0]
    inputs = len(spec.in_shapes)
    outputs = len(spec.out_shapes)
    params = [f"in{k}" for k in range(inputs)] + [f"out{k}" for k in range(outputs)]
    whole_name = "out0" if gather else "in0"
    body = unravel(["o", "a", "i"], [f"{whole_name}.shape[{axis}]" for axis in range(3)])
    keyword = "if"
    for slot, offset, extent in pieces:
        piece = f"in{slot}" if gather else f"out{slot}"
        body.append(f"{keyword} a >= {offset} and a < {offset + extent}:")
        if gather:
            body.append(f"    out0[o, a, i] = {piece}[o, a - {offset}, i]")
        else:
            body.append(f"    {piece}[o, a - {offset}, i] = in0[o, a, i]")
        keyword = "elif"
    if gather:
        body += ["else:", "    out0[o, a, i] = 0"] if keyword == "elif" else ["out0[o, a, i] = 0"]
    source = grid_stride_source(params, f"{whole_name}.size", body)
    launch = grid_stride_launch(source, math.prod(whole))

    def prepare(inputs_, outputs_, workspace):
        arrays = [_axis_view(array, shape, axis) for array, shape in zip(inputs_, spec.in_shapes)]
        for array, shape in zip(outputs_, spec.out_shapes):
            if not gather and len(shape) < len(whole):  # a squeezed piece: its axis is 1
                shape = shape[:axis] + (1,) + shape[axis:]
            arrays.append(_axis_view(array, shape, axis))
        return tuple(arrays)

    return Kernel(fn=launch, name=f"cuda_{name}", source=source, prepare=prepare)


@lowering(TARGET, "Concat")
def lower_concat(spec: NodeSpec) -> Kernel:
    axis = spec.attrs["dim"] % len(spec.out_shapes[0])
    pieces, offset = [], 0
    for slot, shape in enumerate(spec.in_shapes):
        pieces.append((slot, offset, shape[axis]))
        offset += shape[axis]
    return _pieces_kernel("concat", spec, axis, pieces, gather=True)


@lowering(TARGET, "_split_like")
def lower_split_like(spec: NodeSpec) -> Kernel:
    axis = spec.attrs["axis"] % len(spec.in_shapes[0])
    pieces, offset = [], 0
    for slot, shape in enumerate(spec.in_shapes[1:]):
        pieces.append((slot, offset, shape[axis]))
        offset += shape[axis]
    return _pieces_kernel("split_like", spec, axis, pieces, gather=False)


@lowering(TARGET, "SliceChannel")
def lower_slice_channel(spec: NodeSpec) -> Kernel:
    axis = spec.attrs["axis"] % len(spec.in_shapes[0])
    size = spec.in_shapes[0][axis] // spec.attrs["num_outputs"]
    pieces = [(slot, slot * size, size) for slot in range(spec.attrs["num_outputs"])]
    return _pieces_kernel("slice_channel", spec, axis, pieces, gather=False)


@lowering(TARGET, "slice_axis")
def lower_slice_axis(spec: NodeSpec) -> Kernel:
    shape = spec.in_shapes[0]
    axis = spec.attrs["axis"] % len(shape)
    begin, end = _slice_bounds(spec.attrs, shape[axis])
    return _pieces_kernel("slice_axis", spec, axis, [(0, begin, end - begin)], gather=False)


@lowering(TARGET, "_slice_axis_backward")
def lower_slice_axis_backward(spec: NodeSpec) -> Kernel:
    """Inputs (dy, like): dy in [begin, end) along the axis, zeros elsewhere."""
    shape = spec.out_shapes[0]
    axis = spec.attrs["axis"] % len(shape)
    begin, end = _slice_bounds(spec.attrs, shape[axis])
    return _pieces_kernel("slice_axis_backward", spec, axis, [(0, begin, end - begin)], True)


@lowering(TARGET, "transpose")
def lower_transpose(spec: NodeSpec) -> Kernel:
    """One thread per output element, reading the input element it comes from."""
    in_shape, out_shape = spec.in_shapes[0], spec.out_shapes[0]
    ndim = len(in_shape)
    if ndim == 0:
        return Kernel(fn=None, view_of=0, name="view_transpose")
    axes = _transpose_axes(spec.attrs, ndim)
    names = [f"i{axis}" for axis in range(ndim)]
    body = unravel(names, [f"out0.shape[{axis}]" for axis in range(ndim)])
    source_index = [""] * ndim
    for out_axis, in_axis in enumerate(axes):
        source_index[in_axis] = names[out_axis]
    body.append(f"out0[{', '.join(names)}] = in0[{', '.join(source_index)}]")
    source = grid_stride_source(["in0", "out0"], "out0.size", body)
    return Kernel(
        fn=grid_stride_launch(source, math.prod(out_shape)), name="cuda_transpose", source=source
    )
