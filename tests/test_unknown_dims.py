"""MXNet's unknown (0) sizes in ``gc.zeros``/``gc.full`` shapes, settled from the input
shapes before inference (graphc.ir.unknown_dims)."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.ir.unknown_dims import resolve_unknown_dims

pytestmark = pytest.mark.unit


def _cell(begin):
    x = gc.Variable("x")
    return gc.FullyConnected(begin, num_hidden=4, name="h2h") + gc.FullyConnected(
        x, num_hidden=4, name="i2h"
    )


def test_the_unknown_size_is_the_one_every_rule_accepts():
    net = _cell(gc.zeros((0, 3), name="begin"))
    settled = resolve_unknown_dims(net, {"x": (5, 2)})
    begin = next(node for node in settled.graph.nodes if node.name == "begin")
    assert begin.attrs["shape"] == (5, 3)
    assert net.infer_shape(x=(5, 2))[1] == [(5, 4)]
    assert net.infer_shape(x=(7, 2))[1] == [(7, 4)]  # the symbol itself keeps its 0


def test_a_size_settled_first_lets_the_next_be_settled():
    """The cell state meets the forget gate only once the hidden state is known."""
    h0, c0 = gc.zeros((0, 4), name="h0"), gc.zeros((0, 4), name="c0")
    net = gc.sigmoid(_cell(h0)) * c0
    values = {"x": np.ones((3, 2))}
    values.update({f"{n}_weight": np.ones((4, k)) for n, k in (("h2h", 4), ("i2h", 2))})
    values.update({f"{n}_bias": np.ones(4) for n in ("h2h", "i2h")})
    assert gc.evaluate(net, values)[0].shape == (3, 4)


def test_no_fitting_size_is_an_error_naming_the_node():
    net = gc.zeros((0, 3), name="begin") + gc.Variable("x")  # (?, 3) + (5, 2)
    with pytest.raises(gc.ShapeError, match=r"begin \(_full\).*no size for the unknown \(0\)"):
        net.infer_shape(x=(5, 2))


def test_several_fitting_sizes_are_an_error_naming_the_node():
    net = gc.sum(gc.zeros((0, 3), name="free")) + gc.Variable("x")  # any size fits
    with pytest.raises(gc.MissingInputError, match=r"free \(_full\).*more than one"):
        net.infer_shape(x=(5, 2))
