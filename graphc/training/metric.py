"""Evaluation metrics with MXNet's ``mx.metric`` interface: ``update``, ``get``, ``reset``.

A metric accumulates ``sum_metric`` and ``num_inst`` over the batches given to
:meth:`EvalMetric.update` and reports their ratio; ``reset`` starts again. ``update`` takes
lists of label and prediction arrays, one pair per output (a single array is taken as a list
of one), and ``num_valid=n`` counts only the first ``n`` samples of each, so the padded
tail of a last, partial batch is left out.

>>> import numpy as np
>>> from graphc.training.metric import Accuracy
>>> acc = Accuracy()
>>> acc.update([np.array([0, 1, 1])], [np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])])
>>> acc.get()
('accuracy', 0.6666666666666666)

``Model.fit``'s compiled loop computes a metric itself when the metric says how
(:meth:`EvalMetric.loop_statistic`, for what the loss head's output is), with the sums
``update`` would give; otherwise ``fit`` trains step by step and warns.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graphc.backend.loop_plan import LoopStatistic
from graphc.ir.errors import ShapeError
from graphc.ir.ops.loss import PROBABILITY_FLOOR

Arrays = np.ndarray | Sequence[np.ndarray]

_CLASSES, _PREDICTIONS = "class_probabilities", "predictions"  # HeadDef.output

_REPORTING = ("update", "_update_pair", "_per_sample", "get", "value_from", "values_from")
"""The methods that say how a metric's sums grow and what it reports."""

# Perplexity floors each probability at this before the log, as MXNet's Perplexity does, so
# one zero probability gives a large but finite value instead of infinity.
PERPLEXITY_PROBABILITY_FLOOR = 1e-10


class EvalMetric:
    """Base class: running ``sum_metric`` and ``num_inst``; the value is their ratio.

    A subclass implements ``_update_pair(label, pred, num_valid)`` for one output.

    Attributes
    ----------
    name : str
    sum_metric : float
        The sum of the per-instance values seen since the last reset.
    num_inst : int
        The number of instances (samples, or tokens for Perplexity) seen since the reset.
    """

    def __init__(self, name: str) -> None:
        self.name = str(name)
        self.reset()

    def reset(self) -> None:
        """Forget every update.

        >>> metric = MSE()
        >>> metric.update([np.array([1.0])], [np.array([3.0])])
        >>> metric.reset()
        >>> metric.num_inst, metric.sum_metric
        (0, 0.0)
        """
        self.num_inst = 0
        self.sum_metric = 0.0

    def update(self, labels: Arrays, preds: Arrays, num_valid: int | None = None) -> None:
        """Add one batch: ``labels[k]`` and ``preds[k]`` for each output ``k``.

        Parameters
        ----------
        labels, preds : list of ndarray, or one ndarray
            The same number of each.
        num_valid : int, optional
            Count only the first ``num_valid`` samples (rows along axis 0) of every label
            and prediction: the rest are padding, as in the last batch of an MXNet
            ``DataIter`` with ``pad > 0`` (``num_valid = batch_size - pad``).

        >>> metric = MAE()
        >>> metric.update(np.array([1.0, 2.0, 0.0]), np.array([2.0, 2.0, 9.0]), num_valid=2)
        >>> metric.get()
        ('mae', 0.5)
        """
        for label, pred in _pairs(labels, preds):
            self._update_pair(label, pred, num_valid)

    def _update_pair(self, label: np.ndarray, pred: np.ndarray, num_valid: int | None) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define _update_pair")

    def get(self) -> tuple[str, float]:
        """``(name, sum_metric / num_inst)``; the value is NaN before any instance.

        >>> Accuracy().get()
        ('accuracy', nan)
        """
        return (self.name, self.value_from(self.sum_metric, self.num_inst))

    def value_from(self, sum_metric: float, num_inst: int) -> float:
        """The value ``get`` reports for these sums (NaN without instances)."""
        return self._from_mean(sum_metric / num_inst) if num_inst else float("nan")

    def values_from(self, sums: np.ndarray, counts: np.ndarray) -> list[float]:
        """:meth:`value_from` of each pair of ``sums`` and ``counts`` (NumPy arrays), with
        one division for all: ``Model.fit`` records 10,000 one-batch epochs at once."""
        means = np.full(len(counts), np.nan)
        np.divide(sums, counts, out=means, where=np.asarray(counts) > 0)
        if type(self)._from_mean is EvalMetric._from_mean:
            return means.tolist()
        return [self._from_mean(mean) for mean in means.tolist()]

    def _from_mean(self, mean: float) -> float:
        return float(mean)

    def loop_statistic(self, head_output: str) -> LoopStatistic | None:
        """How ``Model.fit``'s compiled loop computes this metric's sums for a loss head
        whose output is ``head_output`` (``HeadDef.output``: 'class_probabilities' or
        'predictions'), as a name of ``backend.loop_plan.METRIC_STATISTICS``; None when it
        cannot (``fit`` then trains step by step)."""
        return None

    def compiled_loop_statistic(self, head_output: str) -> LoopStatistic | None:
        """:meth:`loop_statistic`, unless a subclass below the class that defines it
        changes the sums or what is reported (``update``, ``_update_pair``, ``_per_sample``,
        ``get``, ``value_from``): the loop would not compute what that subclass does."""
        classes = type(self).__mro__
        owner = next(k for k, cls in enumerate(classes) if "loop_statistic" in vars(cls))
        changed = [name for cls in classes[:owner] for name in _REPORTING if name in vars(cls)]
        return None if changed else self.loop_statistic(head_output)

    def get_name_value(self) -> list[tuple[str, float]]:
        """``[(name, value), ...]``: one pair, or one per child of a composite metric.

        >>> Accuracy().get_name_value()
        [('accuracy', nan)]
        """
        names, values = self.get()
        if isinstance(names, str):
            return [(names, values)]
        return list(zip(names, values))

    def __str__(self) -> str:
        return f"EvalMetric: {dict(self.get_name_value())}"


class Accuracy(EvalMetric):
    """The fraction of samples whose predicted class is the label, as ``mx.metric.Accuracy``.

    The predicted class is the argmax of ``pred`` along ``axis``, except when ``pred`` has the
    label's shape: then ``pred`` already holds class indices. Ties go to the lowest class.

    >>> acc = Accuracy()
    >>> acc.update([np.array([2.0, 0.0])], [np.array([2, 1])])
    >>> acc.get()
    ('accuracy', 0.5)
    """

    def __init__(self, axis: int = 1, name: str = "accuracy") -> None:
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise ValueError(f"Accuracy: axis={axis!r} must be an int")
        self.axis = int(axis)
        super().__init__(name)

    def _update_pair(self, label: np.ndarray, pred: np.ndarray, num_valid: int | None) -> None:
        label, pred = _leading(self.name, label, pred, num_valid)
        predicted = pred
        if pred.shape != label.shape:
            if not -pred.ndim <= self.axis < pred.ndim:
                raise ShapeError(
                    f"{self.name}: axis={self.axis} is out of range for predictions of shape "
                    f"{pred.shape} (label shape {label.shape})"
                )
            predicted = np.argmax(pred, axis=self.axis)
        if predicted.size != label.size:
            raise ShapeError(
                f"{self.name}: label of shape {label.shape} does not match predictions of shape "
                f"{pred.shape} (classes along axis {self.axis} give {predicted.shape})"
            )
        hits = predicted.astype(np.int64).ravel() == label.astype(np.int64).ravel()
        self.sum_metric += float(hits.sum())
        self.num_inst += int(label.size)

    def loop_statistic(self, head_output: str) -> LoopStatistic | None:
        # The loop's probabilities are (rows, classes): axis 1 is the classes' axis.
        if head_output == _CLASSES and self.axis in (1, -1):
            return LoopStatistic("accuracy")
        return None


class TopKAccuracy(EvalMetric):
    """The fraction of samples whose label is among the ``top_k`` highest scores.

    ``pred`` is ``(N, C)``, the label ``N`` class indices. Among equal scores the lower class
    ranks first (a stable sort), so ``top_k=1`` agrees with :class:`Accuracy`. The name is
    ``top_k_accuracy_<k>``, as in MXNet.

    >>> top2 = TopKAccuracy(top_k=2)
    >>> top2.update([np.array([2, 0])], [np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])])
    >>> top2.get()
    ('top_k_accuracy_2', 0.0)
    """

    def __init__(self, top_k: int = 1, name: str = "top_k_accuracy") -> None:
        is_int = isinstance(top_k, numbers.Integral) and not isinstance(top_k, bool)
        if not (is_int and top_k >= 1):
            raise ValueError(f"TopKAccuracy: top_k={top_k!r} must be an int >= 1")
        self.top_k = int(top_k)
        super().__init__(f"{name}_{self.top_k}")

    def _update_pair(self, label: np.ndarray, pred: np.ndarray, num_valid: int | None) -> None:
        label, pred = _leading(self.name, label, pred, num_valid)
        if pred.ndim != 2 or label.size != pred.shape[0]:
            raise ShapeError(
                f"{self.name}: predictions must be (N, C) scores with N labels, but the label of "
                f"shape {label.shape} does not match predictions of shape {pred.shape}"
            )
        # A stable sort of the negated scores: highest first, ties to the lower class index.
        ranked = np.argsort(-pred.astype(np.float64), axis=1, kind="stable")[:, : self.top_k]
        hits = (ranked == label.astype(np.int64).reshape(-1, 1)).any(axis=1)
        self.sum_metric += float(hits.sum())
        self.num_inst += int(label.size)

    def loop_statistic(self, head_output: str) -> LoopStatistic | None:
        return LoopStatistic("top_k", (self.top_k,)) if head_output == _CLASSES else None


class MSE(EvalMetric):
    """Mean squared error per sample, averaged over every sample seen.

    The label is reshaped to the prediction's shape when they have as many values; each
    sample (row along axis 0) contributes the mean of its squared errors, and ``num_inst``
    counts samples. MXNet 1.x instead averages the per-batch means (``num_inst`` counts
    batches); the two agree whenever all batches are the same size. MXNet 2 does as here.

    >>> mse = MSE()
    >>> mse.update([np.array([1.0, 2.0])], [np.array([[1.5], [4.0]])])
    >>> mse.get()
    ('mse', 2.125)
    """

    def __init__(self, name: str = "mse") -> None:
        super().__init__(name)

    def _per_sample(self, errors: np.ndarray) -> np.ndarray:
        return np.mean(errors**2, axis=1)

    def _update_pair(self, label: np.ndarray, pred: np.ndarray, num_valid: int | None) -> None:
        if pred.ndim == 0 or label.size != pred.size:
            raise ShapeError(
                f"{self.name}: label of shape {label.shape} ({label.size} values) does not "
                f"match predictions of shape {pred.shape} ({pred.size} values)"
            )
        label, pred = _leading(self.name, label.reshape(pred.shape), pred, num_valid)
        samples = pred.shape[0]
        if samples == 0:
            return
        errors = (label.astype(np.float64) - pred.astype(np.float64)).reshape(samples, -1)
        self.sum_metric += float(self._per_sample(errors).sum())
        self.num_inst += samples

    def loop_statistic(self, head_output: str) -> LoopStatistic | None:
        return LoopStatistic("squared_error") if head_output == _PREDICTIONS else None


class MAE(MSE):
    """Mean absolute error per sample, averaged over every sample seen (see :class:`MSE`).

    >>> mae = MAE()
    >>> mae.update([np.array([1.0, 2.0])], [np.array([1.5, 4.0])])
    >>> mae.get()
    ('mae', 1.25)
    """

    def __init__(self, name: str = "mae") -> None:
        super().__init__(name)

    def _per_sample(self, errors: np.ndarray) -> np.ndarray:
        return np.mean(np.abs(errors), axis=1)

    def loop_statistic(self, head_output: str) -> LoopStatistic | None:
        return LoopStatistic("absolute_error") if head_output == _PREDICTIONS else None


class RMSE(MSE):
    """The square root of the mean squared error over every sample seen.

    ``sum_metric`` and ``num_inst`` accumulate as in :class:`MSE` and ``get`` takes the root
    of their ratio, so the value is the RMSE of all the data, however it was batched.
    MXNet 1.x averages the per-batch RMSEs instead, which is smaller unless every batch has
    the same error (the mean of square roots is at most the root of the mean); MXNet 2
    does as here.

    >>> rmse = RMSE()
    >>> rmse.update([np.array([0.0, 0.0])], [np.array([3.0, 4.0])])
    >>> rmse.get()
    ('rmse', 3.5355339059327378)
    """

    def __init__(self, name: str = "rmse") -> None:
        super().__init__(name)

    def _from_mean(self, mean: float) -> float:
        return math.sqrt(mean)


class CrossEntropy(EvalMetric):
    """Mean of ``-log(p[label] + eps)`` over samples, as ``mx.metric.CrossEntropy``.

    ``pred`` holds probabilities (a softmax output) with the classes along the last axis,
    the label one class index per row of ``pred``.

    >>> ce = CrossEntropy()
    >>> ce.update([np.array([0, 1])], [np.array([[0.5, 0.5], [0.75, 0.25]])])
    >>> round(ce.get()[1], 6)  # (log 2 + log 4) / 2
    1.039721
    """

    def __init__(self, eps: float = PROBABILITY_FLOOR, name: str = "cross-entropy") -> None:
        is_real = isinstance(eps, numbers.Real) and not isinstance(eps, bool)
        if not (is_real and math.isfinite(eps) and eps >= 0):
            raise ValueError(f"CrossEntropy: eps={eps!r} must be a finite number >= 0")
        self.eps = float(eps)
        super().__init__(name)

    def _update_pair(self, label: np.ndarray, pred: np.ndarray, num_valid: int | None) -> None:
        label, pred = _leading(self.name, label, pred, num_valid)
        probs = _class_rows(self.name, label, pred)
        picked = _pick(self.name, probs, label.ravel())
        self.sum_metric += float(-np.log(picked + self.eps).sum())
        self.num_inst += int(picked.size)

    def loop_statistic(self, head_output: str) -> LoopStatistic | None:
        return LoopStatistic("cross_entropy", (self.eps,)) if head_output == _CLASSES else None


class Perplexity(EvalMetric):
    """``exp`` of the mean cross-entropy per token, as ``mx.metric.Perplexity``.

    ``pred`` holds probabilities with the vocabulary along ``axis``; the label holds one
    token index per row, e.g. ``pred (N*T, V)`` with a label ``(N*T,)`` or ``(N, T)``, whose
    flattened order must be the order of ``pred``'s rows. Tokens whose label equals
    ``ignore_label`` count neither in the sum nor in ``num_inst``. ``num_valid`` applies to
    the label's first axis; for padding along another axis (a time-major label ``(T, N)``),
    mark the padded tokens with ``ignore_label`` instead.

    >>> ppl = Perplexity(ignore_label=-1)
    >>> ppl.update([np.array([[1, -1]])], [np.array([[0.75, 0.25], [0.5, 0.5]])])
    >>> ppl.get()  # exp(-log 0.25)
    ('perplexity', 4.0)
    """

    def __init__(
        self, ignore_label: int | None = None, axis: int = -1, name: str = "perplexity"
    ) -> None:
        self.ignore_label = ignore_label
        self.axis = int(axis)
        super().__init__(name)

    def _update_pair(self, label: np.ndarray, pred: np.ndarray, num_valid: int | None) -> None:
        if not -pred.ndim <= self.axis < pred.ndim:
            raise ShapeError(
                f"{self.name}: axis={self.axis} is out of range for predictions of shape "
                f"{pred.shape}"
            )
        vocab = np.moveaxis(pred, self.axis, -1)
        if label.size * vocab.shape[-1] != vocab.size:
            raise ShapeError(
                f"{self.name}: label of shape {label.shape} needs one token per row of the "
                f"predictions, but predictions of shape {pred.shape} have "
                f"{vocab.size // max(vocab.shape[-1], 1)} rows"
            )
        label, vocab = _leading(
            self.name, label, vocab.reshape(*label.shape, vocab.shape[-1]), num_valid
        )
        tokens = label.ravel()
        probs = vocab.reshape(tokens.size, -1)
        if self.ignore_label is not None:
            kept = tokens != self.ignore_label
            tokens, probs = tokens[kept], probs[kept]
        picked = _pick(self.name, probs, tokens)
        self.sum_metric += float(-np.log(np.maximum(picked, PERPLEXITY_PROBABILITY_FLOOR)).sum())
        self.num_inst += int(picked.size)

    def _from_mean(self, mean: float) -> float:
        return math.exp(mean)

    def loop_statistic(self, head_output: str) -> LoopStatistic | None:
        # The loop counts every row as a token: ignored tokens would need a count per step.
        if head_output != _CLASSES or self.ignore_label is not None or self.axis not in (1, -1):
            return None
        return LoopStatistic("perplexity", (PERPLEXITY_PROBABILITY_FLOOR,))


class Loss(EvalMetric):
    """The mean of the outputs themselves, for heads whose output is the loss (``MakeLoss``),
    as MXNet's ``mx.metric.Loss``: labels are not read, every output value is an instance.

    >>> loss = Loss()
    >>> loss.update([], [np.array([1.0, 2.0, 6.0])])
    >>> loss.get()
    ('loss', 3.0)
    """

    def __init__(self, name: str = "loss") -> None:
        super().__init__(name)

    def update(self, labels: Arrays, preds: Arrays, num_valid: int | None = None) -> None:
        """Add one batch of loss outputs (``labels`` are ignored); ``num_valid`` counts only
        the first that many rows of each output."""
        for pred in [preds] if isinstance(preds, np.ndarray) else preds:
            values = np.asarray(pred, dtype=np.float64)
            if num_valid is not None and values.ndim > 0:
                values = values[:num_valid]
            self.sum_metric += float(values.sum())
            self.num_inst += int(values.size)


class CustomMetric(EvalMetric):
    """A metric from ``feval(label, pred)``, called once per output with NumPy arrays.

    ``feval`` returns a number, which counts as one instance, or a pair
    ``(sum_metric, num_inst)``. Without a ``name`` the metric is named after ``feval``, as
    in MXNet (``custom(<lambda>)`` for a lambda).

    >>> def max_error(label, pred):
    ...     return float(np.abs(label - pred).max())
    >>> metric = CustomMetric(max_error)
    >>> metric.update([np.array([1.0, 2.0])], [np.array([1.5, 0.0])])
    >>> metric.get()
    ('max_error', 2.0)
    """

    def __init__(
        self, feval: Callable[[np.ndarray, np.ndarray], Any], name: str | None = None
    ) -> None:
        if not callable(feval):
            raise TypeError(f"CustomMetric: feval must be callable, not {type(feval).__name__}")
        if name is None:
            name = getattr(feval, "__name__", "custom")
            if "<" in name:
                name = f"custom({name})"
        self.feval = feval
        super().__init__(name)

    def _update_pair(self, label: np.ndarray, pred: np.ndarray, num_valid: int | None) -> None:
        label, pred = _leading(self.name, label, pred, num_valid)
        result = self.feval(label, pred)
        if isinstance(result, tuple):
            if len(result) != 2:
                raise ValueError(
                    f"{self.name}: feval returned a tuple of {len(result)} items; it must "
                    f"return a number or a pair (sum_metric, num_inst)"
                )
            self.sum_metric += float(result[0])
            self.num_inst += int(result[1])
        else:
            self.sum_metric += float(result)
            self.num_inst += 1


class CompositeEvalMetric(EvalMetric):
    """Several metrics updated together; ``get`` returns their names and values as lists.

    The children keep the counts: a composite's own ``sum_metric`` and ``num_inst`` stay 0,
    as in MXNet.

    >>> both = CompositeEvalMetric(["acc", "ce"])
    >>> both.update([np.array([0])], [np.array([[0.5, 0.5]])])
    >>> both.get_name_value()
    [('accuracy', 1.0), ('cross-entropy', 0.6931471805579453)]
    """

    def __init__(self, metrics: Sequence[Any] | None = None, name: str = "composite") -> None:
        self.metrics = [create(metric) for metric in metrics or []]
        super().__init__(name)

    def add(self, metric: Any) -> None:
        """Append a child metric (anything :func:`create` accepts)."""
        self.metrics.append(create(metric))

    def get_metric(self, index: int) -> EvalMetric:
        """The child metric at ``index``."""
        if not -len(self.metrics) <= index < len(self.metrics):
            raise IndexError(
                f"{self.name}: metric index {index} is out of range for {len(self.metrics)} metrics"
            )
        return self.metrics[index]

    def update(self, labels: Arrays, preds: Arrays, num_valid: int | None = None) -> None:
        for metric in self.metrics:
            metric.update(labels, preds, num_valid)

    def reset(self) -> None:
        super().reset()
        for metric in self.metrics:
            metric.reset()

    def get(self) -> tuple[list[str], list[float]]:
        names: list[str] = []
        values: list[float] = []
        for metric in self.metrics:
            for name, value in metric.get_name_value():
                names.append(name)
                values.append(value)
        return (names, values)


# MXNet's registered names and aliases, lower case.
METRICS: dict[str, type[EvalMetric]] = {
    "acc": Accuracy,
    "accuracy": Accuracy,
    "top_k_accuracy": TopKAccuracy,
    "top_k_acc": TopKAccuracy,
    "mse": MSE,
    "rmse": RMSE,
    "mae": MAE,
    "ce": CrossEntropy,
    "cross-entropy": CrossEntropy,
    "perplexity": Perplexity,
    "loss": Loss,
    "composite": CompositeEvalMetric,
}


def create(metric: Any, **kwargs) -> EvalMetric:
    """A metric from a name, a metric class or instance, a function, or a list of these.

    A name is looked up in :data:`METRICS` (any case) and built with ``kwargs``; a function
    becomes a :class:`CustomMetric`; a list becomes a :class:`CompositeEvalMetric` whose
    children are each built with ``kwargs``, as ``mx.metric.create`` does.

    >>> create("top_k_accuracy", top_k=5).name
    'top_k_accuracy_5'
    >>> create(["acc", "mse"]).get_name_value()
    [('accuracy', nan), ('mse', nan)]
    """
    if isinstance(metric, EvalMetric):
        if kwargs:
            raise ValueError(
                f"create: keyword arguments {sorted(kwargs)} given with the metric instance "
                f"{metric.name!r}, which is already configured"
            )
        return metric
    if isinstance(metric, type) and issubclass(metric, EvalMetric):
        return metric(**kwargs)
    if isinstance(metric, str):
        key = metric.lower()
        if key not in METRICS:
            raise ValueError(
                f"create: unknown metric {metric!r}; allowed names are {sorted(METRICS)}"
            )
        return METRICS[key](**kwargs)
    if isinstance(metric, (list, tuple)):
        return CompositeEvalMetric([create(child, **kwargs) for child in metric])
    if callable(metric):
        return CustomMetric(metric, **kwargs)
    raise TypeError(
        f"create: expected a metric name, EvalMetric, function or list, not {type(metric).__name__}"
    )


def _pairs(labels: Arrays, preds: Arrays) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (label, pred) pairs of one update, as arrays; a lone array is a list of one."""
    labels = [labels] if isinstance(labels, np.ndarray) else list(labels)
    preds = [preds] if isinstance(preds, np.ndarray) else list(preds)
    if len(labels) != len(preds):
        raise ValueError(
            f"update got {len(labels)} labels but {len(preds)} predictions; each output needs "
            f"its label"
        )
    return [(np.asarray(label), np.asarray(pred)) for label, pred in zip(labels, preds)]


def _leading(
    where: str, label: np.ndarray, pred: np.ndarray, num_valid: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``num_valid`` samples (along axis 0) of label and pred; all when None."""
    if num_valid is None:
        return label, pred
    is_int = isinstance(num_valid, numbers.Integral) and not isinstance(num_valid, bool)
    if not is_int or label.ndim == 0 or pred.ndim == 0:
        raise ValueError(
            f"{where}: num_valid={num_valid!r} must be an int counting samples along axis 0 "
            f"of the label {label.shape} and the predictions {pred.shape}"
        )
    batch = min(label.shape[0], pred.shape[0])
    if not 0 <= num_valid <= batch:
        raise ValueError(
            f"{where}: num_valid={num_valid} must be in [0, {batch}] for a label of shape "
            f"{label.shape} and predictions of shape {pred.shape}"
        )
    return label[:num_valid], pred[:num_valid]


def _class_rows(where: str, label: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``pred`` as ``(rows, classes)`` with one row per label value."""
    if pred.ndim == 0 or label.size * pred.shape[-1] != pred.size:
        raise ShapeError(
            f"{where}: label of shape {label.shape} needs one class index per row of the "
            f"predictions, but the predictions have shape {pred.shape}"
        )
    return pred.reshape(label.size, pred.shape[-1])


def _pick(where: str, probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``probs[i, classes[i]]`` for every row, as float64, checking the class indices."""
    indices = classes.astype(np.int64)
    num_classes = probs.shape[1] if probs.ndim == 2 else 0
    if indices.size and (indices.min() < 0 or indices.max() >= num_classes):
        raise ValueError(
            f"{where}: labels must be class indices in [0, {num_classes}), but they range "
            f"from {indices.min()} to {indices.max()}"
        )
    return probs[np.arange(indices.size), indices].astype(np.float64)
