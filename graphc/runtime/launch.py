"""Launches: a bound kernel call, and a phase's launches compiled into one call by the
target, with the user's nodes named when a kernel fails."""

from __future__ import annotations

from dataclasses import dataclass

from graphc.backend.lowering import Kernel
from graphc.backend.target import Target
from graphc.ir.node import Node


@dataclass
class Launch:
    """One kernel call: the node it computes and its bound arguments."""

    node: Node
    kernel: Kernel
    args: tuple


class CompiledSequence:
    """A phase's launches called in order by one compiled function from the target
    (``codegen_cpu.sequence`` on the CPU).

    Should a kernel raise, the launches run again one by one from Python so that the error
    carries a note naming the user's nodes of the kernel that failed. That re-run first
    runs ``prelude`` (the forward launches, for the backward phase): a backward kernel may
    have run in place over a forward buffer it was the last to read, so re-running the
    backward alone would read its own output. Kernels only read their inputs and
    overwrite their outputs, and the arguments are never written in place, so the forward
    re-run recomputes every buffer the backward reads; outputs and gradients are left as
    the re-run leaves them (undefined after a failure, as after any failed pass)."""

    def __init__(self, target: Target, launches: list[Launch], prelude: tuple = ()) -> None:
        self.target = target
        self.launches = launches
        self.prelude = prelude
        comments = [provenance(launch.node) for launch in launches]
        kernels = [launch.kernel for launch in launches]
        self.fn, self.source = target.compile_sequence(kernels, comments)
        self.arguments = tuple(launch.args for launch in launches)

    def __call__(self, counter: int, training: bool) -> None:
        try:
            self.target.call(self.fn, self.arguments, counter, training)
        except Exception:
            for launch in self.prelude:
                call_launch(self.target, launch, counter, training)
            for launch in self.launches:
                call_launch(self.target, launch, counter, training)
            raise


def call_launch(
    target: Target, launch: Launch, counter: int, training: bool, fill: bool = True
) -> None:
    """Call one kernel from Python; an error gets a note naming its user's nodes. ``fill``:
    write the addresses the kernel calls through first (``Kernel.fill_addresses``); checking
    they are written types every argument in Python, 0.4 ms for a fused kernel with parts,
    which a caller that filled them already (``Executor.profile``, timing the kernel) skips."""
    try:
        if fill:
            launch.kernel.fill_addresses(launch.args)
        if launch.kernel.needs_counter:
            target.call(launch.kernel.fn, *launch.args, counter, training)
        else:
            target.call(launch.kernel.fn, *launch.args)
    except Exception as exc:
        inputs = ", ".join(entry.node.name for entry in launch.node.inputs)
        exc.add_note(f"in the kernel of {provenance(launch.node)}, reading {inputs}")
        raise


def provenance(node: Node) -> str:
    """The user's nodes a scheduled node computes: itself, or every node fusion replaced.

    ``fc1 (FullyConnected) at model.py:3``, or for a fused node
    ``fused(fc1, relu1): fc1 (FullyConnected) at model.py:3, relu1 (relu) at model.py:4``."""
    if node.op != "_fused":
        return f"{node.name} ({node.op}) at {node.source}"
    members = ", ".join(
        f"{member.name} ({member.op}) at {member.source}" for member in node.attrs["members"]
    )
    return f"{node.name}: {members}"
