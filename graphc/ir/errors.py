"""Exceptions raised by graphc, one class per kind of fault."""

from __future__ import annotations


class GraphcError(Exception):
    """Base class of graphc's own errors."""


class ShapeError(GraphcError, ValueError):
    """Shapes that cannot meet: raised at the node where they meet, naming it and its inputs."""


class DTypeError(GraphcError, TypeError):
    """Element types that cannot meet at a node."""


class MissingInputError(GraphcError, ValueError):
    """A graph was asked to run or infer without some of the names it needs."""


class GraphFormatError(GraphcError, ValueError):
    """A serialized graph (JSON) is malformed, names an unknown op or has bad attributes."""


class ImportFormatError(GraphFormatError):
    """A file of another framework (an MXNet checkpoint) is malformed, or holds what graphc
    lacks (an op, a dtype, sparse storage): the message names the file and the place."""


class GradientError(GraphcError, ValueError):
    """A gradient was asked of something that has none (an op without a gradient rule)."""


class RuleViolation(Exception):
    """Raised by an op's shape or type rule with a short reason; the inference engine turns it
    into a ShapeError/DTypeError that names the node, its op, the user's file:line and shapes."""


class ShapeUnknown(Exception):
    """Raised by a shape rule that needs an input shape nobody has inferred yet."""


class BackendError(GraphcError, RuntimeError):
    """A backend cannot run a graph (an op it has no kernel for, a bad binding)."""
