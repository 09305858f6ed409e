"""Compiled helpers the generated training loop calls between kernels: cutting a batch out
of the in-memory data, checking values are finite, and the CPU lowering of the loop's loss
and metric statistics (``backend.loop_plan.HEAD_STATISTICS`` and ``METRIC_STATISTICS``).

The sums mean exactly what the heads' definitions (the loss: ``HeadDef.batch_loss`` in
``graphc/ir/ops/loss.py``) and ``graphc.training.metric`` (the metric's ``sum_metric`` and
``num_inst``) compute in NumPy, over the first ``rows`` rows of the batch (padding rows left
out), so a compiled epoch reports the numbers a step-by-step epoch reports. The constants
they take (floors, eps, k) are arguments, written into the loop from those definitions:
none is defined here.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_JIT = {"cache": True, "error_model": "numpy"}


@numba.njit(**_JIT)
def gather_rows(source, target, order, start):
    """``target[r] = source[order[start + r]]`` for every row r of ``target``: the batch is
    cut out of the data set inside compiled code, with no copy through Python."""
    rows = target.shape[0]
    width = target.size // rows if rows else 0
    flat_source = source.reshape((source.shape[0], width))
    flat_target = target.reshape((rows, width))
    first = order[start]
    consecutive = True
    for row in range(rows):
        if order[start + row] != first + row:
            consecutive = False
            break
    if consecutive:  # an unshuffled batch is one block: one vectorized copy (LinReg 2.3 -> 0.9 us)
        block = flat_source[first : first + rows].ravel()
        out = flat_target.ravel()
        for k in range(rows * width):
            out[k] = block[k]
        return
    for row in range(rows):
        index = order[start + row]
        for column in range(width):
            flat_target[row, column] = flat_source[index, column]


@numba.njit(**_JIT)
def all_finite(array):
    """Whether no value is NaN or infinite: ``v - v`` is 0 exactly for a finite v. An
    or-reduction without an early exit vectorizes, where a branch per value kept the loop
    scalar (MLP's 50,176 weight gradients: 28 -> 2.7 us)."""
    flat = array.ravel()
    bad = False
    for index in range(flat.size):
        value = flat[index]
        bad |= (value - value) != 0
    return not bad


@numba.njit(**_JIT)
def softmax_stats(probabilities, labels, rows, grad_scale, floor):
    """(sum over rows of -log max(p[label], floor) * grad_scale, correct predictions) of a
    ``SoftmaxOutput`` with one row per sample; a label that is not finite makes the loss NaN."""
    classes = probabilities.shape[1]
    loss = 0.0
    correct = 0.0
    for row in range(rows):
        label = labels[row]
        if not math.isfinite(label):
            return math.nan, correct
        picked = probabilities[row, int(label)]
        loss -= math.log(max(float(picked), floor))
        best = 0
        for column in range(1, classes):
            if probabilities[row, column] > probabilities[row, best]:
                best = column
        if best == label:
            correct += 1.0
    return loss * grad_scale, correct


@numba.njit(**_JIT)
def regression_stats(predictions, labels, rows, grad_scale):
    """(sum over rows of half the mean squared error * grad_scale, sum over rows of the mean
    squared error, of the mean absolute error). Labels are read in the predictions' layout.

    Each error is taken in float64, as ``HeadDef.batch_loss`` takes it (Numba's ``float``
    of a float32 stays float32: a squared error then overflowed from 1.8e19 on, and the
    loop stopped as diverged where the step-by-step path went on). The sums run in eight
    float64 lanes (element e of the first count - count % 8 in lane
    e % 8; the rest in a sum of their own), added in a fixed tree at the end: one chain of dependent additions ran at the adder's latency (LinReg's 506
    errors, 1.2 us of a 6.7 us step), eight vectorize. The order is fixed by the row
    count, so the bits are the same every run."""
    count = rows * (predictions.size // predictions.shape[0])
    flat_predictions = predictions.reshape(predictions.size)
    flat_labels = labels.reshape(predictions.size)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = 0.0
    blocks = count // 8
    for block in range(blocks):
        base = block * 8
        e0 = np.float64(flat_predictions[base]) - np.float64(flat_labels[base])
        e1 = np.float64(flat_predictions[base + 1]) - np.float64(flat_labels[base + 1])
        e2 = np.float64(flat_predictions[base + 2]) - np.float64(flat_labels[base + 2])
        e3 = np.float64(flat_predictions[base + 3]) - np.float64(flat_labels[base + 3])
        e4 = np.float64(flat_predictions[base + 4]) - np.float64(flat_labels[base + 4])
        e5 = np.float64(flat_predictions[base + 5]) - np.float64(flat_labels[base + 5])
        e6 = np.float64(flat_predictions[base + 6]) - np.float64(flat_labels[base + 6])
        e7 = np.float64(flat_predictions[base + 7]) - np.float64(flat_labels[base + 7])
        s0 += e0 * e0
        s1 += e1 * e1
        s2 += e2 * e2
        s3 += e3 * e3
        s4 += e4 * e4
        s5 += e5 * e5
        s6 += e6 * e6
        s7 += e7 * e7
        m0 += abs(e0)
        m1 += abs(e1)
        m2 += abs(e2)
        m3 += abs(e3)
        m4 += abs(e4)
        m5 += abs(e5)
        m6 += abs(e6)
        m7 += abs(e7)
    tail_squares = 0.0  # the last count % 8 errors, in sums of their own
    tail_magnitudes = 0.0
    for index in range(blocks * 8, count):
        error = np.float64(flat_predictions[index]) - np.float64(flat_labels[index])
        tail_squares += error * error
        tail_magnitudes += abs(error)
    width = predictions.size // predictions.shape[0]
    squares = (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))) + tail_squares
    magnitudes = (((m0 + m1) + (m2 + m3)) + ((m4 + m5) + (m6 + m7))) + tail_magnitudes
    loss = 0.5 * squares / width
    return loss * grad_scale, squares / width, magnitudes / width


@numba.njit(**_JIT)
def logistic_stats(probabilities, labels, rows, grad_scale, floor):
    """(sum over rows of the mean binary cross-entropy * grad_scale, with probabilities
    clipped to [floor, 1 - floor], and the error sums of :func:`regression_stats`)."""
    width = probabilities.size // probabilities.shape[0]
    flat_probabilities = probabilities.reshape((probabilities.shape[0], width))
    flat_labels = labels.reshape((probabilities.shape[0], width))
    entropy = 0.0
    squares = 0.0
    magnitudes = 0.0
    for row in range(rows):
        for column in range(width):
            probability = np.float64(flat_probabilities[row, column])
            target = np.float64(flat_labels[row, column])
            clipped = min(max(probability, floor), 1.0 - floor)
            entropy -= target * math.log(clipped) + (1.0 - target) * math.log1p(-clipped)
            error = probability - target
            squares += error * error
            magnitudes += abs(error)
    return entropy / width * grad_scale, squares / width, magnitudes / width


@numba.njit(**_JIT)
def perplexity_sum(probabilities, labels, rows, floor):
    """Sum over rows of -log max(p[label], floor) (Perplexity's ``sum_metric``)."""
    total = 0.0
    for row in range(rows):
        picked = probabilities[row, int(labels[row])]
        total -= math.log(max(float(picked), floor))
    return total


@numba.njit(**_JIT)
def cross_entropy_sum(probabilities, labels, rows, eps):
    """Sum over rows of -log(p[label] + eps) (CrossEntropy's ``sum_metric``)."""
    total = 0.0
    for row in range(rows):
        picked = probabilities[row, int(labels[row])]
        total -= math.log(float(picked) + eps)
    return total


@numba.njit(**_JIT)
def top_k_hits(probabilities, labels, rows, k):
    """The rows whose label ranks among the ``k`` highest probabilities, a tie going to the
    lower class as a stable sort ranks it (TopKAccuracy's ``sum_metric``)."""
    classes = probabilities.shape[1]
    hits = 0.0
    for row in range(rows):
        label = int(labels[row])
        picked = probabilities[row, label]
        ahead = 0
        for column in range(classes):
            value = probabilities[row, column]
            if value > picked or (value == picked and column < label):
                ahead += 1
        if ahead < k:
            hits += 1.0
    return hits


@numba.njit(**_JIT)
def zero_fill(array):
    flat = array.ravel()
    for index in range(flat.size):
        flat[index] = 0.0


@numba.njit(**_JIT)
def copy_array(source, target):
    """``target[...] = source`` for arrays of one size (a carried LSTM state)."""
    flat_source = source.ravel()
    flat_target = target.ravel()
    for index in range(flat_target.size):
        flat_target[index] = flat_source[index]


@numba.njit(**_JIT)
def pack_into(packed, offset, array):
    """Copy ``array`` into ``packed`` from ``offset``; the offset after it. A data-parallel
    loop packs every gradient into one buffer so that one allreduce sums them all."""
    flat = array.ravel()
    for index in range(flat.size):
        packed[offset + index] = flat[index]
    return offset + flat.size


@numba.njit(**_JIT)
def unpack_from(packed, offset, array):
    """Copy ``array.size`` elements of ``packed`` from ``offset`` into ``array``; the offset
    after them (the inverse of :func:`pack_into`)."""
    flat = array.ravel()
    for index in range(flat.size):
        flat[index] = packed[offset + index]
    return offset + flat.size


NAMES = (
    "gather_rows",
    "pack_into",
    "unpack_from",
    "all_finite",
    "softmax_stats",
    "regression_stats",
    "logistic_stats",
    "perplexity_sum",
    "cross_entropy_sum",
    "top_k_hits",
    "zero_fill",
    "copy_array",
)
"""What a generated training loop imports from this module."""

__all__ = list(NAMES)
