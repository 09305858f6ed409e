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
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from graphc.backend.lowering import Kernel
from graphc.backend.source_cache import load_kernel
from graphc.ir.errors import BackendError

HEADER = "import numba\n\nfrom graphc.backend.source_cache import kernel_function\n\n"


def kernel_reference(function) -> tuple[str, str]:
    """The module and attribute under which a compiled kernel can be imported again."""
    python_function = getattr(function, "py_func", function)
    module, name = python_function.__module__, python_function.__name__
    if getattr(sys.modules.get(module), name, None) is not function:
        raise BackendError(f"kernel {module}.{name} cannot be called from generated code")
    return module, name


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
    counter: str,
    indent: str,
    replaced: dict[int, tuple[tuple, dict[tuple, str]]] | None = None,
) -> list[str]:
    """One call per kernel on ``arguments[i]``, ``counter`` (the spelling of the Dropout
    counter and the training flag, such as ``"counter, training"``) last where needed;
    ``comments`` (one per kernel), when given, go above the calls. ``replaced`` maps a
    kernel's index to (the nesting of its arguments, as ``_structure`` in
    ``training.compiled_loop`` gives it, and {path: expression}): those arguments are spelled
    out, the argument at each path (indices into nested tuples) taking the expression
    instead of the bound array; ``{bound}`` in an expression is the bound array's own
    spelling."""
    lines = []
    for index, kernel in enumerate(kernels):
        extra = f", {counter}" if kernel.needs_counter else ""
        if comments is not None:
            lines.append(f"{indent}# {comments[index]}")
        if replaced and index in replaced:
            structure, expressions = replaced[index]
            spelled = _spell(structure, f"{arguments}[{index}]", expressions, ())
            lines.append(f"{indent}{names[kernel.fn]}({spelled}{extra})")
        else:
            lines.append(f"{indent}{names[kernel.fn]}(*{arguments}[{index}]{extra})")
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
    """Source of ``run(arguments, counter, training)`` calling ``kernels`` in order."""
    imports, names = kernel_names(kernels)
    lines = [HEADER + "\n".join(imports) + "\n\n"]
    lines.append("@numba.njit(cache=True)")
    lines.append("def run(arguments, counter, training):")
    lines += call_lines(kernels, comments, names, "arguments", "counter, training", "    ")
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
    return load_kernel(render_sequence(kernels, None), "run"), source
