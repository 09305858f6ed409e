"""Read and write IDX files, the format of MNIST and Fashion-MNIST, raw or gzip-compressed.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the elements in C order, big-endian.
See http://yann.lecun.com/exdb/mnist/ (section "file formats").

>>> import tempfile, numpy as np
>>> path = Path(tempfile.mkdtemp()) / "labels-idx1-ubyte.gz"
>>> write_idx(path, np.array([3, 1, 4], dtype=np.uint8))
>>> read_idx(path)
array([3, 1, 4], dtype=uint8)
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from graphc.data.datasets.errors import DataFormatError

# IDX type code -> element type (big-endian, as stored).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed when its name ends in ``.gz``).

    Parameters
    ----------
    path : str or Path
        The file to read.

    Returns
    -------
    numpy.ndarray
        The elements, in native byte order, shaped by the file's dimensions.

    Raises
    ------
    DataFormatError
        The file is not IDX (bad magic number, unknown type code), its header is cut short,
        its body is not the size the header promises, or its gzip stream is broken.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "images-idx3-ubyte"
    >>> write_idx(path, np.zeros((2, 3, 4), dtype=np.uint8))
    >>> read_idx(path).shape
    (2, 3, 4)
    """
    path = Path(path)
    content = _read_bytes(path)
    dtype, dims, header_size = _parse_header(path, content)
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(content) - header_size
    if found != expected:
        shape = "x".join(str(dim) for dim in dims)
        raise DataFormatError(
            f"{path}: IDX header promises {shape} elements of {dtype.name} "
            f"({expected} bytes after the {header_size}-byte header), found {found} bytes"
            + (" (the file is truncated)" if found < expected else "")
        )
    body = np.frombuffer(content, dtype=dtype, offset=header_size).reshape(dims)
    # astype copies into native byte order and gives a writable array (frombuffer's is not).
    return body.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray, compresslevel: int = 9) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    The gzip header records no file name and a zero time stamp, so the same array always
    gives the same bytes (the bundled Fashion-MNIST subset is reproducible byte for byte).

    Parameters
    ----------
    path : str or Path
        The file to write.
    array : numpy.ndarray
        Elements of uint8, int8, int16, int32, float32 or float64, at most 255 dimensions.
    compresslevel : int
        gzip compression level, 0 to 9; ignored for raw files.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "x-idx2-float"
    >>> write_idx(path, np.eye(2, dtype=np.float32))
    >>> path.stat().st_size  # 4 magic + 2 * 4 dims + 4 * 4 elements
    28
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        allowed = ", ".join(dtype.newbyteorder("=").name for dtype in IDX_DTYPES.values())
        raise ValueError(f"{path}: IDX cannot store {array.dtype}; allowed: {allowed}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"{path}: IDX stores 1 to 255 dimensions, not {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if path.name.endswith(".gz"):
        with (
            open(path, "wb") as raw,
            gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0
            ) as compressed,
        ):
            compressed.write(header + body)
    else:
        path.write_bytes(header + body)


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when its name ends in ``.gz``."""
    content = path.read_bytes()
    if not path.name.endswith(".gz"):
        return content
    try:
        return gzip.decompress(content)
    except EOFError as error:
        raise DataFormatError(
            f"{path}: the gzip stream ends early (the file is truncated: {error})"
        ) from error
    except (gzip.BadGzipFile, zlib.error) as error:
        raise DataFormatError(f"{path}: corrupt gzip data: {error}") from error


def _parse_header(path: Path, content: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """The element type, the dimensions and the header's size in bytes."""
    if len(content) < 4:
        raise DataFormatError(
            f"{path}: {len(content)} bytes is too short for an IDX file's 4-byte magic number"
        )
    zero0, zero1, code, ndim = content[:4]
    magic = int.from_bytes(content[:4], "big")
    if zero0 != 0 or zero1 != 0 or code not in IDX_DTYPES:
        hint = " (is it gzip-compressed without a .gz name?)" if content[:2] == b"\x1f\x8b" else ""
        raise DataFormatError(
            f"{path}: bad magic number 0x{magic:08x}: an IDX file starts with two zero bytes "
            f"and a type code in {sorted(hex(key) for key in IDX_DTYPES)}{hint}"
        )
    if ndim == 0:
        raise DataFormatError(f"{path}: bad magic number 0x{magic:08x}: zero dimensions")
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise DataFormatError(
            f"{path}: the header declares {ndim} dimensions ({header_size} bytes) "
            f"but the file has only {len(content)} bytes"
        )
    dims = tuple(int(dim) for dim in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[code], dims, header_size
