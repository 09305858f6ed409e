"""A model file for ``graphc compile`` and ``graphc train``: get_symbol() and the default
input shapes."""

import graphc as gc

input_shapes = {"data": (100, 1, 28, 28)}


def get_symbol() -> gc.Symbol:
    return gc.models.lenet()
