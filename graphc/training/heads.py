"""The loss heads of a model as ``Model.fit`` sees them: how their gradient is scaled over the
batch (hence the default ``rescale_grad``), and the loss value of a batch, computed from the
outputs and labels that the executor already holds.

The learning rate means what it means in MXNet
----------------------------------------------
MXNet's ``Module`` sets ``rescale_grad = 1 / batch_size``, because its loss heads sum their
gradient over the batch by default (``SoftmaxOutput`` with ``normalization='null'``,
``LinearRegressionOutput``, ``LogisticRegressionOutput``, ``MakeLoss``): the step is then
the gradient of the *mean* loss times the learning rate. graphc's heads have the same
defaults and the same gradients, and ``fit`` makes the same choice, so a learning rate
carries over from MXNet unchanged. A head that already divides its gradient
(``normalization='batch'`` or ``'valid'``, as ``models.charlm`` uses) gets
``rescale_grad = 1``: MXNet's ``Module`` would divide a second time there, and to reproduce
that exactly, pass ``rescale_grad=1 / batch_size`` in ``optimizer_params``.

The training loss
-----------------
Each head's loss is the one its gradient belongs to (``loss`` in ``graphc/ir/ops/loss.py``),
averaged per sample instead of summed, and times the head's ``grad_scale``; a model with
several heads reports their sum.

* ``SoftmaxOutput``: the mean of ``-log p[label]`` over the label positions that count (not
  ``ignore_label`` when ``use_ignore``), from the output probabilities floored at ``1e-12``
  (``graphc.training.metric.CrossEntropy``'s floor), so an underflowed probability gives a large
  finite loss. For ``models.charlm`` this is the mean per character.
* ``LinearRegressionOutput``: half the squared error summed over a sample's outputs and
  divided by their number (the op's loss), averaged over the samples.
* ``LogisticRegressionOutput``: binary cross-entropy from the probabilities, floored at
  ``1e-12`` and ``1 - 1e-12``, per output of a sample, averaged over the samples.
* ``MakeLoss``: the sum of its values divided by the batch size (by the count of values
  above ``valid_thresh`` with ``normalization='valid'``).

Padding rows (``DataBatch.pad``) are left out when the head has one row per sample.

>>> import graphc as gc
>>> heads = loss_heads(gc.models.mlp())
>>> [(head.op, head.label, head.sums_over_batch) for head in heads]
[('SoftmaxOutput', 'softmax_label', True)]
>>> default_rescale_grad(heads, batch_size=50)
0.02
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphc.ir.registry import get_op
from graphc.ir.symbol import Symbol

PROBABILITY_FLOOR = 1e-12
NORMALIZING = ("batch", "valid")


@dataclass(frozen=True)
class LossHead:
    """One output of a symbol that is a loss head.

    Attributes
    ----------
    output : int
        Its position among the symbol's outputs.
    op : str
    attrs : mapping
        The node's attributes (``normalization``, ``grad_scale``, ...).
    label : str or None
        The name of the variable that feeds its label, None when the label is computed by
        other nodes or the head takes none (``MakeLoss``).
    """

    output: int
    op: str
    attrs: Mapping[str, Any]
    label: str | None

    @property
    def sums_over_batch(self) -> bool:
        """Whether the gradient is a sum over the batch (not divided by the head itself)."""
        return self.attrs.get("normalization", "null") not in NORMALIZING


def loss_heads(symbol: Symbol) -> list[LossHead]:
    """The outputs of ``symbol`` that are loss heads, in output order."""
    heads = []
    for position, entry in enumerate(symbol.entries):
        node = entry.node
        if node.is_variable or not get_op(node.op).is_loss_head:
            continue
        label = None
        if len(node.inputs) > 1 and node.inputs[1].node.is_variable:
            label = node.inputs[1].node.name
        heads.append(LossHead(position, node.op, dict(node.attrs), label))
    return heads


def default_rescale_grad(heads: Sequence[LossHead], batch_size: int) -> float:
    """``1 / batch_size`` when every head sums its gradient over the batch, 1 when every head
    divides it already; a mix has no single right value and is an error."""
    summed = [head for head in heads if head.sums_over_batch]
    if len(summed) == len(heads):
        return 1.0 / batch_size
    if not summed:
        return 1.0
    raise ValueError(
        "fit: some loss heads sum their gradient over the batch "
        f"({', '.join(head.op for head in summed)}) and others divide it "
        f"({', '.join(head.op for head in heads if not head.sums_over_batch)}), so no one "
        "rescale_grad fits both; give rescale_grad in optimizer_params"
    )


def valid_rows(rows: int, batch_size: int, pad: int) -> int | None:
    """How many leading rows of an output hold real samples: ``batch_size - pad`` when the
    output has one row per sample and the batch is padded, else None (all of them).

    >>> valid_rows(50, 50, 8), valid_rows(50, 50, 0), valid_rows(150, 50, 8)
    (42, None, None)
    """
    if pad and rows == batch_size:
        return batch_size - pad
    return None


def batch_loss(
    heads: Sequence[LossHead],
    outputs: Sequence[np.ndarray],
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    pad: int = 0,
) -> float | None:
    """The training loss of the batch the executor last ran: the sum over ``heads`` of
    each head's mean loss, or None when no head has its label in ``arrays``.

    >>> import numpy as np
    >>> head = LossHead(0, "SoftmaxOutput", {"normalization": "null"}, "y")
    >>> probs = np.array([[0.5, 0.5], [0.25, 0.75]], np.float32)
    >>> round(batch_loss([head], [probs], {"y": np.array([0.0, 1.0])}, batch_size=2), 6)
    0.490415
    """
    total = 0.0
    counted = False
    for head in heads:
        if head.op != "MakeLoss" and head.label not in arrays:
            continue
        output = outputs[head.output]
        rows = valid_rows(output.shape[0], batch_size, pad) if output.ndim else None
        label = arrays[head.label] if head.op != "MakeLoss" else None
        total += head_loss(head, output, label, rows, batch_size)
        counted = True
    return total if counted else None


def head_loss(
    head: LossHead,
    output: np.ndarray,
    label: np.ndarray | None,
    rows: int | None,
    batch_size: int,
) -> float:
    """The mean loss of one head over its first ``rows`` rows (all when None)."""
    output = np.asarray(output)[slice(rows)]
    scale = float(head.attrs.get("grad_scale", 1.0))
    if head.op == "MakeLoss":
        return scale * _make_loss(head.attrs, output, batch_size if rows is None else rows)
    label = np.asarray(label, dtype=np.float64)[slice(rows)]
    if not np.all(np.isfinite(label)):
        return float("nan")
    if head.op == "SoftmaxOutput":
        return scale * _softmax_loss(head.attrs, output, label)
    output = output.astype(np.float64)
    if head.op == "LinearRegressionOutput":
        residual = output - label.reshape(output.shape)
        return scale * 0.5 * _mean_per_output(residual**2)
    if head.op == "LogisticRegressionOutput":
        prob = np.clip(output, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
        target = label.reshape(output.shape)
        per_element = -(target * np.log(prob) + (1.0 - target) * np.log1p(-prob))
        return scale * _mean_per_output(per_element)
    raise ValueError(
        f"fit: no training loss is defined for the loss head {head.op}; known heads: "
        "SoftmaxOutput, LinearRegressionOutput, LogisticRegressionOutput, MakeLoss"
    )


def _softmax_loss(attrs: Mapping[str, Any], probs: np.ndarray, label: np.ndarray) -> float:
    axis = 1 if attrs.get("multi_output") else -1
    if not (attrs.get("multi_output") or attrs.get("preserve_shape")):
        probs = probs.reshape(probs.shape[0], -1)
    label = label.reshape(np.delete(np.array(probs.shape), axis % probs.ndim).tolist())
    valid = np.ones(label.shape, dtype=bool)
    if attrs.get("use_ignore"):
        valid = label != attrs.get("ignore_label", -1.0)
    classes = probs.shape[axis]
    indices = np.where(valid, label, 0).astype(np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= classes):
        raise ValueError(
            f"fit: SoftmaxOutput labels must be class indices in [0, {classes}), but they "
            f"range from {label[valid].min():g} to {label[valid].max():g}"
        )
    # Only the picked probabilities go to float64, not the whole (rows, classes) output.
    picked = np.take_along_axis(probs, np.expand_dims(indices, axis), axis=axis)
    picked = np.squeeze(picked, axis=axis).astype(np.float64)
    nll = -np.log(np.maximum(picked, PROBABILITY_FLOOR))
    return float(np.sum(nll * valid) / max(int(valid.sum()), 1))


def _mean_per_output(per_element: np.ndarray) -> float:
    """Sum over each sample's outputs divided by their number, averaged over the samples:
    the mean over all elements."""
    return float(per_element.mean()) if per_element.size else 0.0


def _make_loss(attrs: Mapping[str, Any], values: np.ndarray, samples: int) -> float:
    values = values.astype(np.float64)
    if attrs.get("normalization") == "valid":
        count = int(np.sum(values > attrs.get("valid_thresh", 0.0)))
        return float(np.sum(values)) / max(count, 1)
    return float(np.sum(values)) / max(samples, 1)
