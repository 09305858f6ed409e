"""The exception raised for a data file that exists but cannot be read as what it claims to be."""

from __future__ import annotations

from graphc.ir.errors import GraphcError


class DataFormatError(GraphcError, ValueError):
    """A data file is corrupt, truncated or of the wrong kind: the message names the file and
    what is wrong with it (a bad magic number, a size mismatch, a broken gzip stream)."""
