"""Every op in the table: reference forward against independent values, and finite-difference
gradient checks in float64 (max relative error < 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest
from optable import CASES

import graphc as gc

pytestmark = pytest.mark.unit

GRADCHECK_TOLERANCE = 1e-6


def _inputs(case, seed=0):
    rng = np.random.default_rng(seed)
    return {name: make(rng) for name, make in case.inputs.items()}


@pytest.mark.parametrize("case", [c for c in CASES if c.expected is not None], ids=repr)
def test_reference_forward(case):
    symbol = case.build()
    values = _inputs(case)
    outputs = gc.evaluate(symbol, values, is_train=case.is_train)
    expected = case.expected(values)
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if c.differentiable], ids=repr)
def test_gradcheck(case):
    symbol = case.build()
    errors = gc.gradcheck(symbol, _inputs(case, seed=1), is_train=case.is_train)
    assert errors, f"{case.name}: nothing was checked"
    worst = max(errors.values())
    assert worst < GRADCHECK_TOLERANCE, errors


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_float32_follows_float64(case):
    """float32 inputs give float32 outputs close to the float64 results."""
    symbol = case.build()
    values = _inputs(case)
    outputs64 = gc.evaluate(symbol, values, is_train=case.is_train)
    outputs32 = gc.evaluate(
        symbol, {k: v.astype(np.float32) for k, v in values.items()}, is_train=case.is_train
    )
    for out32, out64 in zip(outputs32, outputs64):
        assert out32.dtype == np.float32
        np.testing.assert_allclose(out32, out64, rtol=2e-5, atol=2e-5)


def test_transpose_of_a_scalar_stays_a_scalar():
    """Found by the level-0 = level-2 property test: the reference returned shape (1,)."""
    x = gc.Variable("x")
    total = gc.transpose(gc.sum(x))
    assert total.infer_shape(x=(2, 3))[1] == [()]
    (value,) = gc.evaluate(total, {"x": np.ones((2, 3))})
    assert value.shape == () and value == 6.0
