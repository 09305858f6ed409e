"""The kernel of a fused node: one generated Numba function for the whole group.

The source is built from the members' scalar expressions (the same ones single-op kernels
use), so a fused group computes what its nodes computed one by one:

1. the anchor, if any, runs first: its own compiled kernel (a matrix product, a
   convolution, pooling) called through its address, from the cell ``anchor_entry`` among
   the fused kernel's arguments (``Kernel.address_calls``; filled once the anchor is
   compiled or loaded, ``native_call.AddressCall``), into its output buffer;
2. one loop over the iteration shape computes every elementwise member at each position
   into locals, each rounded to its dtype exactly as a separate kernel would store it,
   then stores the members that leave the group;
3. reductions accumulate member values in float64 accumulators inside that loop and are
   written once after it.

All inputs at a position are read before any output at that position is written, so a
group without an anchor may run in place (the runtime lets an output share the buffer of a
dying input of the same shape).
"""

from __future__ import annotations

import math

import numpy as np

from graphc.backend.lowering import Kernel, NodeSpec, lower, lowering
from graphc.backend.scalar_expr import (
    full_index,
    member_operands,
    reads_at_position,
    render_expression,
)
from graphc.backend.source_cache import load_kernel
from graphc.codegen_cpu.elementwise import (
    HEADER,
    PARALLEL_ELEMENTS,
    decorator,
    flat_loop_lines,
    flat_parts,
)
from graphc.codegen_cpu.native_call import AddressCall, entry_cell
from graphc.codegen_cpu.parts import parts_call, parts_cell
from graphc.codegen_cpu.scalar_functions import CPU_SPELLINGS
from graphc.codegen_cpu.sequence import kernel_reference
from graphc.codegen_cpu.target import TARGET
from graphc.codegen_cpu.threads import parallel_parts
from graphc.ir.errors import BackendError
from graphc.ir.ops.fused import (
    MEMBER,
    REDUCTIONS,
    Member,
    member_dtypes,
    member_shapes,
)
from graphc.ir.ops.reduce import reduced_axes
from graphc.ir.registry import get_op


def _iteration_shape(spec: NodeSpec, members, shapes) -> tuple:
    elementwise = [
        shapes[index][0]
        for index, member in enumerate(members)
        if get_op(member.op).expr is not None
    ]
    if not elementwise or any(tuple(shape) != tuple(elementwise[0]) for shape in elementwise):
        raise BackendError(
            f"{spec.name} (_fused): elementwise members must share one shape, got {elementwise}"
        )
    return tuple(elementwise[0])


def _anchor_spec(spec: NodeSpec, member: Member, shapes, dtypes) -> NodeSpec:
    positions = [value for kind, value in member.operands]
    return NodeSpec(
        op=member.op,
        name=member.name,
        attrs=member.attr_map,
        in_shapes=tuple(spec.in_shapes[k] for k in positions),
        in_dtypes=tuple(spec.in_dtypes[k] for k in positions),
        out_shapes=tuple(tuple(shape) for shape in shapes),
        out_dtypes=tuple(np.dtype(dtype) for dtype in dtypes),
        options=spec.options,
    )


def _reduction_index(member: Member, source_shape: tuple, out_shape: tuple) -> tuple[str, int]:
    """The flat accumulator index of a reduction at the loop position, and the loop depth
    below which every axis is reduced (1 + the innermost kept axis; 0 if none is kept)."""
    if member.op == "sum":
        axes = reduced_axes(member.attr_map["axis"], len(source_shape))
        kept = [axis for axis in range(len(source_shape)) if axis not in axes]
        parts = [(f"i{axis}", source_shape[axis]) for axis in kept]
    else:  # sum_to_like: read the target like a broadcast input
        offset = len(source_shape) - len(out_shape)
        parts = []
        for axis, dim in enumerate(out_shape):
            loop_axis = offset + axis
            same = dim != 1 or source_shape[loop_axis] == 1
            parts.append((f"i{loop_axis}" if same else "0", dim))
    text = "0"
    depth = 0
    for variable, dim in parts:
        text = variable if text == "0" else f"({text}) * {dim} + {variable}"
        if variable != "0":
            depth = max(depth, int(variable[1:]) + 1)
    return text, depth


# A partial sum over the innermost axis is a chain of dependent float64 additions that LLVM
# may not reorder (fastmath is off), so its loop ran one element at a time. Where the
# innermost extent is in this range, the loop adds into a row of float64 lanes instead, one
# per innermost position, and the row is summed once per partial: the loop vectorizes. The
# order of the additions is fixed by the shapes, so the bits do not change from run to run
# (LeNet's pool1 gradient with the tanh gradient and the bias gradient, one core: 0.77 ms
# as one chain, 0.33 ms in lanes).
LANE_EXTENTS = (4, 4096)


def lane_stride(lanes: int) -> int:
    """Float64s from one part's row of lanes to the next: the row rounded up to a 64-byte
    line, and one line more, so that two threads never write one line (LeNet's pool2
    gradient, rows of 8 lanes packed side by side: 1.63 ms against 0.62 without lanes)."""
    return -(-lanes // 8) * 8 + 8 if lanes else 0


def _reduction_layout(member: Member, shape: tuple, member_shape: tuple) -> tuple[str, int, int]:
    """(accumulator index, depth, lanes) of a reduction in the loop over ``shape``: the
    flat index and depth of ``_reduction_index`` (a single sum has index 0 at depth 0), and
    the length of its row of lanes (``LANE_EXTENTS``; 0 for none)."""
    index, depth = _reduction_index(member, shape, member_shape)
    if math.prod(member_shape) == 1:
        index, depth = "0", 0  # a local for the whole loop, not a store per element
    low, high = LANE_EXTENTS
    partial = depth < len(shape) and low <= shape[-1] <= high
    return index, depth, shape[-1] if partial else 0


def anchor_output_slot(spec: NodeSpec, members, shapes, dtypes) -> int | None:
    """The output the anchor writes its output 0 into: its own when it leaves the group,
    else the first stored output of the same shape and dtype (the loop then rewrites each
    element where it read it), else None (a workspace buffer).

    Reading and writing through one array, not two aliases of it, is what lets LLVM
    vectorize the epilogue: with two pointers to the same memory its runtime overlap check
    fails and the scalar loop runs (LeNet's conv1 + tanh measured 5.1 ms that way against
    1.7 ms for the two kernels apart)."""
    outputs = list(spec.attrs["outputs"])
    for k, (member, index) in enumerate(outputs):
        if member == 0 and index == 0:
            return k
    for k, (member, _) in enumerate(outputs):
        if (
            member != 0
            and members[member].op not in REDUCTIONS
            and tuple(spec.out_shapes[k]) == tuple(shapes[0][0])
            and np.dtype(spec.out_dtypes[k]) == np.dtype(dtypes[0][0])
        ):
            return k
    return None


def _is_flat(spec: NodeSpec, members, shape, reductions) -> bool:
    return (
        not reductions
        and len(shape) != 0
        and all(reads_at_position(member, spec.in_shapes, shape) for member in members)
    )


def loop_parts(spec: NodeSpec, members, shapes, anchored: bool) -> int:
    """How many threads' parts the fused loop splits into (``threads.py``).

    A flat loop splits its positions. Nested loops split their outermost axis (a bias
    gradient sums over the batch): each part sums its rows into its own accumulators,
    which are added in part order after the loop, so a count always gives the same bits
    and two counts differ only by that reassociation of float64 partial sums."""
    shape = _iteration_shape(spec, members, shapes)
    _, reductions = _output_targets(spec, members, shapes, anchored)
    elements = math.prod(shape)
    if _is_flat(spec, members, shape, reductions):
        return flat_parts(spec.options, elements)
    if len(shape) == 0:
        return 1
    # A reduction that keeps the outer axis splits too: each entry then has one owning
    # part, and adding the other parts' zeros changes no bits (an accumulator that starts
    # at 0.0 never holds -0.0).
    return parallel_parts(spec.options, shape[0], elements, PARALLEL_ELEMENTS)


def render_fused(
    spec: NodeSpec, members, shapes, dtypes, anchor: tuple | None, parts: int = 1
) -> str:
    """The kernel source. ``anchor`` is (module, name) of the anchor's compiled kernel, or
    None when the group has no anchor; ``parts`` comes from ``loop_parts``. Parameters:
    ``anchor_entry``, ``anchor_args`` and ``anchor_out`` (where the anchor's address is, its
    argument tuple and the array its output 0 is in) when anchored, then the inputs, the
    outputs and one float64 accumulator per reduction (``parts`` times its output's size,
    then ``parts`` rows of lanes where it has them, ``_reduction_lines``)."""
    shape = _iteration_shape(spec, members, shapes)
    stores, reductions = _output_targets(spec, members, shapes, anchor is not None)
    flat = _is_flat(spec, members, shape, reductions)
    anchor_array = None
    if anchor is not None:
        slot = anchor_output_slot(spec, members, shapes, dtypes)
        anchor_array = "anchor_out" if slot is None else f"out{slot}"
    header, params = _kernel_header(spec, anchor, anchor_array, reductions, parts)
    lines = [header]
    if anchor is not None:  # through its address: this compile does not include the anchor's
        lines.append(f"    # the anchor: {anchor[0]}.{anchor[1]}")
        lines.append("    call_native((anchor_entry[0], anchor_entry[1]), anchor_args)")
    lines += [f"    {accumulator}[:] = 0.0" for _, accumulator, _ in reductions.values()]
    body = _member_lines(spec, members, shape, dtypes, flat, anchor_array)
    for member, names in stores.items():
        body.extend(f"{_element(name, shape, flat)} = v{member}" for name in names)
    sums, opening, closing, lanes = _reduction_lines(
        spec, members, shapes, shape, reductions, parts
    )
    body += sums
    if flat:
        loop = _flat_loop(spec, shape, stores, anchor_array, body, parts)
    else:
        batch = _batch_array(spec, members, shapes, shape, stores, reductions, anchor_array)
        loop = [f"    n0 = {batch}.shape[0]"] if batch is not None else []
        loop += [f"    {line}" for line in lanes]
        loop += _nested_loops(shape, body, opening, closing, parts, batch is not None)
    part_function = []
    if parts > 1:
        # The loop is the part function's, run over the parts by the shared parallel loop
        # (``codegen_cpu.parts``): a prange here made Numba compile a parallel function of
        # its own for every fused kernel (0.5-0.7 s of a cold LeNet start each).
        fastmath = bool(spec.options.get("fastmath", False))
        part_function = [
            "",
            "",
            decorator(fastmath) + "def kernel_part(frame, part):",
            f"    {', '.join(params)} = frame_arguments(frame)",
            *loop,
        ]
        loop = [
            f"    frame = part_frame(parts_entry, ({', '.join(params)},))",
            f"    run_parts(parts_entry, frame, np.int64({parts}))",
        ]
    lines += loop
    for output, accumulator, size in reductions.values():
        lines.append(f"    flat_{output} = {output}.reshape({size})")
        lines.append(f"    for k in range({size}):")
        if parts == 1:
            lines.append(f"        flat_{output}[k] = {accumulator}[k]")
            continue
        lines.append(f"        total = {accumulator}[k]")
        lines.append(f"        for p in range(1, {parts}):")
        lines.append(f"            total += {accumulator}[p * {size} + k]")
        lines.append(f"        flat_{output}[k] = total")
    return "\n".join(lines + part_function) + "\n"


def _batch_array(spec: NodeSpec, members, shapes, shape, stores, reductions, anchor_array):
    """An array of the iteration shape whose leading extent the nested loops read at run
    time (``n0``), so that one compiled kernel serves every batch size; None where the
    source depends on that extent anyway (a reduction that keeps the leading axis has
    accumulators of its size, and an extent of 1 broadcasts differently)."""
    if len(shape) == 0 or shape[0] == 1:
        return None
    for member in reductions:
        index, _ = _reduction_index(members[member], shape, tuple(shapes[member][0]))
        if "i0" in index.replace("(", " ").replace(")", " ").split():
            return None
    candidates = [anchor_array] if anchor_array is not None else []
    candidates += [name for names in stores.values() for name in names]
    candidates += [f"in{k}" for k, s in enumerate(spec.in_shapes) if tuple(s) == shape]
    return candidates[0] if candidates else None


def _output_targets(spec: NodeSpec, members, shapes, anchored: bool) -> tuple[dict, dict]:
    """Where the loop puts each member that leaves the group: ``stores`` maps a member to
    the outputs it is stored into, ``reductions`` a reduction member to (its output, its
    accumulator, its size). An anchor's outputs are neither: it writes them itself."""
    stores: dict[int, list[str]] = {}
    reductions: dict[int, tuple[str, str, int]] = {}
    for position, (member, _) in enumerate(spec.attrs["outputs"]):
        if anchored and member == 0:
            continue
        if members[member].op in REDUCTIONS:
            size = int(np.prod(shapes[member][0], dtype=np.int64))
            reductions[member] = (f"out{position}", f"acc{len(reductions)}", size)
        else:
            stores.setdefault(member, []).append(f"out{position}")
    return stores, reductions


def _kernel_header(
    spec: NodeSpec, anchor: tuple | None, anchor_array, reductions, parts: int
) -> tuple[str, list[str]]:
    """The module header with the ``def kernel(...):`` line, and the kernel's parameters
    (with several parts, the last is the cell of its part function, ``parts_entry``)."""
    params = ["anchor_entry", "anchor_args"] if anchor is not None else []
    params += ["anchor_out"] if anchor_array == "anchor_out" else []
    params += [f"in{k}" for k in range(len(spec.in_shapes))]
    params += [f"out{k}" for k in range(len(spec.attrs["outputs"]))]
    params += [accumulator for _, accumulator, _ in reductions.values()]
    header = HEADER
    if anchor is not None:
        header += "from graphc.codegen_cpu.native_call import call_native\n"
    if parts > 1:
        params.append("parts_entry")
        header += "from graphc.codegen_cpu.parts import frame_arguments, part_frame, run_parts\n"
    header += "\n\n" if anchor is not None or parts > 1 else ""
    fastmath = bool(spec.options.get("fastmath", False))
    return header + decorator(fastmath) + f"def kernel({', '.join(params)}):", params


def _element(array: str, shape: tuple, flat: bool) -> str:
    """``array`` at the loop position: through its flat view in a flat loop."""
    return f"flat_{array}[i]" if flat else f"{array}{full_index(shape)}"


def _member_lines(spec: NodeSpec, members, shape, dtypes, flat: bool, anchor_array) -> list:
    """``v<k> = ...`` for every member at the loop position: the anchor's value read back
    from ``anchor_array``, each elementwise member rounded to its dtype."""
    body = []
    for position, member in enumerate(members):
        if anchor_array is not None and position == 0:
            body.append(f"v0 = {_element(anchor_array, shape, flat)}")
            continue
        if member.op in REDUCTIONS:
            continue
        dtype = np.dtype(dtypes[position][0])
        read_flat = (lambda k: f"flat_in{k}[i]") if flat else None
        operands = member_operands(member, spec.in_shapes, shape, dtype, read_flat)
        expression = render_expression(member.op, member.attr_map, operands, shape, CPU_SPELLINGS)
        body.append(f"v{position} = np.{dtype.name}({expression})")
    return body


def _reduction_lines(spec: NodeSpec, members, shapes, shape, reductions, parts: int) -> tuple:
    """``(body, opening, closing, lanes)``: the loop body's additions of the reduced
    members, by loop depth the lines that start and finish each partial sum around that
    loop, and the lines that find each reduction's row of lanes before the loops. With
    several parts, each part adds into its own ``size`` accumulators (``loop_parts``), and
    its lanes follow all of those, one row per part, ``lane_stride`` apart.

    A reduction whose innermost axes are all reduced sums them in a local (a register), or
    in its row of lanes (``LANE_EXTENTS``), and adds that to its accumulator once per outer
    position: the bias gradient of a convolution (N, C, H, W -> C) would otherwise load and
    store acc[c] per element, which measured 4.7 ms against 2.1 ms for the unfused kernels
    on LeNet's conv1."""
    body: list[str] = []
    opening: dict[int, list[str]] = {}
    closing: dict[int, list[str]] = {}
    rows: list[str] = []
    for number, (member, (_, accumulator, size)) in enumerate(reductions.items()):
        kind, source = members[member].operands[0]
        if kind != MEMBER:
            raise BackendError(
                f"{spec.name} (_fused): reduction {members[member].name} must read a member"
            )
        index, depth, lanes = _reduction_layout(members[member], shape, tuple(shapes[member][0]))
        if parts > 1:
            index = f"part * {size} + {index}"
        if depth == len(shape):
            body.append(f"{accumulator}[{index}] += v{source}")
            continue
        partial, lane = f"partial{number}", f"lane{number}"
        if not lanes:
            opening.setdefault(depth, []).append(f"{partial} = 0.0")
            body.append(f"{partial} += v{source}")
            closing.setdefault(depth, []).append(f"{accumulator}[{index}] += {partial}")
            continue
        start = f"{parts * size} + part * {lane_stride(lanes)}" if parts > 1 else f"{size}"
        rows.append(f"{lane} = {accumulator}[{start}:{start} + {lanes}]")
        opening.setdefault(depth, []).extend([f"for j in range({lanes}):", f"    {lane}[j] = 0.0"])
        body.append(f"{lane}[i{len(shape) - 1}] += v{source}")
        closing.setdefault(depth, []).extend(
            [
                f"{partial} = 0.0",
                f"for j in range({lanes}):",
                f"    {partial} += {lane}[j]",
                f"{accumulator}[{index}] += {partial}",
            ]
        )
    return body, opening, closing, rows


def _flat_loop(
    spec: NodeSpec, shape: tuple, stores, anchor_array, body: list, parts: int
) -> list[str]:
    """One loop over the flat views of the inputs, the stored outputs and the anchor's
    output array, around ``body``; with more than one of ``parts``, over the range of the
    part function's ``part`` (positions are independent: no reductions in a flat loop)."""
    inputs = [f"in{k}" for k in range(len(spec.in_shapes))]
    arrays = inputs + [name for names in stores.values() for name in names]
    if anchor_array is not None and anchor_array not in arrays:
        arrays = [anchor_array, *arrays]
    lines = [f"    flat_{array} = {array}.ravel()" for array in arrays]
    # The length is read at run time from an array of the iteration shape (an output, or
    # the anchor's), so that one compiled kernel serves every batch size.
    sized = [anchor_array] if anchor_array is not None else []
    sized += [name for names in stores.values() for name in names]
    elements = f"flat_{sized[0]}.size" if sized else str(int(np.prod(shape)))
    loop, indent = flat_loop_lines(elements, parts, by_part=True)
    return lines + loop + [indent + line for line in body]


def _nested_loops(
    shape: tuple,
    body: list[str],
    opening: dict,
    closing: dict,
    parts: int = 1,
    batch_at_run_time: bool = False,
) -> list[str]:
    """Loops over ``shape`` around ``body``; ``opening[d]`` and ``closing[d]`` lines go just
    before and just after the loop over axis ``d`` (at its indentation). With several
    parts, the outermost axis runs over the range of the part function's ``part`` only.
    With ``batch_at_run_time`` the outermost extent is the variable ``n0``."""
    lines: list[str] = []
    outer = "    "
    extents = [str(dim) for dim in shape]
    if batch_at_run_time:
        extents[0] = "n0"
    if parts > 1:  # this part's share of the outermost axis (the part function's ``part``)
        lines += [
            f"    first = part * {extents[0]} // {parts}",
            f"    last = (part + 1) * {extents[0]} // {parts}",
        ]
    for depth in range(len(shape)):
        indent = outer + "    " * depth
        lines += [indent + line for line in opening.get(depth, [])]
        bounds = "first, last" if parts > 1 and depth == 0 else extents[depth]
        lines.append(f"{indent}for i{depth} in range({bounds}):")
    innermost = outer + "    " * len(shape)
    lines += [innermost + line for line in body]
    for depth in reversed(range(len(shape))):
        indent = outer + "    " * depth
        lines += [indent + line for line in closing.get(depth, [])]
    return lines


def _anchor_of(members) -> Member | None:
    first = members[0]
    if get_op(first.op).expr is None and first.op not in REDUCTIONS:
        return first
    return None


@lowering(TARGET, "_fused")
def lower_fused(spec: NodeSpec) -> Kernel:
    members = spec.attrs["members"]
    outputs = list(spec.attrs["outputs"])
    shapes = member_shapes(spec.attrs, spec.in_shapes)
    dtypes = member_dtypes(spec.attrs, spec.in_dtypes)
    anchor = _anchor_of(members)
    anchor_kernel = None
    reference = None
    if anchor is not None:
        anchor_kernel = lower(_anchor_spec(spec, anchor, shapes[0], dtypes[0]), TARGET)
        if anchor_kernel.view_of is not None or anchor_kernel.needs_counter:
            raise BackendError(f"{spec.name} (_fused): {anchor.op} cannot anchor a fused kernel")
        reference = kernel_reference(anchor_kernel.fn)
    parts = loop_parts(spec, members, shapes, anchor is not None)
    source = render_fused(spec, members, shapes, dtypes, reference, parts)
    plan = _ArgumentPlan(spec, outputs, members, shapes, dtypes, anchor_kernel, parts)
    function = load_kernel(source)
    prepare, address_calls = plan.prepare, plan.address_calls if anchor is not None else None
    if parts > 1:
        part_function = function.py_func.__globals__["kernel_part"]

        def prepare(inputs, outs, workspace):
            return (*plan.prepare(inputs, outs, workspace), parts_cell())

        def address_calls(arguments):
            calls = plan.address_calls(arguments) if anchor is not None else []
            return [*calls, parts_call(arguments[-1], part_function, arguments)]

    return Kernel(
        fn=function,
        workspace=plan.workspace,
        name=spec.name,
        source=source,
        prepare=prepare,
        elementwise=anchor is None,  # an anchor writes its output before the loop reads
        address_calls=address_calls,
    )


class _ArgumentPlan:
    """The workspace a fused kernel needs and how the planned arrays become its arguments."""

    def __init__(self, spec, outputs, members, shapes, dtypes, anchor_kernel, parts) -> None:
        self.workspace: tuple = ()
        slots: list = []
        anchor_targets: list = []  # per anchor output: ("out", k) or ("ws", slot)
        anchor_inputs: list[int] = []
        if anchor_kernel is not None:
            anchor_inputs = [value for _, value in members[0].operands]
            exported = {index: k for k, (member, index) in enumerate(outputs) if member == 0}
            target = anchor_output_slot(spec, members, shapes, dtypes)
            for index, shape in enumerate(shapes[0]):
                if index in exported:
                    anchor_targets.append(("out", exported[index]))
                elif index == 0 and target is not None:
                    anchor_targets.append(("out", target))
                else:
                    anchor_targets.append(("ws", len(slots)))
                    slots.append((tuple(shape), np.dtype(dtypes[0][index])))
            anchor_workspace = list(range(len(slots), len(slots) + len(anchor_kernel.workspace)))
            slots.extend(anchor_kernel.workspace)
        reduction_slots = []
        shape = _iteration_shape(spec, members, shapes)
        for k, (member, _) in enumerate(outputs):
            if members[member].op in REDUCTIONS and not (anchor_kernel is not None and member == 0):
                size = int(np.prod(spec.out_shapes[k], dtype=np.int64))
                _, _, lanes = _reduction_layout(members[member], shape, tuple(shapes[member][0]))
                reduction_slots.append(len(slots))
                slots.append(((parts * (size + lane_stride(lanes)),), np.dtype(np.float64)))
        self.workspace = tuple(slots)

        def prepare(inputs: tuple, outs: tuple, workspace: tuple) -> tuple:
            head: tuple = ()
            if anchor_kernel is not None:
                arrays = [
                    outs[where] if kind == "out" else workspace[where]
                    for kind, where in anchor_targets
                ]
                arguments = anchor_kernel.arguments(
                    tuple(inputs[k] for k in anchor_inputs),
                    tuple(arrays),
                    tuple(workspace[slot] for slot in anchor_workspace),
                    resolve=False,  # filled with this kernel's own (``address_calls``)
                )
                cell = entry_cell()
                head = (cell, arguments) if target is not None else (cell, arguments, arrays[0])
            return (*head, *inputs, *outs, *(workspace[slot] for slot in reduction_slots))

        def address_calls(arguments: tuple) -> list[AddressCall]:
            """The anchor, called through the entry in the first argument, and what the
            anchor calls through addresses in its own arguments."""
            own = anchor_kernel.address_calls
            nested = own(arguments[1]) if own is not None else []
            return [AddressCall(arguments[0], anchor_kernel.fn, arguments[1]), *nested]

        self.prepare = prepare
        self.address_calls = address_calls
