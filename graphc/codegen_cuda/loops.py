"""The grid-stride kernel most CUDA lowerings are: generated source that visits ``flat`` =
0 .. ``size`` - 1 (one position per thread per pass over the grid) and runs a body there,
and its configured launch."""

from __future__ import annotations

from collections.abc import Sequence

from graphc.backend.source_cache import load_kernel
from graphc.codegen_cuda.target import TARGET, THREADS, Launch, blocks_for

HEADER = (
    "import math\n\nimport numpy as np\nfrom numba import cuda, float32, float64, int64, uint64\n"
)


def grid_stride_source(
    params: Sequence[str], size: str, body: Sequence[str], prelude: str = ""
) -> str:
    """``kernel(*params)`` running ``body`` (lines, indented by the loop) at every ``flat``
    below ``size`` (an expression over the parameters, read at run time)."""
    lines = [
        HEADER + prelude + "\n\n@cuda.jit(cache=True)",
        f"def kernel({', '.join(params)}):",
        f"    for flat in range(cuda.grid(1), {size}, cuda.gridsize(1)):",
    ]
    lines += [f"        {line}" for line in body]
    return "\n".join(lines) + "\n"


def grid_stride_launch(source: str, elements: int, check=None) -> Launch:
    """The launch of ``source``'s kernel with enough blocks for ``elements`` positions."""
    return Launch(
        load_kernel(source, "kernel", TARGET), (blocks_for(elements),), (THREADS,), check=check
    )


def unravel(names: Sequence[str], extents: Sequence[str], flat: str = "flat") -> list[str]:
    """Lines setting ``names`` (outermost first) to ``flat``'s indices over ``extents``
    (one per name; the outermost is not read)."""
    lines = [f"rest = {flat}"]
    for name, extent in zip(reversed(names[1:]), reversed(extents[1:])):
        lines += [f"{name} = rest % {extent}", f"rest //= {extent}"]
    lines.append(f"{names[0]} = rest")
    return lines
