"""Models from and to other frameworks' formats: MXNet 1.x checkpoints (``gc.mxnet``) and
ONNX files (``gc.onnx``, whose ``onnx`` package is imported only when it is used).

The importers build graphc Symbols through the same op constructors a user calls, so an
imported graph means exactly what the registry says; they depend on ``graphc.ir`` only.
"""

from graphc.interop import mxnet, onnx

__all__ = ["mxnet", "onnx"]
