"""The optimization pipeline: a list of passes per level, run in order.

A pass is a plain function ``pass_(symbol, shapes, forward_outputs, capabilities) -> Symbol``:
it returns a new symbol over the graph's outputs (same number, same order, same values) and
never changes its input. ``shapes`` are the input shapes the caller knows; a pass that needs
more shapes than it can infer skips what it cannot prove. ``forward_outputs`` says that the
first that many outputs are the forward pass (the rest gradients), for passes that keep the
two apart. ``capabilities`` are what the target's kernels can fuse (declared by each
backend through ``graphc.backend``; every fusion the IR can express when none is named).

Scheduling, liveness, in-place decisions and the memory plan come after: they work on the
lowered kernels' needs (workspace, views, in-place capability) rather than on the graph, so
the runtime runs them at bind (``graphc.passes.liveness`` and ``graphc.passes.memory_plan``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from graphc.ir.symbol import Symbol
from graphc.passes.dump import pass_dumper
from graphc.passes.fuse import EVERY_FUSION, FusionCapabilities, fuse
from graphc.passes.simplify import simplify

Pass = Callable[..., Symbol]
Dump = Callable[[str, Symbol, Symbol], None]

LEVEL_PASSES: dict[int, list[Pass]] = {
    0: [],
    1: [simplify],
    # Level 2, the default; fusion runs after simplification so that it groups the fewest,
    # already-cleaned nodes.
    2: [simplify, fuse],
}
"""The passes of each optimization level (``-O0``, ``-O1``, ``-O2``), in the order they run."""


def optimize(
    symbol: Symbol,
    level: int = 2,
    shapes: Mapping[str, tuple] | None = None,
    dump: Dump | None = None,
    forward_outputs: int | None = None,
    capabilities: FusionCapabilities = EVERY_FUSION,
) -> Symbol:
    """The optimized graph of ``symbol``: the passes of ``level`` applied in order.

    Parameters
    ----------
    symbol : Symbol
        The graph, as a symbol over its outputs (forward and gradient outputs together, so
        that they share work).
    level : int
        0 (no pass), 1 (simplification) or 2 (everything; the default).
    shapes : dict, optional
        Known input shapes by name; rules that need shapes are skipped without them.
    dump : callable, optional
        Called as ``dump(pass_name, before, after)`` after each pass (see
        ``graphc.passes.dump.pass_dumper`` for text and DOT files of every pass, also
        turned on by ``GRAPHC_DUMP=passes``, ``graphc.passes.check`` for an IR
        checker with the same signature).
    forward_outputs : int, optional
        The first that many outputs are the forward pass; fusion then never mixes forward
        and gradient nodes in one kernel.
    capabilities : FusionCapabilities, optional
        What the target can fuse (``graphc.backend.target_for(gc.cpu()).fusion``); by default
        every fusion the fused op can express.

    Returns
    -------
    Symbol
        A new symbol with the same outputs in the same order; ``symbol`` is unchanged.

    >>> import graphc as gc
    >>> x = gc.Variable("x")
    >>> gc.optimize(gc.exp(x) * 1.0, level=1).node.op
    'exp'
    """
    if level not in LEVEL_PASSES:
        raise ValueError(f"optimize: level must be one of {sorted(LEVEL_PASSES)}, not {level!r}")
    if dump is None and "passes" in os.environ.get("GRAPHC_DUMP", "").split(","):
        dump = pass_dumper(os.environ.get("GRAPHC_DUMP_DIR", "graphc-dump"), shapes)
    for optimization in LEVEL_PASSES[level]:
        before = symbol
        symbol = optimization(symbol, shapes, forward_outputs, capabilities)
        if dump is not None:
            dump(optimization.__name__, before, symbol)
    return symbol
