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

The training loss, the labels and the default metric
----------------------------------------------------
Each head's loss is the one its gradient belongs to, averaged per sample instead of summed,
and times the head's ``grad_scale``; a model with several heads reports their sum. It is
computed from the head's output as the op's definition says (``HeadDef.batch_loss`` in
``graphc/ir/ops/loss.py``: ``SoftmaxOutput``'s mean -log p[label] from probabilities floored
at ``PROBABILITY_FLOOR``, for ``models.charlm`` the mean per character; the regression heads'
half squared error and binary cross-entropy; ``MakeLoss``'s sum per sample). The same
definition says which label values a head takes (:func:`check_label`), its default metric
(:func:`default_metric`) and the compiled loop's statistic for it
(``graphc.training.compiled_loop``). Padding rows (``DataBatch.pad``) are left out when the
head has one row per sample.

>>> import graphc as gc
>>> heads = loss_heads(gc.models.mlp())
>>> [(head.op, head.label, head.sums_over_batch) for head in heads]
[('SoftmaxOutput', 'softmax_label', True)]
>>> default_rescale_grad(heads, batch_size=50)
0.02
>>> default_metric(heads), default_metric(loss_heads(gc.models.linreg()))
('accuracy', 'mse')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphc.ir.ops.loss import label_variable
from graphc.ir.registry import HeadDef, get_op
from graphc.ir.symbol import Symbol

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
        The name of the variable that feeds its label (directly or through ``Reshape``),
        None when the label is computed by other nodes or the head takes none
        (``MakeLoss``).
    name : str
        The node's name (the op's, when not given).
    """

    output: int
    op: str
    attrs: Mapping[str, Any]
    label: str | None
    name: str = ""

    def __post_init__(self) -> None:
        # Every attribute, defaults filled in, as the definition's functions read them.
        object.__setattr__(self, "attrs", get_op(self.op).parse_attrs(self.attrs, self.describe()))

    @property
    def definition(self) -> HeadDef:
        """What the op's definition says of it as a head (``graphc/ir/ops/loss.py``)."""
        return get_op(self.op).head

    @property
    def sums_over_batch(self) -> bool:
        """Whether the gradient is a sum over the batch (not divided by the head itself)."""
        return self.attrs.get("normalization", "null") not in NORMALIZING

    def describe(self) -> str:
        """``SoftmaxOutput 'softmax'``."""
        return f"{self.op} {(self.name or self.op)!r}"


def loss_heads(symbol: Symbol) -> list[LossHead]:
    """The outputs of ``symbol`` that are loss heads, in output order."""
    heads = []
    for position, entry in enumerate(symbol.entries):
        node = entry.node
        if node.is_variable or not get_op(node.op).is_loss_head:
            continue
        label = label_variable(node)
        heads.append(LossHead(position, node.op, dict(node.attrs), label, node.name))
    return heads


def label_names_of(heads: Sequence[LossHead]) -> tuple[str, ...]:
    """The variables that feed the heads' labels, in output order: what ``Model`` takes as
    its ``label_names`` when none are given.

    >>> import graphc as gc
    >>> label_names_of(loss_heads(gc.models.linreg()))
    ('lro_label',)
    """
    names: list[str] = []
    for head in heads:
        if head.label is not None and head.label not in names:
            names.append(head.label)
    return tuple(names)


def default_metric(heads: Sequence[LossHead], stream: bool = False) -> str:
    """``Model.fit``'s and ``score``'s metric when none is given: the default of the first
    loss head that has one (``HeadDef.default_metric``: accuracy for ``SoftmaxOutput``, mse
    for the regression heads), or its ``stream_metric`` when the labels are a token stream
    (``stream``: a ``BPTTIter``, as ``models.charlm`` trains on: perplexity; ``MakeLoss``:
    the loss itself); accuracy, MXNet's default, when no head has one.

    >>> import graphc as gc
    >>> default_metric(loss_heads(gc.models.charlm(11, 6, 7)), stream=True)
    'perplexity'
    """
    for head in heads:
        definition = head.definition
        if stream and definition.stream_metric:
            return definition.stream_metric
        if definition.default_metric:
            return definition.default_metric
    return "accuracy"


def check_label(
    head: LossHead,
    label: np.ndarray,
    output_shape: tuple,
    where: str,
    located: Callable[[tuple[int, ...]], str],
) -> None:
    """Raise ValueError when ``label`` holds a value the head cannot take (a
    ``SoftmaxOutput`` label that is not a class index, NaN included), naming the head, its
    label variable, the first such value and where it is: ``located(index)`` of its index
    in ``label``.

    >>> import graphc as gc
    >>> head = loss_heads(gc.models.mlp())[0]
    >>> check_label(head, np.array([1.0, 12.0]), (2, 10), "fit", lambda index: f"row {index[0]}")
    Traceback (most recent call last):
    ...
    ValueError: fit: the label 'softmax_label' of SoftmaxOutput 'softmax' is 12.0 at row 1; it must be a class index in [0, 10)
    """
    definition = head.definition
    if definition.bad_label is None:
        return
    position = definition.bad_label(head.attrs, output_shape, label)
    if position is None:
        return
    index = tuple(int(k) for k in np.unravel_index(position, np.shape(label)))
    value = float(np.asarray(label).flat[position])
    raise ValueError(
        f"{where}: the label {head.label!r} of {head.describe()} is {value!r} at "
        f"{located(index)}; it must be {definition.label_rule(head.attrs, output_shape)}"
    )


def default_rescale_grad(heads: Sequence[LossHead], batch_size: int, workers: int = 1) -> float:
    """``1 / batch_size`` when every head sums its gradient over the batch, 1 when every head
    divides it already; a mix has no single right value and is an error. With ``workers``
    data-parallel ranks, whose gradients are summed, ``1 / (batch_size * workers)`` and
    ``1 / workers``: the step one process takes at the global batch."""
    summed = [head for head in heads if head.sums_over_batch]
    if len(summed) == len(heads):
        return 1.0 / (batch_size * workers)
    if not summed:
        return 1.0 / workers
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
        takes_label = head.definition.output != "loss"
        if takes_label and head.label not in arrays:
            continue
        output = outputs[head.output]
        rows = valid_rows(output.shape[0], batch_size, pad) if output.ndim else None
        label = arrays[head.label] if takes_label else None
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
    """The mean loss of one head over its first ``rows`` rows (all when None), times its
    ``grad_scale``; NaN when a label is not finite."""
    output = np.asarray(output)
    if rows is not None:  # a 0-d loss (MakeLoss of a sum) has no rows to cut
        output = output[:rows]
    scale = float(head.attrs.get("grad_scale", 1.0))
    definition = head.definition
    if label is not None:
        label = np.asarray(label, dtype=np.float64)[slice(rows)]
        if not np.all(np.isfinite(label)):
            return float("nan")
        label = label.reshape(definition.label_shape(head.attrs, output.shape))
    samples = batch_size if rows is None else rows
    return scale * definition.batch_loss(head.attrs, output, label, samples)
