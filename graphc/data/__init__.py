"""Data: in-memory iterators (``io``) and the data sets graphc reads or ships (``datasets``)."""

from graphc.data import datasets, io
