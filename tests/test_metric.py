"""Metrics: each against a value computed by hand with NumPy, accumulation, reset, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphc as gc
from graphc.training import metric as mt

pytestmark = pytest.mark.unit

PROBS = np.array(
    [
        [0.1, 0.7, 0.2],
        [0.5, 0.3, 0.2],
        [0.2, 0.2, 0.6],
        [0.4, 0.4, 0.2],
    ]
)
LABELS = np.array([1.0, 2.0, 2.0, 1.0])  # float, as SoftmaxOutput's label is


def test_accuracy_against_argmax_by_hand():
    acc = mt.Accuracy()
    acc.update([LABELS], [PROBS])
    # argmax rows: 1, 0, 2, 0 (the tie in the last row goes to class 0) -> hits 1, 0, 1, 0.
    assert (acc.sum_metric, acc.num_inst) == (2.0, 4)
    assert acc.get() == ("accuracy", 0.5)


def test_accuracy_accumulates_over_updates_and_resets():
    acc = mt.Accuracy()
    acc.update([LABELS], [PROBS])
    acc.update([np.array([0, 0])], [np.array([[0.9, 0.1, 0.0], [0.0, 0.1, 0.9]])])
    assert acc.get() == ("accuracy", 3 / 6)
    acc.reset()
    assert (acc.num_inst, acc.sum_metric) == (0, 0.0)
    assert math.isnan(acc.get()[1])


def test_accuracy_takes_class_index_predictions_and_other_axes():
    acc = mt.Accuracy()
    acc.update([np.array([1, 2, 3])], [np.array([1, 0, 3])])
    assert acc.get()[1] == pytest.approx(2 / 3)
    sequence = mt.Accuracy(axis=2)
    scores = np.zeros((2, 3, 4))
    scores[0, :, 1] = 1.0  # batch 0 predicts class 1 at every step
    scores[1, :, 3] = 1.0
    sequence.update([np.array([[1, 1, 0], [3, 2, 3]])], [scores])
    assert sequence.get()[1] == pytest.approx(4 / 6)


def test_accuracy_num_valid_leaves_out_padded_samples():
    acc = mt.Accuracy()
    acc.update([LABELS], [PROBS], num_valid=3)
    assert (acc.sum_metric, acc.num_inst) == (2.0, 3)


@pytest.mark.parametrize(
    "top_k, expected",
    [(1, 2 / 4), (2, 3 / 4), (3, 4 / 4), (10, 4 / 4)],
)
def test_top_k_accuracy_by_hand(top_k, expected):
    # Ranked classes per row (ties to the lower class): [1,2,0], [0,1,2], [2,0,1], [0,1,2];
    # the labels 1, 2, 2, 1 are at ranks 1, 3, 1, 2.
    top = mt.TopKAccuracy(top_k=top_k)
    top.update([LABELS], [PROBS])
    assert top.get() == (f"top_k_accuracy_{top_k}", expected)


def test_top_1_agrees_with_accuracy_on_random_scores():
    rng = np.random.default_rng(0)
    scores, labels = rng.random((50, 7)), rng.integers(0, 7, 50)
    top1, acc = mt.TopKAccuracy(1), mt.Accuracy()
    top1.update(labels, scores)
    acc.update(labels, scores)
    assert top1.get()[1] == acc.get()[1]
    assert acc.get()[1] == np.mean(scores.argmax(axis=1) == labels)


def test_mse_mae_rmse_against_numpy_over_two_batches_of_different_sizes():
    rng = np.random.default_rng(1)
    labels = [rng.normal(size=5), rng.normal(size=2)]
    preds = [rng.normal(size=(5, 1)), rng.normal(size=(2, 1))]
    errors = np.concatenate([p.ravel() - l for l, p in zip(labels, preds)])
    metrics = {"mse": mt.MSE(), "mae": mt.MAE(), "rmse": mt.RMSE()}
    for label, pred in zip(labels, preds):
        for metric in metrics.values():
            metric.update([label], [pred])
    assert metrics["mse"].get()[1] == pytest.approx(np.mean(errors**2), rel=1e-12)
    assert metrics["mae"].get()[1] == pytest.approx(np.mean(np.abs(errors)), rel=1e-12)
    assert metrics["rmse"].get()[1] == pytest.approx(np.sqrt(np.mean(errors**2)), rel=1e-12)
    assert metrics["mse"].num_inst == 7
    # MXNet 1.x would report the mean of the per-batch RMSEs, which differs here.
    per_batch = np.mean([np.sqrt(np.mean(errors[:5] ** 2)), np.sqrt(np.mean(errors[5:] ** 2))])
    assert abs(metrics["rmse"].get()[1] - per_batch) > 1e-3


def test_mse_averages_each_sample_over_its_outputs():
    mse = mt.MSE()
    label = np.array([[0.0, 0.0], [1.0, 1.0]])
    pred = np.array([[1.0, 3.0], [1.0, 2.0]])
    mse.update([label.ravel()], [pred])  # label reshaped to pred's shape: sizes match
    # sample means: (1 + 9) / 2 = 5 and (0 + 1) / 2 = 0.5
    assert (mse.sum_metric, mse.num_inst) == (5.5, 2)
    assert mse.get() == ("mse", 2.75)


def test_regression_label_of_the_wrong_size_names_both_shapes():
    with pytest.raises(
        gc.ShapeError, match=r"label of shape \(3,\).*predictions of shape \(2, 2\)"
    ):
        mt.MSE().update([np.zeros(3)], [np.zeros((2, 2))])


def test_cross_entropy_by_hand_and_with_eps():
    ce = mt.CrossEntropy()
    ce.update([LABELS], [PROBS])
    expected = -np.mean(np.log([0.7, 0.2, 0.6, 0.4]))
    assert ce.get()[0] == "cross-entropy"
    assert ce.get()[1] == pytest.approx(expected, rel=1e-9)
    zero = mt.CrossEntropy(eps=1e-12)
    zero.update([np.array([1])], [np.array([[1.0, 0.0]])])
    assert zero.get()[1] == pytest.approx(-math.log(1e-12))


def test_cross_entropy_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\).*from 0 to 3"):
        mt.CrossEntropy().update([np.array([0, 3])], [PROBS[:2]])


def test_perplexity_flattens_n_by_t_labels_and_accumulates_tokens():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(5), size=6)  # (N*T, V) with N=2, T=3
    labels = rng.integers(0, 5, size=(2, 3))
    more_probs, more_labels = rng.dirichlet(np.ones(5), size=2), np.array([4, 0])
    ppl = mt.Perplexity()
    ppl.update([labels], [probs])
    ppl.update([more_labels], [more_probs])
    picked = np.concatenate(
        [probs[np.arange(6), labels.ravel()], more_probs[np.arange(2), more_labels]]
    )
    assert ppl.num_inst == 8
    assert ppl.get()[1] == pytest.approx(np.exp(-np.mean(np.log(picked))), rel=1e-12)


def test_perplexity_ignore_label_drops_those_tokens():
    probs = np.array([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]])
    ppl = mt.Perplexity(ignore_label=0)
    ppl.update([np.array([1, 0, 1])], [probs])
    assert ppl.num_inst == 2
    assert ppl.get()[1] == pytest.approx(np.exp(-(np.log(0.5) + np.log(0.1)) / 2))


def test_perplexity_num_valid_counts_leading_rows_of_the_label():
    probs = np.full((4, 2), 0.5)
    probs[2:] = [0.1, 0.9]
    ppl = mt.Perplexity()
    ppl.update([np.zeros((2, 2))], [probs], num_valid=1)  # keeps the first sample's 2 tokens
    assert ppl.num_inst == 2
    assert ppl.get()[1] == pytest.approx(2.0)


def test_perplexity_floors_zero_probabilities():
    ppl = mt.Perplexity()
    ppl.update([np.array([1])], [np.array([[1.0, 0.0]])])
    assert ppl.get()[1] == pytest.approx(1e10)


def test_custom_metric_number_and_pair_results():
    def max_abs(label, pred):
        return float(np.abs(label - pred).max())

    single = mt.CustomMetric(max_abs)
    single.update([np.array([1.0, 2.0])], [np.array([0.0, 5.0])])
    single.update([np.array([1.0])], [np.array([2.0])])
    assert single.get() == ("max_abs", (3.0 + 1.0) / 2)
    pairs = mt.CustomMetric(lambda label, pred: (float((label == pred).sum()), label.size))
    pairs.update([np.array([1, 2, 3, 4])], [np.array([1, 0, 3, 0])], num_valid=3)
    assert pairs.name == "custom(<lambda>)"
    assert (pairs.sum_metric, pairs.num_inst) == (2.0, 3)


def test_composite_updates_every_child_and_resets_them():
    both = mt.CompositeEvalMetric(["acc", mt.CrossEntropy()])
    both.update([LABELS], [PROBS])
    names, values = both.get()
    assert names == ["accuracy", "cross-entropy"]
    assert values[0] == 0.5
    assert values[1] == pytest.approx(-np.mean(np.log([0.7, 0.2, 0.6, 0.4])))
    assert both.get_metric(1).num_inst == 4
    both.reset()
    assert all(math.isnan(value) for _, value in both.get_name_value())
    with pytest.raises(IndexError, match="metric index 2 is out of range for 2 metrics"):
        both.get_metric(2)


def test_create_names_functions_lists_and_instances():
    assert isinstance(mt.create("acc"), mt.Accuracy)
    assert isinstance(mt.create("Accuracy"), mt.Accuracy)
    assert mt.create("top_k_accuracy", top_k=3).top_k == 3
    for name, kind in [("mse", mt.MSE), ("rmse", mt.RMSE), ("mae", mt.MAE)]:
        assert type(mt.create(name)) is kind
    assert isinstance(mt.create("ce"), mt.CrossEntropy)
    assert isinstance(mt.create("cross-entropy"), mt.CrossEntropy)
    assert mt.create("perplexity", ignore_label=-1).ignore_label == -1
    custom = mt.create(np.median)
    assert isinstance(custom, mt.CustomMetric) and custom.name == "median"
    composite = mt.create(["acc", "mse"])
    assert [m.name for m in composite.metrics] == ["accuracy", "mse"]
    instance = mt.RMSE()
    assert mt.create(instance) is instance
    with pytest.raises(ValueError, match=r"unknown metric 'f1'.*'perplexity'"):
        mt.create("f1")


def test_mismatched_numbers_of_labels_and_predictions():
    with pytest.raises(ValueError, match="2 labels but 1 predictions"):
        mt.Accuracy().update([LABELS, LABELS], [PROBS])


def test_label_not_matching_the_batch_names_both_shapes():
    with pytest.raises(
        gc.ShapeError, match=r"label of shape \(3,\).*predictions of shape \(4, 3\)"
    ):
        mt.Accuracy().update([LABELS[:3]], [PROBS])
    with pytest.raises(gc.ShapeError, match=r"label of shape \(5,\).*shape \(4, 3\)"):
        mt.TopKAccuracy(2).update([np.zeros(5)], [PROBS])
    with pytest.raises(gc.ShapeError, match=r"label of shape \(2,\).*shape \(4, 3\)"):
        mt.CrossEntropy().update([np.zeros(2)], [PROBS])


def test_num_valid_beyond_the_batch_is_an_error():
    with pytest.raises(ValueError, match=r"num_valid=5 must be in \[0, 4\]"):
        mt.Accuracy().update([LABELS], [PROBS], num_valid=5)


def test_cross_entropy_and_perplexity_match_torch():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(12, 6))
    labels = rng.integers(0, 6, size=12)
    labels[[2, 7]] = -1  # padding tokens for the perplexity check
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    kept = labels >= 0
    ce = mt.CrossEntropy()
    ce.update([labels[kept]], [probs[kept]])
    ppl = mt.Perplexity(ignore_label=-1)
    ppl.update([labels.reshape(3, 4)], [probs])
    torch_logits, torch_labels = torch.from_numpy(logits), torch.from_numpy(labels)
    torch_ce = functional.cross_entropy(
        torch_logits[torch.from_numpy(kept)], torch_labels[torch.from_numpy(kept)]
    ).item()
    torch_ppl = math.exp(
        functional.cross_entropy(torch_logits, torch_labels, ignore_index=-1).item()
    )
    assert ce.get()[1] == pytest.approx(torch_ce, rel=1e-9)
    assert ppl.get()[1] == pytest.approx(torch_ppl, rel=1e-9)
