"""Drawing graphs: ``gc.viz.to_dot(sym)`` returns Graphviz DOT text (render it with
``dot -Tpng``; graphc does not require Graphviz) and ``to_text`` the text listing."""

from graphc.passes.dump import to_dot, to_text

__all__ = ["to_dot", "to_text"]
