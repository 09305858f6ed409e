"""The parts of data-parallel training that one process can check: ``gc.kvstore`` (local),
the iterators' shards and the start-of-fit comparison. The multi-process tests are in
tests/test_dist.py."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.training.data_parallel import compare_fits

pytestmark = pytest.mark.unit


def test_a_local_store_sums_what_is_pushed_and_pulls_it():
    kv = gc.kvstore.create()
    assert (kv.type, kv.rank, kv.num_workers) == ("local", 0, 1)
    kv.init(3, np.zeros((2, 2)))
    kv.push(3, [np.ones((2, 2)), np.full((2, 2), 2.0)])
    outs = [np.zeros((2, 2)), np.zeros((2, 2))]
    kv.pull(3, outs)
    assert all((out == 3).all() for out in outs)
    kv.barrier()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: gc.kvstore.create("dist_async"), "asynchronous updates are not implemented"),
        (lambda: gc.kvstore.create("nccl"), "unknown type 'nccl'"),
        (lambda: gc.kvstore.create("local", timeout=0), "timeout must be a positive"),
    ],
)
def test_bad_store_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_push_of_another_shape_or_an_unknown_key_is_an_error():
    kv = gc.kvstore.create("local")
    kv.init("w", np.zeros(3))
    with pytest.raises(ValueError, match=r"shape \(4,\) for a key of shape \(3,\)"):
        kv.push("w", np.zeros(4))
    with pytest.raises(KeyError, match="'v' was not init"):
        kv.pull("v", np.zeros(3))


def test_the_parts_of_an_iterator_are_contiguous_blocks_of_equal_size():
    x = np.arange(11, dtype=np.float32).reshape(11, 1)
    parts = [
        gc.io.NDArrayIter(x, x[:, 0], batch_size=2, num_parts=3, part_index=k) for k in (0, 1, 2)
    ]
    assert [part.num_data for part in parts] == [3, 3, 3]  # the 2 samples after them left out
    assert [part.data_arrays[0].ravel().tolist() for part in parts] == [
        [0, 1, 2],
        [3, 4, 5],
        [6, 7, 8],
    ]
    shuffled = gc.io.NDArrayIter(x, batch_size=3, shuffle=True, seed=1, num_parts=3, part_index=2)
    assert sorted(next(shuffled).data[0].ravel().tolist()) == [6.0, 7.0, 8.0]


def test_bptt_parts_are_the_rows_of_one_process_at_the_global_batch():
    stream = np.arange(2 * 4 * 9)
    whole = gc.io.BPTTIter(stream, batch_size=4, seq_len=3)
    parts = [
        gc.io.BPTTIter(stream, batch_size=2, seq_len=3, num_parts=2, part_index=k) for k in (0, 1)
    ]
    np.testing.assert_array_equal(np.concatenate([part.streams for part in parts]), whole.streams)


@pytest.mark.parametrize("num_parts, part_index", [(0, 0), (2, 2), (2, -1), (2.0, 0)])
def test_a_bad_part_is_named(num_parts, part_index):
    with pytest.raises(ValueError, match="num_parts|part_index"):
        gc.io.NDArrayIter(
            np.zeros((4, 1)), batch_size=1, num_parts=num_parts, part_index=part_index
        )


def test_too_many_parts_for_the_samples_is_an_error():
    with pytest.raises(ValueError, match="3 samples cannot be cut into num_parts=4 parts"):
        gc.io.NDArrayIter(np.zeros((3, 1)), batch_size=1, num_parts=4, part_index=0)


def test_the_start_of_fit_names_the_rank_and_what_differs():
    first = {"bound shapes": {"data": [20, 12], "fc1_weight": [16, 12]}, "epochs": [0, 2]}
    other = {"bound shapes": {"data": [10, 12], "fc1_weight": [16, 12]}, "epochs": [0, 2]}
    message = compare_fits(first, 1, other)
    assert "rank 1 differs from rank 0 in its bound shapes" in message
    assert "data: [20, 12] on rank 0, [10, 12] on rank 1" in message
    assert compare_fits(first, 1, dict(first)) is None
    assert "epochs ([0, 2] on rank 0, [0, 3] on rank 3)" in compare_fits(
        first, 3, {**first, "epochs": [0, 3]}
    )
