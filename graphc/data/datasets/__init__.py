"""Data sets for graphc's examples, tests and benchmarks, as NumPy arrays.

Shipped with the package: Boston Housing, *The Song of Hiawatha* and a 7,000-image subset
of Fashion-MNIST. Found on disk: the full Fashion-MNIST and MNIST (see ``fashion_mnist``).
Sources and licences are in ``graphc/data/datasets/bundled/PROVENANCE.md``.

>>> from graphc import datasets
>>> features, targets = datasets.housing()
>>> features.shape
(506, 13)
"""

from graphc.data.datasets.errors import DataFormatError
from graphc.data.datasets.housing import HOUSING_COLUMNS, housing, standardized
from graphc.data.datasets.idx import read_idx, write_idx
from graphc.data.datasets.images import IDX_FILE_NAMES, fashion_mnist, mnist
from graphc.data.datasets.text import TextData, text

__all__ = [
    "DataFormatError",
    "HOUSING_COLUMNS",
    "IDX_FILE_NAMES",
    "TextData",
    "fashion_mnist",
    "housing",
    "standardized",
    "mnist",
    "read_idx",
    "text",
    "write_idx",
]
