"""A phase's CUDA launches in schedule order: the function the runtime calls for a forward
or backward pass, and its readable listing.

Each launch is configured once, at bind (``target.Launch``), and the arguments are the
bound device arrays, so a pass is one Python call per kernel and no allocation. Launches go
to the default stream in order, so a kernel sees what the ones before it wrote; the host
waits only where a kernel checks its data (``faults.py``) and when a result is copied back.
"""

from __future__ import annotations

from collections.abc import Sequence

from graphc.backend.lowering import Kernel


def compile_sequence(kernels: Sequence[Kernel], comments: Sequence[str]):
    """``(run, listing)``: ``run(arguments, counter, training)`` launches ``kernels[i]`` on
    ``arguments[i]``, with the Dropout counter and the training flag where it needs them."""
    plan = tuple((kernel.fn, kernel.needs_counter) for kernel in kernels)

    def run(arguments: tuple, counter: int, training: bool) -> None:
        for (launch, counted), args in zip(plan, arguments, strict=True):
            if counted:
                launch(*args, counter, bool(training))
            else:
                launch(*args)

    return run, listing(kernels, comments)


def listing(kernels: Sequence[Kernel], comments: Sequence[str]) -> str:
    """One line per launch, under a comment naming the user's nodes it computes."""
    lines = ["# CUDA launches of one pass, in order"]
    for kernel, comment in zip(kernels, comments):
        launch = kernel.fn
        lines.append(f"# {comment}")
        lines.append(f"{kernel.name}[grid={launch.grid}, block={launch.block}](...)")
    return "\n".join(lines) + "\n"


def call(function, *args):
    """Call a launch or a compiled sequence (the CPU's ``call`` may repair its disk cache;
    numba-cuda's is its own)."""
    return function(*args)
