"""MXNet's NDArray list files (``.params``), read with NumPy alone.

The layout is the one ``NDArray::Save`` writes (src/ndarray/ndarray.cc, MXNet 1.x), little
endian::

    uint64 0x112 (the list magic)   uint64 reserved (0)
    uint64 count, then count arrays:
        uint32 array magic: 0xF993FAC9 (V2, MXNet 1.x) or 0xF993FACA (V3, 1.x under NumPy
               shape semantics); 0xF993FAC8 (V1, MXNet 0.x) has no storage type
        int32  storage type (V2, V3): 0 is dense; sparse storage is refused
        shape: int32 ndim, then ndim int64 sizes (V1: uint32 ndim); an empty array is
               ndim -1 (V3, and V2 from MXNet 1.5) or 0 (V2 before 1.5), nothing after it
        int32  device type, int32 device id (where the array lived; ignored)
        int32  type flag (0 float32, 1 float64, 2 float16, 3 uint8, 4 int32, 5 int8,
               6 int64, 7 bool)
        the elements, C order
    uint64 count of names (0 or the array count), then each: uint64 length, UTF-8 bytes

Every length is checked against what is left of the file before it is read, so a
truncated or damaged file is an :class:`~graphc.ir.errors.ImportFormatError` naming the
file, the array and the offset, never a crash or a huge allocation.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from graphc.ir.errors import ImportFormatError

LIST_MAGIC = 0x112
ARRAY_MAGICS = {0xF993FAC8: 1, 0xF993FAC9: 2, 0xF993FACA: 3}
TYPE_FLAGS = {
    0: "float32",
    1: "float64",
    2: "float16",
    3: "uint8",
    4: "int32",
    5: "int8",
    6: "int64",
    7: "bool",
    12: "bfloat16",
}
SUPPORTED_DTYPES = ("float32", "float64")
"""What graphc computes in; an array of another dtype is refused, never converted."""
_STORAGE = {0: "dense", 1: "row_sparse", 2: "csr"}


class _Reader:
    def __init__(self, data: bytes, path: str) -> None:
        self.data = data
        self.path = path
        self.offset = 0

    def fail(self, what: str) -> ImportFormatError:
        return ImportFormatError(f"{self.path}: {what} (at byte {self.offset})")

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.offset + size > len(self.data):
            raise self.fail(
                f"truncated: {what} needs {size} bytes, {len(self.data) - self.offset} are left"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))[0]


def read_ndarray_list(path: str | Path) -> dict[str, np.ndarray]:
    """The named arrays of an MXNet ``.params`` file (``mx.nd.load``'s dict), in file order.

    Raises ImportFormatError for anything malformed or unsupported, naming the file."""
    path = str(path)
    with open(path, "rb") as handle:
        reader = _Reader(handle.read(), path)
    magic = reader.unpack("Q", "the list magic")
    if magic != LIST_MAGIC:
        raise ImportFormatError(
            f"{path}: not an MXNet NDArray file (magic {magic:#x}, expected {LIST_MAGIC:#x})"
        )
    reader.unpack("Q", "the reserved word")
    count = reader.unpack("Q", "the array count")
    # Each array takes at least 16 bytes: a count past that cannot be in the file.
    if count > len(reader.data) // 16:
        raise reader.fail(f"the file claims {count} arrays, more than its size can hold")
    arrays = [_read_array(reader, index) for index in range(count)]
    names_count = reader.unpack("Q", "the name count")
    if names_count != count:
        raise reader.fail(
            f"{names_count} names for {count} arrays (a checkpoint names every array)"
        )
    names = []
    for index in range(names_count):
        length = reader.unpack("Q", f"the length of name {index}")
        raw = reader.take(length, f"name {index}")
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise reader.fail(f"name {index} is not UTF-8") from None
    if reader.offset != len(reader.data):
        raise reader.fail(f"{len(reader.data) - reader.offset} unexpected bytes after the names")
    if len(set(names)) != len(names):
        raise ImportFormatError(f"{path}: a name appears twice")
    result = {}
    for name, array in zip(names, arrays):
        if array is None:
            raise ImportFormatError(f"{path}: {name!r} is an empty (none) NDArray")
        result[name] = array
    return result


def _read_array(reader: _Reader, index: int) -> np.ndarray | None:
    what = f"array {index}"
    magic = reader.unpack("I", f"{what}'s magic")
    version = ARRAY_MAGICS.get(magic)
    if version is None:
        raise reader.fail(
            f"{what} has magic {magic:#x}; MXNet 1.x writes 0xf993fac9 or 0xf993faca "
            "(a file of MXNet before 0.9, or not a .params file)"
        )
    if version >= 2:
        storage = reader.unpack("i", f"{what}'s storage type")
        if storage != 0:
            kind = _STORAGE.get(storage, f"type {storage}")
            raise reader.fail(f"{what} has {kind} storage; graphc reads dense arrays only")
    ndim = reader.unpack("I" if version == 1 else "i", f"{what}'s ndim")
    if ndim == -1 or version == 2 and ndim == 0:
        return None  # an empty NDArray: nothing follows
    if ndim < 0 or ndim > 32:
        raise reader.fail(f"{what} has {ndim} dimensions")
    shape = tuple(reader.unpack("q", f"{what}'s size {axis}") for axis in range(ndim))
    if any(size < 0 for size in shape):
        raise reader.fail(f"{what} has a negative size in shape {shape}")
    reader.unpack("i", f"{what}'s device type")
    reader.unpack("i", f"{what}'s device id")
    flag = reader.unpack("i", f"{what}'s type flag")
    dtype = TYPE_FLAGS.get(flag)
    if dtype is None:
        raise reader.fail(f"{what} has an unknown type flag {flag}")
    if dtype not in SUPPORTED_DTYPES:
        raise reader.fail(f"{what} is {dtype}; graphc computes in {' and '.join(SUPPORTED_DTYPES)}")
    itemsize = np.dtype(dtype).itemsize
    size = int(np.prod(shape, dtype=object)) if shape else 1
    raw = reader.take(size * itemsize, f"{what}'s {size} {dtype} elements of shape {shape}")
    return np.frombuffer(raw, dtype="<" + np.dtype(dtype).str[1:]).reshape(shape).copy()
