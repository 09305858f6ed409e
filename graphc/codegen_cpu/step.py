"""Generated step functions: a bound graph's kernels called in schedule order from one
compiled Numba function, so a forward or backward pass is one call from Python.

The kernels are the ones the executor lowered (fused where the passes fused); the step
function only calls them, each on its bound argument tuple (views of the arena, bound
constants), in order. Its source is readable and printable (``GRAPHC_DUMP=step`` prints it
at bind), one line per kernel call with a comment naming the user's nodes it computes; the
source without those comments is what is compiled and cached on disk, like every kernel.

Calling convention: ``run(arguments, step_value)`` where ``arguments`` holds one tuple per
kernel (exactly ``Kernel.arguments(...)``) and ``step_value`` is the counter that
step-dependent kernels (Dropout) take last.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from graphc.codegen_cpu.lowering import Kernel, kernel_reference
from graphc.runtime.cache import load_kernel

HEADER = "import numba\n\nfrom graphc.runtime.cache import kernel_function\n\n"


def kernel_names(kernels: Sequence[Kernel]) -> tuple[list[str], dict]:
    """Import lines for the distinct kernel functions and each function's local name."""
    lines, names = [], {}
    for kernel in kernels:
        if kernel.fn in names:
            continue
        module, attribute = kernel_reference(kernel.fn)
        names[kernel.fn] = f"k{len(names)}"
        lines.append(f"{names[kernel.fn]} = kernel_function({module!r}, {attribute!r})")
    return lines, names


def call_lines(
    kernels: Sequence[Kernel],
    comments: Sequence[str],
    names: dict,
    arguments: str,
    step: str,
    indent: str,
    replaced: dict[int, tuple[tuple, dict[tuple, str]]] | None = None,
) -> list[str]:
    """One call per kernel on ``arguments[i]``, the step counter last where it is needed;
    ``comments`` (one per kernel), when given, go above the calls. ``replaced`` maps a
    kernel's index to (the nesting of its arguments, as ``_structure`` in
    ``runtime.compiled_fit`` gives it, and {path: expression}): those arguments are spelled
    out, the argument at each path (indices into nested tuples) taking the expression
    instead of the bound array; ``{bound}`` in an expression is the bound array's own
    spelling."""
    lines = []
    for index, kernel in enumerate(kernels):
        counter = f", {step}" if kernel.needs_step else ""
        if comments is not None:
            lines.append(f"{indent}# {comments[index]}")
        if replaced and index in replaced:
            structure, expressions = replaced[index]
            spelled = _spell(structure, f"{arguments}[{index}]", expressions, ())
            lines.append(f"{indent}{names[kernel.fn]}({spelled}{counter})")
        else:
            lines.append(f"{indent}{names[kernel.fn]}(*{arguments}[{index}]{counter})")
    return lines


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
    """Source of ``run(arguments, step_value)`` calling ``kernels`` in order."""
    imports, names = kernel_names(kernels)
    lines = [HEADER + "\n".join(imports) + "\n\n"]
    lines.append("@numba.njit(cache=True)")
    lines.append("def run(arguments, step_value):")
    lines += call_lines(kernels, comments, names, "arguments", "step_value", "    ")
    if not kernels:
        lines.append("    pass")
    return "\n".join(lines) + "\n"


def compile_sequence(kernels: Sequence[Kernel], comments: Sequence[str]):
    """The compiled ``run`` of ``render_sequence`` and its source with the comments.

    What is compiled and cached is the source without the comments: node names differ
    between two binds of the same model (they are numbered as graphs are built), the
    calls do not, and a second bind must find the first one's machine code."""
    source = render_sequence(kernels, comments)
    if "step" in os.environ.get("GRAPHC_DUMP", "").split(","):
        print(source, file=sys.stderr)
    return load_kernel(render_sequence(kernels, None), "run"), source
