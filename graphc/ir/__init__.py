"""The IR: nodes, symbols, the op registry, shape inference, gradients, the reference."""

from graphc.ir import ops  # noqa: F401 - registers every op
from graphc.ir.errors import (
    DTypeError,
    GradientError,
    GraphcError,
    GraphFormatError,
    ImportFormatError,
    MissingInputError,
    ShapeError,
)
from graphc.ir.evaluate import evaluate
from graphc.ir.grad import grad
from graphc.ir.gradcheck import gradcheck
from graphc.ir.graph import Graph
from graphc.ir.registry import REGISTRY, get_op
from graphc.ir.serialize import load, load_json
from graphc.ir.symbol import Group, Symbol, Variable, var
