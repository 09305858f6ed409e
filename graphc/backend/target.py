"""Targets: what each backend gives the runtime, looked up by the context's device.

A backend (``graphc.codegen_cpu``; ``graphc.codegen_cuda``, whose lowerings exist but which
registers no target yet) registers one ``Target`` when
it is imported. The runtime binds through it and imports no backend: it asks the target for
the arena, for the compiled sequence of a phase's kernels, and to call what was compiled;
the passes receive the target's fusion capabilities as data. A context whose backend is
not installed fails at bind with the name of what is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graphc.backend.lowering import Kernel
from graphc.ir.errors import BackendError
from graphc.passes.fuse import FusionCapabilities


@dataclass(frozen=True)
class Target:
    """One backend's contract with the runtime.

    - ``allocate_arena(nbytes)``: one 64-byte aligned block of bytes that the memory plan
      slices (``array[offset:offset + n].view(dtype).reshape(shape)`` must give a view);
    - ``compile_sequence(kernels, comments)``: ``(run, source)``, where
      ``run(arguments, counter)`` calls every kernel on its argument tuple in order;
    - ``call(function, *args)``: call a compiled function (the target may repair a damaged
      cache entry and call again);
    - ``compile_training_loop(...)``: the compiled training loop (``Model.fit``'s chunks);
      None where the target has none yet;
    - ``fusion``: what its kernels can fuse, handed to ``passes.fuse``;
    - ``bind_options()``: options the target adds to every node it lowers at bind, under
      the user's own (the CPU's thread count, which its kernels partition their work by)."""

    name: str
    device_type: str
    fusion: FusionCapabilities
    allocate_arena: Callable[[int], Any]
    compile_sequence: Callable[[Sequence[Kernel], Sequence[str]], tuple[Callable, str]]
    call: Callable[..., Any]
    compile_training_loop: Callable[..., tuple[Callable, str]] | None = None
    bind_options: Callable[[], dict] = dict


_TARGETS: dict[str, Target] = {}

_MISSING = {
    "gpu": "graphc's CUDA backend does not bind yet: its kernels (graphc.codegen_cuda) exist and"
    " are tested under Numba's CUDA simulator, but the runtime binds host arrays only (issue"
    " [cuda], in progress); bind to gc.cpu()",
}
"""What to tell a user whose context names a device no installed backend serves."""


def register_target(target: Target) -> None:
    if target.device_type in _TARGETS:
        raise ValueError(f"device type {target.device_type!r} has two backends")
    _TARGETS[target.device_type] = target


def target_for(ctx) -> Target:
    """The target that runs on ``ctx`` (a ``gc.cpu()`` or ``gc.gpu(n)`` context)."""
    target = _TARGETS.get(ctx.device_type)
    if target is None:
        reason = _MISSING.get(ctx.device_type, "no backend serves this device type")
        raise BackendError(f"bind to {ctx}: {reason}")
    return target
