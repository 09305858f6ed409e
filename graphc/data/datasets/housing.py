"""Boston Housing (Harrison & Rubinfeld 1978): 506 districts, 13 features and the median home
value, the data set of Knet's linear-regression example. Ships with graphc as
``data/housing.csv`` (provenance in ``data/PROVENANCE.md``).

>>> features, targets = housing()
>>> features.shape, targets.shape
((506, 13), (506,))
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from graphc.data.datasets.errors import DataFormatError

HOUSING_CSV = Path(__file__).resolve().parent / "bundled" / "housing.csv"

# The header of housing.csv; the last column is the regression target.
HOUSING_COLUMNS = (
    "crim",
    "zn",
    "indus",
    "chas",
    "nox",
    "rm",
    "age",
    "dis",
    "rad",
    "tax",
    "ptratio",
    "b",
    "lstat",
    "medv",
)


def standardized(features: np.ndarray) -> np.ndarray:
    """Each feature column at zero mean and unit (population) standard deviation, float32:
    Housing as Knet's LinReg benchmark, ``graphc train --data housing`` and ``graphc bench``
    read it.

    >>> features, _ = housing()
    >>> scaled = standardized(features)
    >>> bool(abs(scaled.mean(axis=0)).max() < 1e-5), bool(abs(scaled.std(axis=0) - 1).max() < 1e-5)
    (True, True)
    """
    features = np.asarray(features, dtype=np.float64)
    return ((features - features.mean(axis=0)) / features.std(axis=0)).astype(np.float32)


def housing(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The Boston Housing data: features and the median home value ``medv``.

    Parameters
    ----------
    path : str or Path, optional
        A CSV file with a header row naming the columns of ``HOUSING_COLUMNS`` in that
        order; default the copy shipped with graphc.

    Returns
    -------
    features : numpy.ndarray
        float32 of shape (N, 13), unscaled, columns ``HOUSING_COLUMNS[:-1]`` (``chas`` is 0/1).
    targets : numpy.ndarray
        float32 of shape (N,): ``medv``, the median home value in $1000s.

    Raises
    ------
    DataFormatError
        The header is not ``HOUSING_COLUMNS``, or a row has the wrong number of fields or a
        field that is not a number (the message names the file and line).

    Examples
    --------
    >>> features, targets = housing()
    >>> features.dtype.name, float(targets[0])
    ('float32', 24.0)
    """
    path = HOUSING_CSV if path is None else Path(path)
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    if not rows or tuple(name.strip() for name in rows[0]) != HOUSING_COLUMNS:
        found = ",".join(rows[0]) if rows else "an empty file"
        raise DataFormatError(
            f"{path}:1: expected the header {','.join(HOUSING_COLUMNS)}, found {found}"
        )
    values = np.array(
        [_parse_row(path, number, row) for number, row in enumerate(rows[1:], start=2) if row],
        dtype=np.float32,
    ).reshape(-1, len(HOUSING_COLUMNS))
    return np.ascontiguousarray(values[:, :-1]), np.ascontiguousarray(values[:, -1])


def _parse_row(path: Path, line: int, row: list[str]) -> list[float]:
    if len(row) != len(HOUSING_COLUMNS):
        raise DataFormatError(f"{path}:{line}: {len(row)} fields, expected {len(HOUSING_COLUMNS)}")
    try:
        return [float(field) for field in row]
    except ValueError as error:
        raise DataFormatError(f"{path}:{line}: a field is not a number: {error}") from error
