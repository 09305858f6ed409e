"""graphc.data.io: NDArrayIter's batching, shuffling and last-batch handling, and BPTTIter's
windows for truncated back-propagation through time."""

from __future__ import annotations

import numpy as np
import pytest

from graphc.data.io import BPTTIter, DataBatch, DataDesc, NDArrayIter

pytestmark = pytest.mark.unit


def samples(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Data whose row i holds (i, 100 + i), and label i + 0.5: a batch shows its rows."""
    data = np.stack([np.arange(n), 100 + np.arange(n)], axis=1).astype(np.float32)
    return data, np.arange(n, dtype=np.float32) + 0.5


def epoch(it) -> list[DataBatch]:
    return list(it)


def rows(batches: list[DataBatch]) -> list[list[int]]:
    return [batch.data[0][:, 0].astype(int).tolist() for batch in batches]


# NDArrayIter: last_batch_handle


def test_pad_wraps_the_last_batch_to_the_start_and_counts_the_filler():
    data, label = samples(10)
    it = NDArrayIter(data, label, batch_size=4)
    batches = epoch(it)
    assert rows(batches) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    assert [batch.pad for batch in batches] == [0, 0, 2]
    assert batches[2].index.tolist() == [8, 9, 0, 1] and batches[2].index.dtype == np.int64
    assert batches[2].label[0].tolist() == [8.5, 9.5, 0.5, 1.5]
    assert len(it) == it.num_batches == 3


def test_pad_with_a_batch_larger_than_the_data_repeats_it():
    data, label = samples(3)
    (batch,) = epoch(NDArrayIter(data, label, batch_size=7))
    assert batch.index.tolist() == [0, 1, 2, 0, 1, 2, 0] and batch.pad == 4


def test_discard_drops_the_incomplete_batch():
    data, label = samples(10)
    it = NDArrayIter(data, label, batch_size=4, last_batch_handle="discard")
    batches = epoch(it)
    assert rows(batches) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [batch.pad for batch in batches] == [0, 0] and len(it) == 2


def test_roll_over_carries_the_remainder_into_the_next_epoch():
    data, label = samples(10)
    it = NDArrayIter(data, label, batch_size=4, last_batch_handle="roll_over")
    assert len(it) == 2
    assert rows(epoch(it)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    it.reset()
    assert len(it) == 3
    second = epoch(it)
    assert rows(second) == [[8, 9, 0, 1], [2, 3, 4, 5], [6, 7, 8, 9]]
    assert second[0].label[0].tolist() == [8.5, 9.5, 0.5, 1.5]
    assert [batch.pad for batch in second] == [0, 0, 0]
    it.reset()  # the second epoch ended on a full batch: nothing to carry
    assert rows(epoch(it)) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_roll_over_with_shuffle_sees_every_sample_equally_often():
    data, label = samples(10)
    it = NDArrayIter(data, label, batch_size=4, last_batch_handle="roll_over", shuffle=True, seed=3)
    first = epoch(it)
    carried = it.order[8:].tolist()
    it.reset()
    second = epoch(it)
    assert second[0].index[:2].tolist() == carried
    seen = np.concatenate([batch.index for batch in first + second])
    assert np.bincount(seen, minlength=10).tolist() == [2] * 10


def test_roll_over_reset_in_mid_epoch_carries_nothing():
    data, label = samples(10)
    it = NDArrayIter(data, label, batch_size=4, last_batch_handle="roll_over")
    next(it)
    it.reset()
    assert rows(epoch(it)) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_an_epoch_stays_over_until_reset():
    data, label = samples(4)
    it = NDArrayIter(data, label, batch_size=2)
    assert len(epoch(it)) == 2
    assert epoch(it) == []
    with pytest.raises(StopIteration):
        it.next()
    it.reset()
    assert rows([it.next()]) == [[0, 1]]


# NDArrayIter: shuffling


def test_shuffle_visits_every_sample_once_per_epoch_with_rows_and_labels_together():
    data, label = samples(12)
    it = NDArrayIter(data, label, batch_size=5, shuffle=True, seed=0)
    orders = []
    for _ in range(3):
        batches = epoch(it)
        visited = np.concatenate([batch.index[: 5 - batch.pad] for batch in batches])
        assert sorted(visited.tolist()) == list(range(12))
        for batch in batches:
            np.testing.assert_array_equal(batch.data[0], data[batch.index])
            np.testing.assert_array_equal(batch.label[0], label[batch.index])
        assert visited.tolist() == it.order.tolist()
        orders.append(it.order.tolist())
        it.reset()
    assert orders[0] != orders[1] != orders[2]


def test_shuffle_is_reproducible_from_the_seed():
    data, label = samples(30)

    def three_epochs(seed):
        it = NDArrayIter(data, label, batch_size=4, shuffle=True, seed=seed)
        orders = []
        for _ in range(3):
            orders.append(np.concatenate([batch.index for batch in it]).tolist())
            it.reset()
        return orders

    assert three_epochs(7) == three_epochs(7)
    assert three_epochs(7) != three_epochs(8)


def test_epoch_indices_give_the_batches_for_a_loop_that_slices_itself():
    data, label = samples(10)
    it = NDArrayIter(data, label, batch_size=3, shuffle=True, seed=1, last_batch_handle="discard")
    for k, batch in enumerate(it):
        expected = it.epoch_indices[3 * k : 3 * k + 3]
        np.testing.assert_array_equal(batch.data[0], it.data_arrays[0][expected])
        np.testing.assert_array_equal(batch.label[0], it.label_arrays[0][expected])


# NDArrayIter: names, shapes and arrays


def test_provide_data_and_label_and_the_underlying_arrays():
    data, label = samples(10)
    it = NDArrayIter(data, label, batch_size=4, label_name="lro_label")
    assert it.provide_data == [("data", (4, 2))]
    assert it.provide_label == [DataDesc("lro_label", (4,))]
    name, shape = it.provide_data[0]
    assert (name, shape) == ("data", (4, 2))
    assert it.data_arrays[0] is data and it.label_arrays[0] is label


def test_dict_and_list_inputs_are_named_as_mxnet_names_them():
    images = np.zeros((6, 1, 2, 2), dtype=np.float32)
    extra = np.ones((6, 3), dtype=np.float32)
    it = NDArrayIter({"image": images, "extra": extra}, batch_size=2)
    assert it.provide_data == [("image", (2, 1, 2, 2)), ("extra", (2, 3))]
    assert it.provide_label == []
    batch = next(it)
    assert [array.shape for array in batch.data] == [(2, 1, 2, 2), (2, 3)] and batch.label == []
    listed = NDArrayIter([images, extra], [np.arange(6.0)], batch_size=3)
    assert [desc.name for desc in listed.provide_data] == ["_0_data", "_1_data"]
    assert [desc.name for desc in listed.provide_label] == ["softmax_label"]


def test_batches_are_copies():
    data, label = samples(4)
    batch = next(NDArrayIter(data, label, batch_size=2))
    batch.data[0][:] = -1
    batch.index[:] = 3
    assert data[0, 0] == 0 and data[1, 0] == 1
    assert batch.data[0].flags.c_contiguous


# NDArrayIter: errors


def test_mismatched_first_dimensions_name_both_arrays():
    with pytest.raises(ValueError) as caught:
        NDArrayIter(np.zeros((10, 3)), np.zeros(9), batch_size=2)
    message = str(caught.value)
    assert "'softmax_label' of shape (9,)" in message and "'data' of shape (10, 3)" in message


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_batch_size_must_be_a_positive_integer(batch_size):
    with pytest.raises(
        ValueError, match=f"batch_size must be a positive integer, got {batch_size}"
    ):
        NDArrayIter(np.zeros((4, 1)), batch_size=batch_size)


def test_unknown_last_batch_handle_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="'wrap' is not one of 'pad', 'discard', 'roll_over'"):
        NDArrayIter(np.zeros((4, 1)), batch_size=2, last_batch_handle="wrap")


@pytest.mark.parametrize("handle", ["discard", "roll_over"])
def test_batch_larger_than_the_data_without_padding_is_refused(handle):
    with pytest.raises(ValueError, match="batch_size=5 is larger than the 4 samples"):
        NDArrayIter(np.zeros((4, 1)), batch_size=5, last_batch_handle=handle)


def test_empty_and_scalar_inputs_are_refused():
    with pytest.raises(ValueError, match="'data' of shape \\(0, 2\\) has no samples"):
        NDArrayIter(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="'data' is a scalar"):
        NDArrayIter(np.float32(1.0))
    with pytest.raises(ValueError, match="no arrays given for 'data'"):
        NDArrayIter({})


# BPTTIter


def test_bptt_label_is_the_data_shifted_by_one():
    stream = np.random.default_rng(0).integers(0, 50, size=103)
    it = BPTTIter(stream, batch_size=4, seq_len=5)
    assert it.tokens_per_row == 25 and len(it) == it.num_batches == 4
    for batch in it:
        assert batch.data[0].shape == (4, 5) and batch.data[0].dtype == np.float32
        for row, offset in enumerate(batch.index.tolist()):
            np.testing.assert_array_equal(batch.data[0][row], stream[offset : offset + 5])
            np.testing.assert_array_equal(batch.label[0][row], stream[offset + 1 : offset + 6])


def test_bptt_rows_are_contiguous_streams_and_the_tail_is_dropped():
    it = BPTTIter(np.arange(23), batch_size=2, seq_len=3)
    np.testing.assert_array_equal(it.streams, np.arange(22).reshape(2, 11))
    batches = list(it)
    # 11 tokens a row: windows start at 0, 3, 6; the one at 9 has no label for its last step.
    assert [batch.index.tolist() for batch in batches] == [[0, 11], [3, 14], [6, 17]]
    assert batches[-1].data[0].tolist() == [[6, 7, 8], [17, 18, 19]]
    assert batches[-1].label[0].tolist() == [[7, 8, 9], [18, 19, 20]]


def test_bptt_batch_k_plus_1_continues_batch_k_row_by_row():
    stream = np.random.default_rng(1).integers(0, 9, size=200)
    it = BPTTIter(stream, batch_size=3, seq_len=7)
    batches, continuations = [], []
    for batch in it:
        batches.append(batch)
        continuations.append(it.is_continuation)
    assert continuations == [False] + [True] * (len(batches) - 1)
    for previous, current in zip(batches, batches[1:]):
        np.testing.assert_array_equal(current.data[0][:, 0], previous.label[0][:, -1])
    joined = np.concatenate([batch.data[0] for batch in batches], axis=1)
    np.testing.assert_array_equal(joined, it.streams[:, : joined.shape[1]])
    it.reset()
    first = next(it)
    assert not it.is_continuation
    np.testing.assert_array_equal(first.data[0], batches[0].data[0])


def test_bptt_time_major_layout():
    it = BPTTIter(np.arange(20), batch_size=2, seq_len=4, data_name="x", layout="TN")
    assert it.provide_data == [("x", (4, 2))] and it.provide_label == [("softmax_label", (4, 2))]
    batch = next(it)
    assert batch.data[0].tolist() == [[0, 10], [1, 11], [2, 12], [3, 13]]
    assert batch.label[0][:, 0].tolist() == [1, 2, 3, 4]


def test_bptt_errors_name_the_lengths():
    with pytest.raises(ValueError, match="7 tokens is too short for batch_size=2 and seq_len=3"):
        BPTTIter(np.arange(7), batch_size=2, seq_len=3)
    with pytest.raises(ValueError, match=r"at least batch_size \* \(seq_len \+ 1\) = 8 tokens"):
        BPTTIter(np.arange(7), batch_size=2, seq_len=3)
    assert len(BPTTIter(np.arange(8), batch_size=2, seq_len=3)) == 1
    with pytest.raises(ValueError, match="1-D array of integer"):
        BPTTIter(np.zeros((4, 4), dtype=np.int32), batch_size=1, seq_len=2)
    with pytest.raises(ValueError, match="seq_len must be a positive integer, got 0"):
        BPTTIter(np.arange(10), batch_size=1, seq_len=0)
    with pytest.raises(ValueError, match="layout='NTC' is not one of"):
        BPTTIter(np.arange(10), batch_size=1, seq_len=2, layout="NTC")


def test_bptt_over_the_shipped_text_decodes_to_the_text():
    from graphc.data.datasets import text

    corpus = text()
    it = BPTTIter(corpus.data, batch_size=8, seq_len=50)
    batch = next(it)
    assert corpus.decode(batch.data[0][0]) == corpus.decode(corpus.data[:50])
    assert corpus.decode(batch.label[0][0]) == corpus.decode(corpus.data[1:51])
