"""What bind says about inputs it cannot bind: bad shapes, an arena that cannot be allocated
(a GPU that is missing: tests/test_cuda_runtime.py). Each message names the argument (or the
buffers) at fault."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc


@pytest.mark.unit
@pytest.mark.parametrize(
    "shape, words",
    [
        ((-1, 784), "every dimension must be positive"),
        ((0, 784), "every dimension must be positive"),
        ((4.5, 784), "dimension 4.5 is not an int"),
    ],
)
def test_simple_bind_rejects_a_dimension_that_is_not_a_positive_int(shape, words):
    with pytest.raises(gc.ShapeError) as caught:
        gc.models.mlp().simple_bind(gc.cpu(), data=shape)
    assert f"argument 'data' has shape {shape!r}" in str(caught.value)
    assert words in str(caught.value)


@pytest.mark.unit
def test_bind_rejects_an_empty_array():
    net = gc.FullyConnected(gc.Variable("x"), num_hidden=2, name="fc")
    args = {"x": np.zeros((0, 3), np.float32), "fc_weight": np.zeros((2, 3), np.float32)}
    args["fc_bias"] = np.zeros(2, np.float32)
    with pytest.raises(gc.ShapeError, match=r"argument 'x' has shape \(0, 3\)"):
        net.bind(gc.cpu(), args)


@pytest.mark.cpu
def test_an_arena_too_large_to_allocate_names_its_size_and_largest_buffers():
    column, row = gc.Variable("column"), gc.Variable("row")
    # (2**24, 1) x (1, 2**22): 256 TiB of float32, more than a 47-bit address space holds,
    # so no allocator grants it, whatever the kernel's overcommit setting.
    outer = gc.dot(column, row, name="outer")
    net = gc.sum(gc.exp(outer, name="grow"), name="total")
    with pytest.raises(MemoryError) as caught:
        net.simple_bind(gc.cpu(), grad_req="null", column=(2**24, 1), row=(1, 2**22))
    message = str(caught.value)
    assert "bind: the cpu arena" in message and "cannot be allocated" in message
    assert "(262144.00 GiB)" in message
    # Fusion put the GEMM's output in the fused kernel's workspace: named by its nodes.
    assert (
        "largest buffers: workspace of fused(outer, grow, total) (_fused) 281,474,976,710,656 bytes"
        in message
    )
