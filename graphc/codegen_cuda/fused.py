"""Fused elementwise CUDA kernels: one generated kernel computes a group of elementwise
nodes, from the same scalar expressions the CPU's fused loops use (``backend.scalar_expr``).

A grid-stride loop covers the group's iteration shape, one position per thread per pass;
at each position every member is computed into a local, rounded to its dtype as a separate
kernel would store it, and the members that leave the group are stored. When every input
a member reads has the iteration shape the arrays are read flat (``prepare`` passes 1-D
views); otherwise the flat position is unravelled over the output's shape, read at run
time so that one compiled kernel serves every batch size, and a broadcast input is read at
index 0 on its size-1 axes. A single elementwise op is lowered as a group of one.

A group led by an op the tiled GEMM computes (``gemm.GEMM_OPS``: a layer, a product, a
convolution or its data gradient) is one GEMM kernel whose store runs the members
(``lower_epilogue``); the CUDA target declares those anchors and no reductions
(``gpu_target.py``). ``one_hot_like`` checks its index as the
reference does: a kernel cannot raise, so a bad index records the first output position
that read it in a fault flag, which the launch reads back and raises from (``faults.py``).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from graphc.backend.lowering import Kernel, NodeSpec, lowering, uniform_float_dtype
from graphc.backend.scalar_expr import (
    member_operands,
    reads_at_position,
    render_expression,
)
from graphc.backend.source_cache import load_kernel
from graphc.codegen_cuda.faults import FaultFlag
from graphc.codegen_cuda.gemm import GEMM_OPS, render_tiled, tiled_launch
from graphc.codegen_cuda.target import TARGET, THREADS, Launch, blocks_for
from graphc.ir.errors import BackendError
from graphc.ir.ops.fused import INPUT, Member, member_dtypes, member_shapes
from graphc.ir.registry import REGISTRY, get_op

HEADER = "import math\n\nimport numpy as np\nfrom numba import cuda\n"
CHECKED_OPS = ("one_hot_like",)
"""Ops whose expression reports a fault (an index out of range) through the fault flag."""
CUDA_SPELLINGS = {"one_hot_at(": "one_hot_at(fault, flat, "}
"""How the CUDA kernels spell the expressions' checked helpers: with the fault flag and
the position, so that the host can say where the fault was."""


def iteration_shape(spec: NodeSpec, members, shapes) -> tuple:
    """The one output shape of the elementwise members; BackendError for anything else."""
    for member in members:
        if get_op(member.op).expr is None:
            raise BackendError(
                f"{spec.name} (_fused): the CUDA backend fuses elementwise members only, not"
                f" {member.name} ({member.op})"
            )
    found = {tuple(shape[0]) for shape in shapes}
    if len(found) != 1:
        raise BackendError(
            f"{spec.name} (_fused): elementwise members must share one shape, got {sorted(found)}"
        )
    return found.pop()


def _reads_flat(spec: NodeSpec, members, shape: tuple) -> bool:
    """Whether every member reads its inputs position by position at the iteration shape."""
    return all(reads_at_position(member, spec.in_shapes, shape) for member in members)


def _operands(spec: NodeSpec, member: Member, shape: tuple, dtype, flat: bool) -> list[str]:
    """The member's operands, read at ``flat`` in a flat loop; a 0-d input is passed as one
    element (CUDA kernels index arrays of rank >= 1)."""
    return member_operands(
        member,
        spec.in_shapes,
        shape,
        dtype,
        read_flat=(lambda k: f"in{k}[flat]") if flat else None,
        read_scalar=lambda k: f"in{k}[0]",
    )


def render_fused(spec: NodeSpec, members, shapes, dtypes) -> str:
    """Source of ``kernel(in0, ..., out0, ...[, fault])``."""
    shape = iteration_shape(spec, members, shapes) or (1,)
    flat = _reads_flat(spec, members, shape)
    checked = any(member.op in CHECKED_OPS for member in members)
    outputs = list(spec.attrs["outputs"])
    params = [f"in{k}" for k in range(len(spec.in_shapes))]
    params += [f"out{k}" for k in range(len(outputs))] + (["fault"] if checked else [])
    fastmath = bool(spec.options.get("fastmath", False))
    imports = "from graphc.codegen_cuda.scalar_functions import one_hot_at\n" if checked else ""
    lines = [
        HEADER + imports + "\n\n" + f"@cuda.jit(cache=True, fastmath={fastmath})",
        f"def kernel({', '.join(params)}):",
        "    for flat in range(cuda.grid(1), out0.size, cuda.gridsize(1)):",
    ]
    if not flat:
        lines.append("        rest = flat")
        for axis in range(len(shape) - 1, 0, -1):
            lines.append(f"        i{axis} = rest % out0.shape[{axis}]")
            lines.append(f"        rest //= out0.shape[{axis}]")
        lines.append("        i0 = rest")
    for position, member in enumerate(members):
        dtype = np.dtype(dtypes[position][0])
        operands = _operands(spec, member, shape, dtype, flat)
        expression = render_expression(member.op, member.attr_map, operands, shape, CUDA_SPELLINGS)
        lines.append(f"        v{position} = np.{dtype.name}({expression})")
    at = "[flat]" if flat else "[" + ", ".join(f"i{axis}" for axis in range(len(shape))) + "]"
    for k, (member, _) in enumerate(outputs):
        lines.append(f"        out{k}{at} = v{member}")
    return "\n".join(lines) + "\n"


@lowering(TARGET, "_fused")
def lower_fused(spec: NodeSpec) -> Kernel:
    members = spec.attrs["members"]
    shapes = member_shapes(spec.attrs, spec.in_shapes)
    dtypes = member_dtypes(spec.attrs, spec.in_dtypes)
    if members[0].op in GEMM_OPS:
        return lower_epilogue(spec, members, shapes, dtypes)
    source = render_fused(spec, members, shapes, dtypes)
    shape = iteration_shape(spec, members, shapes) or (1,)
    flat = _reads_flat(spec, members, shape)
    fault = None
    if any(member.op in CHECKED_OPS for member in members):
        fault = FaultFlag(_index_fault_message(spec, members))
    launch = Launch(
        load_kernel(source, "kernel", TARGET),
        (blocks_for(math.prod(shape)),),
        (THREADS,),
        check=fault.check if fault is not None else None,
    )

    def laid_out(array, wanted):
        if flat or not array.shape:
            return array.reshape(max(1, math.prod(wanted)))
        return array

    def prepare(inputs, outputs, workspace):
        arrays = [laid_out(array, wanted) for array, wanted in zip(inputs, spec.in_shapes)]
        arrays += [laid_out(array, shape) for array in outputs]
        return (*arrays, fault.flag) if fault is not None else tuple(arrays)

    return Kernel(
        fn=launch, name=f"cuda_{spec.name}", source=source, prepare=prepare, elementwise=True
    )


def _index_fault_message(spec: NodeSpec, members) -> str:
    """The CPU's message (``codegen_cpu.scalar_functions.one_hot_at``) and where: the first
    element of the group's output that read a bad index (the launch's note names the
    nodes)."""
    return (
        "one_hot_like: an index is not an integer in range [0, extent) (first read at output"
        " element {position} of " + f"{spec.name})"
    )


def single_op_group(spec: NodeSpec) -> NodeSpec:
    """A one-member ``_fused`` spec computing ``spec``'s elementwise op."""
    member = Member(
        op=spec.op,
        attrs=tuple(sorted(spec.attrs.items())),
        operands=tuple((INPUT, k) for k in range(len(spec.in_shapes))),
        name=spec.name,
        source="",
    )
    return NodeSpec(
        op="_fused",
        name=spec.name,
        attrs={"members": (member,), "outputs": ((0, 0),)},
        in_shapes=spec.in_shapes,
        in_dtypes=spec.in_dtypes,
        out_shapes=spec.out_shapes,
        out_dtypes=spec.out_dtypes,
        options=spec.options,
    )


def lower_elementwise(spec: NodeSpec) -> Kernel:
    """One elementwise op: a fused group of one."""
    return lower_fused(single_op_group(spec))


ELEMENTWISE_OPS = sorted(
    name for name, opdef in REGISTRY.items() if opdef.expr is not None and name != "BlockGrad"
)
lowering(TARGET, *ELEMENTWISE_OPS)(lower_elementwise)


def lower_epilogue(spec: NodeSpec, members, shapes, dtypes) -> Kernel:
    """A group led by a GEMM-computed anchor (``gemm.GEMM_OPS``): one tiled GEMM kernel whose
    store computes, at each element of the anchor's output, the anchor's value (kept in a
    register, rounded to its dtype) and then the elementwise members, and stores the
    group's outputs, so the anchor's output need not be written and read back. Its sizes are
    constants of the source (the stored arrays have the group's shape, not the GEMM's)."""
    anchor = members[0]
    positions = [value for _, value in anchor.operands]
    anchor_spec = NodeSpec(
        op=anchor.op,
        name=anchor.name,
        attrs=anchor.attr_map,
        in_shapes=tuple(spec.in_shapes[k] for k in positions),
        in_dtypes=tuple(spec.in_dtypes[k] for k in positions),
        out_shapes=tuple(tuple(shape) for shape in shapes[0]),
        out_dtypes=tuple(np.dtype(dtype) for dtype in dtypes[0]),
        options=spec.options,
    )
    dtype = uniform_float_dtype(anchor_spec)
    gemm = GEMM_OPS[anchor.op](anchor_spec)
    shape = iteration_shape(spec, members[1:], shapes[1:])
    if shape != tuple(shapes[0][0]):
        raise BackendError(
            f"{spec.name} (_fused): the epilogue's shape {shape} is not the anchor's"
        )
    lines = [*gemm.index, f"v0 = np.{dtype.name}({gemm.result})"]
    for position, member in enumerate(members[1:], start=1):
        member_dtype = np.dtype(dtypes[position][0])
        operands = _operands(spec, member, shape, member_dtype, False)
        expression = render_expression(member.op, member.attr_map, operands, shape, CUDA_SPELLINGS)
        lines.append(f"v{position} = np.{member_dtype.name}({expression})")
    index = ", ".join(f"i{axis}" for axis in range(len(shape)))
    outputs = list(spec.attrs["outputs"])
    lines += [f"out{k}[{index}] = v{member}" for k, (member, _) in enumerate(outputs)]
    fault = None
    if any(member.op in CHECKED_OPS for member in members):
        fault = FaultFlag(_index_fault_message(spec, members))
        flat = "0"
        for axis, extent in enumerate(shape):
            flat = f"({flat}) * {extent} + i{axis}"
        lines.insert(len(gemm.index), f"flat = {flat}")
    params = [*gemm.operand_params, *(f"in{k}" for k in range(len(spec.in_shapes)))]
    params += [f"out{k}" for k in range(len(outputs))] + (["fault"] if fault else [])
    form = replace(
        gemm.form,
        params=", ".join(params),
        sizes=(str(gemm.rows), str(gemm.cols), str(gemm.depth)),
        batches=str(gemm.batch),
        store=("\n" + " " * 24).join(lines),
        prelude=gemm.form.prelude
        + ("\nfrom graphc.codegen_cuda.scalar_functions import one_hot_at\n" if fault else ""),
    )
    fastmath = bool(spec.options.get("fastmath", False))
    launch = tiled_launch(
        dtype, form, gemm.rows, gemm.cols, batch=gemm.batch,
        check=fault.check if fault else None, fastmath=fastmath,
    )  # fmt: skip

    def prepare(inputs, outputs_, workspace):
        arrays = [*gemm.operands(tuple(inputs[k] for k in positions))]
        arrays += [array if array.shape else array.reshape(1) for array in inputs]
        arrays += list(outputs_)
        return (*arrays, fault.flag) if fault is not None else tuple(arrays)

    source = render_tiled(dtype, form, fastmath=fastmath)
    return Kernel(fn=launch, name=f"cuda_{spec.name}", source=source, prepare=prepare)
