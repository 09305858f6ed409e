"""Compiled helpers the generated training loop calls between kernels: cutting a batch out
of the in-memory data, checking values are finite, and the per-batch loss and metric sums
of the loss heads the compiled loop supports.

The sums mean exactly what ``graphc.training.heads`` (the loss) and ``graphc.training.metric`` (the
metric's ``sum_metric`` and ``num_inst``) compute in Python, over the first ``rows`` rows of
the batch (padding rows left out), so a compiled epoch reports the numbers a step-by-step
epoch reports.
"""

from __future__ import annotations

import math

import numba

_JIT = {"cache": True, "error_model": "numpy"}

PROBABILITY_FLOOR = 1e-12


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
def softmax_stats(probabilities, labels, rows, grad_scale):
    """(sum over rows of -log p[label] * grad_scale, correct predictions) of a
    ``SoftmaxOutput`` with one row per sample; a label that is not finite makes the loss NaN."""
    classes = probabilities.shape[1]
    loss = 0.0
    correct = 0.0
    for row in range(rows):
        label = labels[row]
        if not math.isfinite(label):
            return math.nan, correct
        picked = probabilities[row, int(label)]
        loss -= math.log(max(float(picked), PROBABILITY_FLOOR))
        best = 0
        for column in range(1, classes):
            if probabilities[row, column] > probabilities[row, best]:
                best = column
        if best == label:
            correct += 1.0
    return loss * grad_scale, correct


@numba.njit(**_JIT)
def regression_stats(predictions, labels, rows, grad_scale, absolute):
    """(sum over rows of half the mean squared error * grad_scale, the metric's sum): the
    sum over rows of the mean squared error, or of the mean absolute error when
    ``absolute``. Labels are read in the predictions' layout."""
    width = predictions.size // predictions.shape[0]
    flat_predictions = predictions.reshape((predictions.shape[0], width))
    flat_labels = labels.reshape((predictions.shape[0], width))
    squares = 0.0
    magnitudes = 0.0
    for row in range(rows):  # one division at the end rather than one per row
        for column in range(width):
            error = float(flat_predictions[row, column]) - float(flat_labels[row, column])
            squares += error * error
            magnitudes += abs(error)
    loss = 0.5 * squares / width
    metric = (magnitudes if absolute else squares) / width
    return loss * grad_scale, metric


PERPLEXITY_FLOOR = 1e-10
"""``graphc.training.metric.Perplexity``'s floor on a probability."""


@numba.njit(**_JIT)
def perplexity_sum(probabilities, labels, rows):
    """Sum over rows of -log p[label] with Perplexity's floor (its ``sum_metric``)."""
    total = 0.0
    for row in range(rows):
        picked = probabilities[row, int(labels[row])]
        total -= math.log(max(float(picked), PERPLEXITY_FLOOR))
    return total


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


NAMES = (
    "gather_rows",
    "all_finite",
    "softmax_stats",
    "regression_stats",
    "perplexity_sum",
    "zero_fill",
    "copy_array",
)
"""What a generated training loop imports from this module."""

__all__ = [*NAMES, "PROBABILITY_FLOOR", "PERPLEXITY_FLOOR"]
