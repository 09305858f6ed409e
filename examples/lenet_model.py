"""A model file for ``graphc compile``: it defines get_symbol()."""

import graphc as gc


def get_symbol() -> gc.Symbol:
    return gc.models.lenet()
