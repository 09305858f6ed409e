"""Generated kernel sequences: a bound graph's kernels called in schedule order from one
compiled Numba function, so a forward or backward pass is one call from Python.

The kernels are the ones the executor lowered (fused where the passes fused); the sequence
only calls them, each on its bound argument tuple (views of the arena, bound
constants), in order. Its source is readable and printable (``GRAPHC_DUMP=sequence`` prints it
at bind), one line per kernel call with a comment naming the user's nodes it computes; the
source without those comments is what is compiled and cached on disk, like every kernel.

Calling convention: ``run(arguments, counter, training)`` where ``arguments`` holds one
tuple per kernel (exactly ``Kernel.arguments(...)``), and the kernels that need them
(Dropout: ``Kernel.needs_counter``) take the Dropout counter and the training flag last.

The generated function calls each kernel through its address (``native_call``), passed in
``entries``, so compiling it compiles none of the kernels again; its source names no
kernel, and one compiled function serves every graph whose kernels take the same argument
types in the same order. :class:`NativeSequence` finds the entries at its first call, so
a phase that never runs (the backward pass of a predict-only executor) compiles nothing.
A kernel whose arguments the generated code spells out itself (the training loop reads a
batch in place) gets them as a tuple of the bound arguments' types.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from graphc.backend.lowering import Kernel
from graphc.backend.source_cache import load_kernel
from graphc.codegen_cpu.compile_log import compile_logged
from graphc.codegen_cpu.compile_workers import compile_ahead
from graphc.codegen_cpu.native_call import PLACEHOLDER, argument_types, call_rebinding, entry
from graphc.ir.errors import BackendError

HEADER = "import numba\n\nfrom graphc.codegen_cpu.native_call import call_native, call_native_counted\n\n"


def kernel_reference(function) -> tuple[str, str]:
    """The module and attribute under which a compiled kernel can be imported again."""
    python_function = getattr(function, "py_func", function)
    module, name = python_function.__module__, python_function.__name__
    if getattr(sys.modules.get(module), name, None) is not function:
        raise BackendError(f"kernel {module}.{name} cannot be called from generated code")
    return module, name


def call_lines(
    kernels: Sequence[Kernel],
    comments: Sequence[str],
    arguments: str,
    counter: str,
    indent: str,
    replaced: dict[int, tuple[tuple, dict[tuple, str]]] | None = None,
    entries: str = "entries",
    after: dict[int, list[str]] | None = None,
    frames: tuple[str, dict[int, tuple[int, str]]] | None = None,
) -> list[str]:
    """One call per kernel on ``arguments[i]`` through ``entries[i]`` (``native_call``),
    ``counter`` (the spelling of the Dropout counter and the training flag, such as
    ``"counter, training"``) last where needed; ``comments`` (one per kernel), when given,
    go above the calls with the kernel's name. ``replaced`` maps a kernel's index to (the
    nesting of its arguments, as ``_structure`` in ``training.compiled_loop`` gives it, and
    {path: expression}): those arguments are spelled out as a tuple, the argument at each
    path (indices into nested tuples) taking the expression instead of the bound array
    (``{bound}`` in an expression is the bound array's own spelling). An expression must
    have the bound array's Numba type (a C-contiguous, writable, aligned view of its
    shape), since the entry was compiled for the bound arguments; the call's type check
    raises RuntimeError otherwise. ``after`` maps a kernel's index to lines that follow
    its call. ``frames``: (the spelling of a frame set's address, its slots), as
    ``frames.FrameSet`` has them: a kernel with a slot is called on its frame instead."""
    lines = []
    for index, kernel in enumerate(kernels):
        extra = f", {counter}" if kernel.needs_counter else ""
        if comments is not None:
            module, attribute = kernel_reference(kernel.fn)
            lines.append(f"{indent}# {comments[index]}: {module}.{attribute}")
        if frames is not None and index in frames[1]:
            # a frame holds the bound arguments: never a kernel whose arguments are spelled
            assert not (replaced and index in replaced), f"kernel {index} framed and spelled"
            offset, text = frames[1][index]
            call, spelled = "call_frame", f"{frames[0]} + {offset}, {text!r}"
        else:
            call, spelled = "call_native", f"{arguments}[{index}]"
            if replaced and index in replaced:
                structure, expressions = replaced[index]
                spelled = f"({_spell(structure, spelled, expressions, ())},)"
        call += "_counted" if kernel.needs_counter else ""
        lines.append(f"{indent}{call}({entries}[{index}], {spelled}{extra})")
        lines += (after or {}).get(index, [])
    return lines


def native_entries(
    kernels: Sequence[Kernel], arguments: Sequence[tuple], labels: Sequence[str] | None = None
) -> tuple:
    """The ``entries`` of ``call_lines``: each kernel's (address, check) for its argument
    tuple, compiled or loaded now (``labels``, one per kernel: what ``compile_log`` calls
    them)."""
    labels = labels if labels is not None else [""] * len(kernels)
    return tuple(
        entry(kernel.fn, args, kernel.needs_counter, label)
        for kernel, args, label in zip(kernels, arguments, labels, strict=True)
    )


def find_entries(function, leading: tuple, groups, rest: tuple, label: str) -> tuple:
    """The entries of every ``(kernels, arguments, labels)`` of ``groups``, one tuple per
    group, and ``function`` compiled for its first call, ``function(*leading with the
    entries, *rest)``: what is cold is compiled on every core first (``compile_ahead``),
    then each is found in memory or loaded, as ``compile_log`` records."""
    jobs = compile_jobs(function, leading, [group[:2] for group in groups], rest)
    compile_ahead(jobs)
    compile_logged(*jobs[0], label)
    for kernels, arguments, *_ in groups:
        for kernel, args in zip(kernels, arguments, strict=True):
            kernel.fill_addresses(args)
    return tuple(native_entries(*group) for group in groups)


def compile_jobs(function, leading: tuple, groups, rest: tuple) -> list[tuple]:
    """What the first call of ``function(*entries, *groups' arguments, *rest)`` compiles,
    as ``compile_workers.compile_ahead`` takes it: ``function`` itself (``leading`` are
    the values before ``rest``, the entries stood for by placeholders), then each kernel of
    each ``(kernels, arguments)`` of ``groups`` for its argument tuple, and what a kernel
    calls through an address in its arguments (``Kernel.address_calls``)."""
    jobs = [(function, argument_types((*leading, *rest)))]
    for kernels, arguments in groups:
        for kernel, args in zip(kernels, arguments, strict=True):
            jobs.append((kernel.fn, argument_types(args, kernel.needs_counter)))
            calls = kernel.address_calls(args) if kernel.address_calls is not None else ()
            jobs += [(call.function, argument_types(call.arguments)) for call in calls]
    return jobs


def placeholders(kernels: Sequence[Kernel]) -> tuple:
    """Entries of ``kernels`` as their types are known before they are found."""
    return tuple(PLACEHOLDER for _ in kernels)


class NativeSequence:
    """``run(arguments, counter, training)``: the compiled ``run`` with its kernels' entries,
    found at the first call (and again should other argument tuples come); what is not
    compiled yet is compiled on every core first (``compile_workers``)."""

    def __init__(self, function, kernels: Sequence[Kernel], labels: Sequence[str]) -> None:
        self.function = function
        self.kernels = tuple(kernels)
        self.labels = tuple(labels)
        self._bound = None
        self._entries = ()

    def __call__(self, arguments, counter, training):
        def entries(again: bool) -> tuple:
            if again or arguments is not self._bound:
                leading = (placeholders(self.kernels), arguments)
                groups = [(self.kernels, arguments, self.labels)]
                rest = (int(counter), bool(training))
                (self._entries,) = find_entries(
                    self.function, leading, groups, rest, "the kernel sequence"
                )
                self._bound = arguments
            return (self._entries,)

        # int and bool: the types the kernels' entries are compiled for (native_call.EXTRAS)
        return call_rebinding(self.function, entries, arguments, int(counter), bool(training))


def _spell(structure: tuple, base: str, expressions: dict[tuple, str], path: tuple) -> str:
    """The arguments ``base`` holds, spelled one by one, replacing those ``expressions``
    names; a nested tuple holding a replaced argument is spelled as a tuple literal."""
    parts = []
    for position, child in enumerate(structure):
        here = (*path, position)
        bound = f"{base}[{position}]"
        if here in expressions:
            parts.append(expressions[here].format(bound=bound))
        elif child is not None and any(key[: len(here)] == here for key in expressions):
            parts.append(f"({_spell(child, bound, expressions, here)},)")
        else:
            parts.append(bound)
    return ", ".join(parts)


def render_sequence(kernels: Sequence[Kernel], comments: Sequence[str] | None) -> str:
    """Source of ``run(entries, arguments, counter, training)`` calling ``kernels`` in
    order."""
    lines = [HEADER]
    lines.append("@numba.njit(cache=True)")
    lines.append("def run(entries, arguments, counter, training):")
    lines += call_lines(kernels, comments, "arguments", "counter, training", "    ")
    if not kernels:
        lines.append("    pass")
    return "\n".join(lines) + "\n"


def compile_sequence(kernels: Sequence[Kernel], comments: Sequence[str]):
    """The compiled ``run`` of ``render_sequence`` and its source with the comments.

    What is compiled and cached is the source without the comments: node names differ
    between two binds of the same model (they are numbered as graphs are built), the
    calls do not, and a second bind must find the first one's machine code."""
    source = render_sequence(kernels, comments)
    if "sequence" in os.environ.get("GRAPHC_DUMP", "").split(","):
        print(source, file=sys.stderr)
    function = load_kernel(render_sequence(kernels, None), "run")
    return NativeSequence(function, kernels, comments), source
