"""Data iterators with MXNet's interface: ``NDArrayIter`` over in-memory arrays and
``BPTTIter`` over a token stream for truncated back-propagation through time.

An iterator yields ``DataBatch`` objects for one epoch, then raises StopIteration until
``reset()`` starts the next, as ``mx.io.DataIter`` does::

    for epoch in range(num_epochs):
        for batch in train_iter:
            exe.forward(is_train=True, data=batch.data[0], softmax_label=batch.label[0])
        train_iter.reset()

>>> import numpy as np
>>> it = NDArrayIter(np.arange(10.0).reshape(5, 2), np.arange(5.0), batch_size=2)
>>> [batch.label[0].tolist() for batch in it]
[[0.0, 1.0], [2.0, 3.0], [4.0, 0.0]]
>>> it.provide_data
[DataDesc(name='data', shape=(2, 2))]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

LAST_BATCH_HANDLES = ("pad", "discard", "roll_over")
BPTT_LAYOUTS = ("NT", "TN")


class DataDesc(NamedTuple):
    """The name and per-batch shape of one input, as ``mx.io.DataDesc`` (without dtype and
    layout); it unpacks and compares as a plain ``(name, shape)`` tuple."""

    name: str
    shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class DataBatch:
    """One batch, as ``mx.io.DataBatch``.

    Attributes
    ----------
    data, label : list of numpy.ndarray
        One array per entry of the iterator's ``provide_data`` / ``provide_label``, in order.
    pad : int
        How many samples at the end of the batch are filler (repeated from the start of the
        epoch to complete the last batch); outputs for them should be ignored.
    index : numpy.ndarray
        int64: for ``NDArrayIter`` the sample index of each row; for ``BPTTIter`` the stream
        offset of each row's first token.
    """

    data: list[np.ndarray]
    label: list[np.ndarray]
    pad: int = 0
    index: np.ndarray | None = None


class NDArrayIter:
    """Batches over arrays held in memory, as ``mx.io.NDArrayIter``.

    Parameters
    ----------
    data : array, list of arrays or dict of str to array
        The inputs; all arrays (data and label) share their first dimension, the sample
        axis. A single array is named ``data_name``; a list of several is named
        ``_0_<data_name>``, ``_1_<data_name>``, ... as in MXNet; a dict keeps its names in
        insertion order (MXNet sorts them; Python dicts have an order, so it is kept).
    label : array, list of arrays or dict of str to array, optional
        The targets, named from ``label_name`` the same way.
    batch_size : int
        Samples per batch.
    shuffle : bool
        Visit the samples in a random order, drawn anew at every ``reset()``.
    last_batch_handle : {'pad', 'discard', 'roll_over'}
        What to do with the samples left over when ``batch_size`` does not divide their
        number. ``'pad'``: the last batch is completed with samples from the start of the
        epoch's order and its ``pad`` says how many. ``'discard'``: the incomplete batch is
        dropped. ``'roll_over'``: the left-over samples open the next epoch, before its own
        samples (as MXNet: the next epoch's first batch is the remainder plus the first
        samples of the new order), so every sample is seen equally often.
    data_name, label_name : str
        The names given to a single data or label array.
    seed : int, optional
        Seed of the ``numpy.random.Generator`` that shuffles: the same seed gives the same
        sequence of epochs. None draws a fresh seed.
    num_parts, part_index : int
        Data-parallel training (``gc.kvstore``): this iterator reads only part
        ``part_index`` of ``num_parts``, the ``part_index``-th contiguous block of
        ``num_data // num_parts`` samples, as MXNet's iterators shard (pass
        ``num_parts=kv.num_workers, part_index=kv.rank``). The ``num_data % num_parts``
        samples after the last block are left out, so that every part has as many
        batches; ``shuffle`` permutes within the part.

    Attributes
    ----------
    order : numpy.ndarray
        int64 permutation of the samples of the current epoch.
    epoch_indices : numpy.ndarray
        int64: the samples rolled over from the last epoch, then ``order``; batch k of the
        epoch takes rows ``epoch_indices[k * batch_size:(k + 1) * batch_size]`` (for
        ``'pad'``, wrapping to the start). A training loop that slices the arrays itself
        reads this and ``data_arrays`` / ``label_arrays``.
    data_arrays, label_arrays : list of numpy.ndarray
        The whole arrays, in ``provide_data`` / ``provide_label`` order (not copies).

    Examples
    --------
    >>> x = np.arange(5, dtype=np.float32).reshape(5, 1)
    >>> part = NDArrayIter(x, batch_size=1, num_parts=2, part_index=1)
    >>> [b.data[0].ravel().tolist() for b in part]
    [[2.0], [3.0]]
    >>> it = NDArrayIter(x, batch_size=2, last_batch_handle="roll_over")
    >>> [b.data[0].ravel().tolist() for b in it]
    [[0.0, 1.0], [2.0, 3.0]]
    >>> it.reset()
    >>> [b.data[0].ravel().tolist() for b in it]
    [[4.0, 0.0], [1.0, 2.0], [3.0, 4.0]]
    """

    def __init__(
        self,
        data: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray],
        label: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray] | None = None,
        batch_size: int = 1,
        shuffle: bool = False,
        last_batch_handle: str = "pad",
        data_name: str = "data",
        label_name: str = "softmax_label",
        seed: int | None = None,
        num_parts: int = 1,
        part_index: int = 0,
    ) -> None:
        _check_positive("NDArrayIter", "batch_size", batch_size)
        _check_part("NDArrayIter", num_parts, part_index)
        if last_batch_handle not in LAST_BATCH_HANDLES:
            raise ValueError(
                f"NDArrayIter: last_batch_handle={last_batch_handle!r} is not one of "
                f"{', '.join(repr(handle) for handle in LAST_BATCH_HANDLES)}"
            )
        if data is None:
            raise ValueError("NDArrayIter: data is None; it needs at least one array")
        self._data = _named_arrays(data, data_name)
        self._label = [] if label is None else _named_arrays(label, label_name)
        total = _common_length(self._data + self._label)
        per_part = total // num_parts
        if per_part == 0:
            raise ValueError(
                f"NDArrayIter: {total} samples cannot be cut into num_parts={num_parts} parts"
            )
        if num_parts > 1:
            part = slice(part_index * per_part, (part_index + 1) * per_part)
            self._data = [(name, array[part]) for name, array in self._data]
            self._label = [(name, array[part]) for name, array in self._label]
        self.num_parts = num_parts
        self.part_index = part_index
        self.num_data = per_part
        if batch_size > self.num_data and last_batch_handle != "pad":
            raise ValueError(
                f"NDArrayIter: batch_size={batch_size} is larger than the {self.num_data} "
                f"samples, so last_batch_handle={last_batch_handle!r} would leave no "
                "complete batch; use a smaller batch_size or last_batch_handle='pad'"
            )
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.last_batch_handle = last_batch_handle
        self._rng = np.random.default_rng(seed)
        self.order = self._new_order()
        self.epoch_indices = self.order
        self._cursor = 0

    @property
    def provide_data(self) -> list[DataDesc]:
        """Name and batch shape of each data array."""
        return [DataDesc(name, (self.batch_size, *array.shape[1:])) for name, array in self._data]

    @property
    def provide_label(self) -> list[DataDesc]:
        """Name and batch shape of each label array (empty without labels)."""
        return [DataDesc(name, (self.batch_size, *array.shape[1:])) for name, array in self._label]

    @property
    def data_arrays(self) -> list[np.ndarray]:
        return [array for _, array in self._data]

    @property
    def label_arrays(self) -> list[np.ndarray]:
        return [array for _, array in self._label]

    @property
    def num_batches(self) -> int:
        """Batches in the current epoch (with 'roll_over', counting the carried samples)."""
        if self.last_batch_handle == "pad":
            return -(-len(self.epoch_indices) // self.batch_size)
        return len(self.epoch_indices) // self.batch_size

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> NDArrayIter:
        return self

    def __next__(self) -> DataBatch:
        start, size = self._cursor, len(self.epoch_indices)
        if start >= size or (self.last_batch_handle != "pad" and start + self.batch_size > size):
            raise StopIteration
        stop = start + self.batch_size
        pad = max(0, stop - size)
        # 'pad' completes the last batch from the start of the epoch's order, as MXNet does;
        # the modulo also covers a batch larger than the whole data set.
        positions = np.arange(start, stop) % size if pad else slice(start, stop)
        index = np.array(self.epoch_indices[positions])  # a copy: callers may keep it
        self._cursor = stop
        return DataBatch(
            data=[array[index] for _, array in self._data],
            label=[array[index] for _, array in self._label],
            pad=pad,
            index=index,
        )

    def next(self) -> DataBatch:
        """The next batch (MXNet's name for ``__next__``)."""
        return self.__next__()

    def take_epoch(self) -> tuple[np.ndarray, np.ndarray]:
        """The rest of this epoch's batches as sample indices, without cutting them: the
        indices of every batch one after the other (``batch_size`` each) and each batch's
        ``pad``. Afterwards the iterator is where iterating to the end leaves it, so a
        compiled training loop cutting the batches itself sees the samples, the padding and
        (after ``reset``) the roll-over that iteration would give.

        >>> it = NDArrayIter(np.arange(5.0).reshape(5, 1), batch_size=2)
        >>> indices, pads = it.take_epoch()
        >>> indices.tolist(), pads.tolist()
        ([0, 1, 2, 3, 4, 0], [0, 0, 1])
        """
        indices, pads = [], []
        while True:
            start, size = self._cursor, len(self.epoch_indices)
            if start >= size or (
                self.last_batch_handle != "pad" and start + self.batch_size > size
            ):
                break
            stop = start + self.batch_size
            pad = max(0, stop - size)
            positions = np.arange(start, stop) % size if pad else slice(start, stop)
            indices.append(self.epoch_indices[positions])
            pads.append(pad)
            self._cursor = stop
        if not indices:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(indices).astype(np.int64), np.array(pads, dtype=np.int64)

    def reset(self) -> None:
        """Start the next epoch: a new order if shuffling, and with 'roll_over' the samples
        left after the last complete batch open it. A reset before the epoch's complete
        batches are all taken carries nothing over."""
        left = self.epoch_indices[self._cursor :]
        rolls_over = self.last_batch_handle == "roll_over" and len(left) < self.batch_size
        self.order = self._new_order()
        self.epoch_indices = np.concatenate([left, self.order]) if rolls_over else self.order
        self._cursor = 0

    def _new_order(self) -> np.ndarray:
        if self.shuffle:
            return self._rng.permutation(self.num_data).astype(np.int64)
        return np.arange(self.num_data, dtype=np.int64)


class BPTTIter:
    """Consecutive windows of a token stream, for truncated back-propagation through time.

    The stream is cut into ``batch_size`` contiguous rows of equal length (the tail that does
    not fill them evenly is dropped). Batch k holds columns ``k * seq_len`` to
    ``(k + 1) * seq_len`` of every row, and its label the same positions one token later:
    the next token to predict. The last window, if it cannot be completed with its labels,
    is dropped.

    Batches come in order, so that a recurrent model can carry its state across them:
    **row r of batch k + 1 continues row r of batch k** (its first token is the one after
    the last token of row r of batch k, which was that row's last label). Carry the final
    LSTM state of each row into the next batch while ``is_continuation`` is True, and start
    from zeros when it is False (the first batch of an epoch).

    Parameters
    ----------
    stream : numpy.ndarray
        1-D integer token indices (``graphc.data.datasets.text().data``).
    batch_size : int
        Rows (independent streams) per batch.
    seq_len : int
        Time steps per batch: how far back gradients flow.
    data_name, label_name : str
        Names in ``provide_data`` / ``provide_label``.
    layout : {'NT', 'TN'}
        Batch shape (batch_size, seq_len) for 'NT', (seq_len, batch_size) for 'TN', the
        time-major form of ``graphc.models.charlm``; names as MXNet's bucketing iterator.
    num_parts, part_index : int
        Data-parallel training (``gc.kvstore``): this iterator reads the ``part_index``-th
        of ``num_parts`` contiguous blocks of ``len(stream) // num_parts`` tokens (the rest
        left out) and cuts its rows from that block, so ``num_parts`` ranks at
        ``batch_size`` rows read the rows one process at ``num_parts * batch_size`` rows
        reads, when the lengths divide evenly.

    Attributes
    ----------
    streams : numpy.ndarray
        The (batch_size, tokens_per_row) rows the batches are cut from.

    Examples
    --------
    >>> it = BPTTIter(np.arange(14), batch_size=2, seq_len=3)
    >>> batch = next(it)
    >>> batch.data[0].tolist(), batch.label[0].tolist()
    ([[0.0, 1.0, 2.0], [7.0, 8.0, 9.0]], [[1.0, 2.0, 3.0], [8.0, 9.0, 10.0]])
    >>> next(it).data[0].tolist(), it.is_continuation
    ([[3.0, 4.0, 5.0], [10.0, 11.0, 12.0]], True)
    """

    def __init__(
        self,
        stream: np.ndarray,
        batch_size: int,
        seq_len: int,
        data_name: str = "data",
        label_name: str = "softmax_label",
        layout: str = "NT",
        num_parts: int = 1,
        part_index: int = 0,
    ) -> None:
        _check_positive("BPTTIter", "batch_size", batch_size)
        _check_part("BPTTIter", num_parts, part_index)
        _check_positive("BPTTIter", "seq_len", seq_len)
        if layout not in BPTT_LAYOUTS:
            raise ValueError(f"BPTTIter: layout={layout!r} is not one of {BPTT_LAYOUTS}")
        stream = np.asarray(stream)
        if stream.ndim != 1 or not np.issubdtype(stream.dtype, np.integer):
            raise ValueError(
                f"BPTTIter: stream must be a 1-D array of integer token indices, "
                f"found {stream.dtype} of shape {stream.shape}"
            )
        per_part = len(stream) // num_parts
        stream = stream[part_index * per_part : (part_index + 1) * per_part]
        self.num_parts = num_parts
        self.part_index = part_index
        tokens_per_row = len(stream) // batch_size
        # Each row needs seq_len inputs plus one more token for the last input's label.
        if tokens_per_row < seq_len + 1:
            raise ValueError(
                f"BPTTIter: a stream of {len(stream)} tokens"
                f"{f' (part {part_index} of {num_parts})' if num_parts > 1 else ''} is too short for "
                f"batch_size={batch_size} and seq_len={seq_len}: it needs at least "
                f"batch_size * (seq_len + 1) = {batch_size * (seq_len + 1)} tokens"
            )
        self.streams = stream[: batch_size * tokens_per_row].reshape(batch_size, tokens_per_row)
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.layout = layout
        self.tokens_per_row = tokens_per_row
        self.num_batches = (tokens_per_row - 1) // seq_len
        self._data_name = data_name
        self._label_name = label_name
        self._next_batch = 0

    @property
    def provide_data(self) -> list[DataDesc]:
        return [DataDesc(self._data_name, self._batch_shape())]

    @property
    def provide_label(self) -> list[DataDesc]:
        return [DataDesc(self._label_name, self._batch_shape())]

    @property
    def is_continuation(self) -> bool:
        """True when the batch last returned continues the one before it, row by row (it is
        not the first of the epoch): carry the recurrent state into it."""
        return self._next_batch > 1

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> BPTTIter:
        return self

    def __next__(self) -> DataBatch:
        if self._next_batch >= self.num_batches:
            raise StopIteration
        start = self._next_batch * self.seq_len
        data = self.streams[:, start : start + self.seq_len]
        label = self.streams[:, start + 1 : start + self.seq_len + 1]
        self._next_batch += 1
        return DataBatch(
            data=[self._as_batch(data)],
            label=[self._as_batch(label)],
            pad=0,
            index=np.arange(self.batch_size, dtype=np.int64) * self.tokens_per_row + start,
        )

    def next(self) -> DataBatch:
        """The next batch (MXNet's name for ``__next__``)."""
        return self.__next__()

    def reset(self) -> None:
        """Start again from the first window; the next batch is not a continuation."""
        self._next_batch = 0

    def _batch_shape(self) -> tuple[int, int]:
        if self.layout == "TN":
            return (self.seq_len, self.batch_size)
        return (self.batch_size, self.seq_len)

    def _as_batch(self, window: np.ndarray) -> np.ndarray:
        """float32 token indices (the form Embedding and SoftmaxOutput take), contiguous."""
        if self.layout == "TN":
            window = window.T
        return np.ascontiguousarray(window, dtype=np.float32)


def _check_part(owner: str, num_parts: int, part_index: int) -> None:
    for name, value in (("num_parts", num_parts), ("part_index", part_index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{owner}: {name} must be an integer, got {value!r}")
    if num_parts < 1 or not 0 <= part_index < num_parts:
        raise ValueError(
            f"{owner}: part_index={part_index} of num_parts={num_parts}: it needs "
            "num_parts >= 1 and 0 <= part_index < num_parts"
        )


def _check_positive(owner: str, name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")


def _named_arrays(
    arrays: np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray], default_name: str
) -> list[tuple[str, np.ndarray]]:
    """(name, array) pairs, named as MXNet's NDArrayIter names them."""
    if isinstance(arrays, Mapping):
        pairs = [(str(name), np.asarray(array)) for name, array in arrays.items()]
    elif (
        isinstance(arrays, (list, tuple))
        and arrays
        and all(isinstance(array, np.ndarray) for array in arrays)
    ):
        if len(arrays) == 1:
            pairs = [(default_name, arrays[0])]
        else:
            pairs = [(f"_{i}_{default_name}", array) for i, array in enumerate(arrays)]
    else:
        pairs = [(default_name, np.asarray(arrays))]
    if not pairs:
        raise ValueError(f"NDArrayIter: no arrays given for '{default_name}'")
    for name, array in pairs:
        if array.ndim == 0:
            raise ValueError(f"NDArrayIter: '{name}' is a scalar; it needs a sample axis")
    return pairs


def _common_length(pairs: list[tuple[str, np.ndarray]]) -> int:
    """The shared first dimension of all arrays; names and shapes any two that differ."""
    names = [name for name, _ in pairs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"NDArrayIter: the name(s) {duplicates} are used more than once")
    first_name, first = pairs[0]
    for name, array in pairs[1:]:
        if len(array) != len(first):
            raise ValueError(
                f"NDArrayIter: '{name}' of shape {array.shape} and '{first_name}' of shape "
                f"{first.shape} differ in their first dimension (the number of samples)"
            )
    if len(first) == 0:
        raise ValueError(f"NDArrayIter: '{first_name}' of shape {first.shape} has no samples")
    return len(first)
