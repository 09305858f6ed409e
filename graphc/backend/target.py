"""Targets: what each backend gives the runtime, looked up by the context's device.

A backend (``graphc.codegen_cpu``, ``graphc.codegen_cuda``) registers one ``Target`` when
it is imported. The runtime binds through it and imports no backend: it asks the target for
the arena, for its arrays and the copies between them and the host (``ArrayOps``), for the
compiled sequence of a phase's kernels, and to call what was compiled; the passes receive
the target's fusion capabilities as data. A context whose backend cannot run here (no
numba-cuda, no GPU) fails at bind with the name of what is missing (``Target.require``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphc.backend.lowering import Kernel
from graphc.ir.errors import BackendError
from graphc.passes.fuse import FusionCapabilities


def _copy_host(destination: np.ndarray, source) -> None:
    np.copyto(destination, np.asarray(source))


def _add_host(destination: np.ndarray, source: np.ndarray) -> None:
    destination += source


def _nonfinite_host(arrays) -> list[bool]:
    # np.sum propagates NaN and infinity and allocates nothing (it also flags a float32 sum
    # that overflows, which a step would not survive either).
    return [not math.isfinite(float(np.sum(array))) for array in arrays]


def _is_host_array(array) -> bool:
    return isinstance(array, np.ndarray) and array.flags.c_contiguous and array.flags.writeable


@dataclass(frozen=True)
class ArrayOps:
    """The arrays a target's kernels read and write, as the runtime makes and moves them.

    - ``zeros(shape, dtype)``: a new zeroed C-contiguous array where the kernels run;
    - ``copy(destination, source)``: ``destination[...] = source``, the source a host array
      or one of the target's, of the destination's shape and dtype (the caller checks);
    - ``add(destination, source)``: ``destination += source`` (``grad_req='add'``);
    - ``fill(destination, value)``;
    - ``to_host(array)``: a NumPy array with the values (a copy where the array is not one);
    - ``owns(array)``: whether ``array`` is a writeable C-contiguous array of this target,
      which ``bind`` may hand to the kernels as it is;
    - ``nonfinite(arrays)``: for each array, whether it holds a NaN or an infinity (the
      training loop's check of every gradient, in one wait for a device).

    The CPU's are NumPy's own (``HOST_ARRAYS``)."""

    zeros: Callable[[tuple, Any], Any] = np.zeros
    copy: Callable[[Any, Any], None] = _copy_host
    add: Callable[[Any, Any], None] = _add_host
    fill: Callable[[Any, float], None] = np.ndarray.fill
    to_host: Callable[[Any], np.ndarray] = np.asarray
    owns: Callable[[Any], bool] = _is_host_array
    nonfinite: Callable[[Any], list] = _nonfinite_host


HOST_ARRAYS = ArrayOps()
"""NumPy arrays in this process's memory: the CPU target's."""


def _nothing_missing(ctx) -> None:
    return None


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
      the user's own (the CPU's thread count, which its kernels partition their work by);
    - ``arrays``: how the runtime makes, fills and copies the target's arrays;
    - ``require(ctx)``: raise ImportError or RuntimeError, naming what is missing, where
      the target cannot run ``ctx`` in this process (the CUDA target without numba-cuda,
      without a GPU, or for a device it does not serve);
    - ``update_kernel(name)``: the target's kernel of the optimizer update ``name`` (MXNet's
      ``sgd_mom_update``, ...), called as the CPU's (``codegen_cpu.optimizer_updates``); None
      where an optimizer's own ``kernel`` runs (the CPU, NumPy arrays), so that a subclass
      with a kernel of its own works there."""

    name: str
    device_type: str
    fusion: FusionCapabilities
    allocate_arena: Callable[[int], Any]
    compile_sequence: Callable[[Sequence[Kernel], Sequence[str]], tuple[Callable, str]]
    call: Callable[..., Any]
    compile_training_loop: Callable[..., tuple[Callable, str]] | None = None
    bind_options: Callable[[], dict] = dict
    arrays: ArrayOps = HOST_ARRAYS
    require: Callable[[Any], None] = _nothing_missing
    update_kernel: Callable[[str], Callable] | None = None


_TARGETS: dict[str, Target] = {}


def register_target(target: Target) -> None:
    if target.device_type in _TARGETS:
        raise ValueError(f"device type {target.device_type!r} has two backends")
    _TARGETS[target.device_type] = target


def target_for(ctx) -> Target:
    """The target that runs on ``ctx`` (a ``gc.cpu()`` or ``gc.gpu(n)`` context)."""
    target = _TARGETS.get(ctx.device_type)
    if target is None:
        raise BackendError(f"bind to {ctx}: no backend serves this device type")
    try:
        target.require(ctx)
    except (ImportError, RuntimeError) as missing:
        raise BackendError(f"bind to {ctx}: {missing}") from None
    return target
