"""Data-movement ops: reshapes are views (no kernel runs), the rest are generated copies.

Concat, splits and slices copy along one axis with slice assignments; transpose copies with
a loop nest over the output in order, so writes stream and reads gather.
"""

from __future__ import annotations

from graphc.backend.lowering import Kernel, NodeSpec, lowering
from graphc.backend.source_cache import load_kernel
from graphc.codegen_cpu.target import TARGET
from graphc.ir.ops.shape_ops import _slice_bounds, _transpose_axes

HEADER = "import numba\n\n\n@numba.njit(cache=True)\n"


@lowering(TARGET, "Reshape", "reshape_like", "expand_dims")
def lower_view(spec: NodeSpec) -> Kernel:
    return Kernel(fn=None, view_of=0, name=f"view_{spec.op}")


def _slice_text(ndim: int, axis: int, begin: int, end: int) -> str:
    parts = [":"] * ndim
    parts[axis] = f"{begin}:{end}"
    return "[" + ", ".join(parts) + "]"


def _load(name: str, body: list[str], params: list[str]) -> Kernel:
    source = (
        HEADER
        + f"def kernel({', '.join(params)}):\n"
        + "\n".join("    " + line for line in body)
        + "\n"
    )
    return Kernel(fn=load_kernel(source), name=name, source=source)


@lowering(TARGET, "transpose")
def lower_transpose(spec: NodeSpec) -> Kernel:
    ndim = len(spec.in_shapes[0])
    axes = _transpose_axes(spec.attrs, ndim)
    body, indent = [], ""
    for axis in range(ndim):
        body.append(f"{indent}for i{axis} in range(out0.shape[{axis}]):")
        indent += "    "
    # out[i0, ..] = in[j..] where input axis axes[k] is output axis k.
    source_index = [""] * ndim
    for out_axis, in_axis in enumerate(axes):
        source_index[in_axis] = f"i{out_axis}"
    target = ", ".join(f"i{a}" for a in range(ndim))
    body.append(f"{indent}out0[{target}] = in0[{', '.join(source_index)}]")
    if ndim == 0:
        body = ["out0[()] = in0[()]"]
    return _load("transpose", body, ["in0", "out0"])


@lowering(TARGET, "Concat")
def lower_concat(spec: NodeSpec) -> Kernel:
    out_shape = spec.out_shapes[0]
    axis = spec.attrs["dim"] % len(out_shape)
    body, offset = [], 0
    for index, shape in enumerate(spec.in_shapes):
        body.append(
            f"out0{_slice_text(len(out_shape), axis, offset, offset + shape[axis])} = in{index}"
        )
        offset += shape[axis]
    params = [f"in{i}" for i in range(len(spec.in_shapes))] + ["out0"]
    return _load("concat", body, params)


def _split(spec: NodeSpec, axis: int, sizes: list[int], squeeze: bool, n_inputs: int) -> Kernel:
    ndim = len(spec.in_shapes[0])
    body, offset = [], 0
    for index, size in enumerate(sizes):
        region = _slice_text(ndim, axis, offset, offset + size)
        if squeeze:
            region = "[" + ", ".join(":" if a != axis else str(offset) for a in range(ndim)) + "]"
        body.append(f"out{index}[...] = in0{region}")
        offset += size
    params = [f"in{i}" for i in range(n_inputs)] + [f"out{i}" for i in range(len(sizes))]
    return _load("split", body, params)


@lowering(TARGET, "_split_like")
def lower_split_like(spec: NodeSpec) -> Kernel:
    axis = spec.attrs["axis"] % len(spec.in_shapes[0])
    sizes = [shape[axis] for shape in spec.in_shapes[1:]]
    return _split(spec, axis, sizes, False, len(spec.in_shapes))


@lowering(TARGET, "SliceChannel")
def lower_slice_channel(spec: NodeSpec) -> Kernel:
    axis = spec.attrs["axis"] % len(spec.in_shapes[0])
    parts = spec.attrs["num_outputs"]
    size = spec.in_shapes[0][axis] // parts
    return _split(spec, axis, [size] * parts, spec.attrs["squeeze_axis"], 1)


@lowering(TARGET, "slice_axis")
def lower_slice_axis(spec: NodeSpec) -> Kernel:
    shape = spec.in_shapes[0]
    axis = spec.attrs["axis"] % len(shape)
    begin, end = _slice_bounds(spec.attrs, shape[axis])
    return _load(
        "slice_axis",
        [f"out0[...] = in0{_slice_text(len(shape), axis, begin, end)}"],
        ["in0", "out0"],
    )


@lowering(TARGET, "_slice_axis_backward")
def lower_slice_axis_backward(spec: NodeSpec) -> Kernel:
    shape = spec.out_shapes[0]
    axis = spec.attrs["axis"] % len(shape)
    begin, end = _slice_bounds(spec.attrs, shape[axis])
    body = ["out0[...] = 0", f"out0{_slice_text(len(shape), axis, begin, end)} = in0"]
    return _load("slice_axis_backward", body, ["in0", "in1", "out0"])
