"""Models from and to other frameworks' formats: MXNet 1.x checkpoints (``gc.mxnet``).

The importers build graphc Symbols through the same op constructors a user calls, so an
imported graph means exactly what the registry says; they depend on ``graphc.ir`` only.
"""

from graphc.interop import mxnet

__all__ = ["mxnet"]
