"""Loss heads defined once: the op's ``HeadDef`` (``graphc/ir/ops/loss.py``) gives the
training loss, the label names and values, the default metric and the compiled loop's
statistic; each metric says what the compiled loop computes for it. ``Model.fit`` follows
them: the default metric runs in the compiled loop, the same sums as step by step, and a
fallback says why once."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphc as gc
import graphc.codegen_cpu.train_support as train_support
from graphc.backend.loop_plan import LoopPlan, LoopStatistic
from graphc.codegen_cpu.train_loop import render_training_loop
from graphc.ir.errors import BackendError
from graphc.ir.ops.loss import PROBABILITY_FLOOR
from graphc.ir.registry import get_op
from graphc.training import metric as metrics
from graphc.training.compiled_fit import StepByStepWarning
from graphc.training.compiled_loop import head_statistic
from graphc.training.heads import (
    LossHead,
    batch_loss,
    check_label,
    default_metric,
    label_names_of,
    loss_heads,
)

FEATURES, CLASSES, SAMPLES, BATCH = 6, 4, 48, 16


def classifier() -> gc.Symbol:
    fc = gc.FullyConnected(gc.Variable("data"), num_hidden=CLASSES, name="fc")
    return gc.SoftmaxOutput(fc, name="softmax")


def logistic() -> gc.Symbol:
    fc = gc.FullyConnected(gc.Variable("data"), num_hidden=2, name="fc")
    return gc.LogisticRegressionOutput(fc, name="logistic")


def samples(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, class labels and binary targets (two per sample) of SAMPLES samples."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(SAMPLES, FEATURES)).astype(np.float32)
    classes = rng.integers(0, CLASSES, size=SAMPLES).astype(np.float32)
    binary = (x[:, :2] > 0).astype(np.float32)
    return x, classes, binary


# -- the definition (no compilation) ---------------------------------------------------------


@pytest.mark.unit
def test_a_symbols_heads_read_their_op_definitions():
    for symbol, op in [
        (gc.models.mlp(), "SoftmaxOutput"),
        (gc.models.linreg(), "LinearRegressionOutput"),
        (logistic(), "LogisticRegressionOutput"),
    ]:
        (head,) = loss_heads(symbol)
        assert head.op == op and head.definition is get_op(op).head
    assert loss_heads(gc.models.linreg())[0].describe() == "LinearRegressionOutput 'lro'"


@pytest.mark.unit
def test_the_default_metric_follows_the_head():
    assert default_metric(loss_heads(gc.models.mlp())) == "accuracy"
    assert default_metric(loss_heads(gc.models.linreg())) == "mse"
    assert default_metric(loss_heads(logistic())) == "mse"
    charlm = loss_heads(gc.models.charlm(11, 6, 7))
    assert default_metric(charlm, stream=True) == "perplexity"
    assert default_metric(charlm, stream=False) == "accuracy"
    made = gc.MakeLoss(gc.sum(gc.Variable("x") ** 2))
    assert default_metric(loss_heads(made)) == "loss"  # mx.metric.Loss: no label to score


@pytest.mark.unit
def test_the_batch_loss_is_the_definition_times_grad_scale():
    probs = np.array([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0]], np.float32)
    softmax = LossHead(0, "SoftmaxOutput", {"grad_scale": 2.0}, "y")
    labels = {"y": np.array([1.0, 0.0])}
    expected = 2.0 * (np.log(4.0) - np.log(PROBABILITY_FLOOR)) / 2
    assert batch_loss([softmax], [probs], labels, batch_size=2) == pytest.approx(expected)
    predictions = np.array([[0.9, 0.2], [0.5, 0.7]])
    targets = {"t": np.array([[1.0, 0.0], [1.0, 1.0]])}
    bce = -np.mean(
        targets["t"] * np.log(predictions) + (1 - targets["t"]) * np.log(1 - predictions)
    )
    logistic_head = LossHead(0, "LogisticRegressionOutput", {}, "t")
    assert batch_loss([logistic_head], [predictions], targets, 2) == pytest.approx(bce)
    linear = LossHead(0, "LinearRegressionOutput", {"grad_scale": 0.5}, "t")
    half_square = 0.5 * 0.5 * np.mean((predictions - targets["t"]) ** 2)
    assert batch_loss([linear], [predictions], targets, 2) == pytest.approx(half_square)


@pytest.mark.unit
def test_label_names_are_inferred_from_the_heads():
    assert gc.Model(gc.models.linreg()).label_names == ("lro_label",)
    assert gc.Model(gc.models.mlp()).label_names == ("softmax_label",)
    fc = gc.FullyConnected(gc.Variable("data"), num_hidden=1, name="fc")
    named = gc.LinearRegressionOutput(fc, gc.Variable("target"), name="out")
    assert gc.Model(named).label_names == ("target",)
    two = gc.Group([gc.SoftmaxOutput(fc, name="a"), gc.LinearRegressionOutput(fc, name="b")])
    assert label_names_of(loss_heads(two)) == ("a_label", "b_label")
    computed = gc.LinearRegressionOutput(fc, gc.Variable("y") * 2.0, name="scaled")
    assert gc.Model(computed).label_names == ()  # y is computed from, not a label: data
    assert gc.Model(gc.models.linreg(), label_names=()).label_names == ()
    bindings = gc.Model(gc.models.linreg()).bindings
    default_named = gc.io.NDArrayIter(np.zeros((4, 13)), np.zeros(4), batch_size=2)
    assert bindings.input_names(default_named) == (["data"], ["lro_label"])
    assert bindings.input_shapes(default_named, "fit") == {
        "data": (2, 13),
        "lro_label": (2,),
    }  # MXNet: (N,) for (N, 1)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("metric", "output", "expected"),
    [
        ("acc", "class_probabilities", LoopStatistic("accuracy")),
        ("acc", "predictions", None),
        (metrics.TopKAccuracy(top_k=3), "class_probabilities", LoopStatistic("top_k", (3,))),
        ("ce", "class_probabilities", LoopStatistic("cross_entropy", (PROBABILITY_FLOOR,))),
        (
            metrics.CrossEntropy(eps=1e-7),
            "class_probabilities",
            LoopStatistic("cross_entropy", (1e-7,)),
        ),
        ("perplexity", "class_probabilities", LoopStatistic("perplexity", (1e-10,))),
        (metrics.Perplexity(ignore_label=0), "class_probabilities", None),
        ("perplexity", "predictions", None),
        ("mse", "predictions", LoopStatistic("squared_error")),
        ("rmse", "predictions", LoopStatistic("squared_error")),
        ("mae", "predictions", LoopStatistic("absolute_error")),
        ("mse", "class_probabilities", None),
        (metrics.CustomMetric(lambda label, pred: 0.0), "predictions", None),
    ],
)
def test_each_metric_says_what_the_compiled_loop_computes_for_a_head(metric, output, expected):
    assert metrics.create(metric).compiled_loop_statistic(output) == expected


@pytest.mark.unit
def test_a_subclass_that_changes_the_sums_is_not_computed_by_the_loop():
    class Recording(metrics.CrossEntropy):
        def update(self, labels, preds, num_valid=None):
            super().update(labels, preds, num_valid)

    class Doubled(metrics.MSE):
        def get(self):
            return (self.name, 2 * super().get()[1])

    assert Recording().compiled_loop_statistic("class_probabilities") is None
    assert Doubled().compiled_loop_statistic("predictions") is None
    # RMSE changes only the value from the mean, below MSE's loop_statistic: still computed.
    assert metrics.RMSE().compiled_loop_statistic("predictions") == LoopStatistic("squared_error")
    rmse = metrics.RMSE()
    assert rmse.values_from(np.array([8.0, 1.0]), np.array([2, 0]))[0] == rmse.value_from(8.0, 2)


@pytest.mark.unit
def test_the_floors_have_one_home():
    assert not [name for name in vars(train_support) if "FLOOR" in name]
    assert metrics.CrossEntropy().eps == PROBABILITY_FLOOR
    assert get_op("SoftmaxOutput").head.probability_floor == PROBABILITY_FLOOR
    (head,) = loss_heads(gc.models.mlp())
    assert head_statistic(head) == LoopStatistic("softmax", (PROBABILITY_FLOOR,))
    assert head_statistic(loss_heads(gc.models.linreg())[0]) == LoopStatistic("regression")


def _plan(head: LoopStatistic, metric: LoopStatistic) -> LoopPlan:
    return LoopPlan(
        head=head,
        metric=metric,
        sources=2,
        parameters=1,
        update=train_support.zero_fill,
        scalars=2,
        grad_scale_index=1,
        clip_global_norm=False,
    )


@pytest.mark.unit
def test_the_loop_source_takes_its_statistics_and_constants_from_the_plan():
    source = render_training_loop(
        [],
        None,
        [],
        None,
        _plan(LoopStatistic("softmax", (1e-12,)), LoopStatistic("perplexity", (1e-10,))),
    )
    assert "loss, correct = softmax_stats(head, label, rows[step], grad_scale, 1e-12)" in source
    assert "metrics[step] = perplexity_sum(head, label, rows[step], 1e-10)" in source
    source = render_training_loop(
        [], None, [], None, _plan(LoopStatistic("regression"), LoopStatistic("absolute_error"))
    )
    assert (
        "loss, squares, magnitudes = regression_stats(head, label, rows[step], grad_scale)"
        in source
    )
    assert "metrics[step] = magnitudes" in source
    with pytest.raises(BackendError, match="'accuracy'.*'regression'"):
        render_training_loop(
            [], None, [], None, _plan(LoopStatistic("regression"), LoopStatistic("accuracy"))
        )
    with pytest.raises(ValueError, match="no metric statistic 'f1'"):
        _plan(LoopStatistic("softmax", (1e-12,)), LoopStatistic("f1"))


@pytest.mark.cpu
@pytest.mark.parametrize("shape, rows", [((3,), 3), ((13, 1), 11), ((9, 2, 3), 9)], ids=str)
def test_the_loops_regression_statistics_are_the_heads_losses_in_float64(shape, rows):
    """The loop's sums against the heads' own loss (``HeadDef.batch_loss``) on float32
    outputs: errors of 1e20 (their float32 squares overflow) stay finite, as the
    step-by-step path computes them; the row counts leave 1, 3 and 1 of eight lanes over."""
    rng = np.random.default_rng(4)
    output = rng.standard_normal(shape).astype(np.float32)
    output.reshape(-1)[1] = 1e20
    label = rng.standard_normal(shape).astype(np.float32)
    probabilities = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    binary = rng.integers(0, 2, shape).astype(np.float32)
    width = output.size // shape[0]
    linear = get_op("LinearRegressionOutput").head.batch_loss
    logistic = get_op("LogisticRegressionOutput").head.batch_loss
    loss, squares, magnitudes = train_support.regression_stats(output, label, rows, 2.0)
    want = linear({}, output[:rows], label[:rows], rows)
    assert np.isfinite(loss) and loss == pytest.approx(2.0 * rows * want, rel=1e-12)
    errors = output[:rows].astype(np.float64) - label[:rows]
    assert squares == pytest.approx((errors**2).sum() / width, rel=1e-12)
    assert magnitudes == pytest.approx(np.abs(errors).sum() / width, rel=1e-12)
    entropy, _, _ = train_support.logistic_stats(
        probabilities, binary, rows, 1.0, PROBABILITY_FLOOR
    )
    want = logistic({}, probabilities[:rows], binary[:rows], rows)
    assert entropy == pytest.approx(rows * want, rel=1e-12)


@pytest.mark.unit
def test_check_label_names_the_head_the_label_the_value_and_where():
    head = LossHead(0, "SoftmaxOutput", {"use_ignore": True}, "y", "out")
    check_label(head, np.array([0.0, -1.0, 2.0]), (3, 3), "fit", str)  # -1 is ignored
    with pytest.raises(ValueError) as raised:
        check_label(head, np.array([[0.0, 1.0], [np.nan, 2.0]]), (4, 3), "fit", str)
    assert str(raised.value) == (
        "fit: the label 'y' of SoftmaxOutput 'out' is nan at (1, 0); it must be a class "
        "index in [0, 3) or ignore_label -1.0"
    )
    for bad in (3.0, 1.5, -2.0):
        with pytest.raises(ValueError, match=f"is {bad!r} at"):
            check_label(head, np.array([0.0, bad]), (2, 3), "fit", str)


@pytest.mark.unit
def test_the_reference_training_forward_names_a_bad_label():
    probs = gc.SoftmaxOutput(gc.Variable("x"), gc.Variable("y"))
    x = np.zeros((3, 3))
    bad = {"x": x, "y": np.array([0.0, 3.0, 1.0])}
    with pytest.raises(
        ValueError, match=r"label element 1 is 3.0; it must be a class index in \[0, 3\)"
    ):
        gc.evaluate(probs, bad, is_train=True)
    # Inference ignores the label, as MXNet's forward does.
    np.testing.assert_allclose(gc.evaluate(probs, bad)[0], np.full((3, 3), 1 / 3))
    ignoring = gc.SoftmaxOutput(gc.Variable("x"), gc.Variable("y"), use_ignore=True)
    gc.evaluate(ignoring, {"x": x, "y": np.array([0.0, -1.0, 1.0])}, is_train=True)


# -- Model.fit (compiles) --------------------------------------------------------------------


def _housing() -> tuple[np.ndarray, np.ndarray]:
    features, targets = gc.datasets.housing()
    x = ((features - features.mean(0)) / features.std(0)).astype(np.float32)
    return x, targets.astype(np.float32)


def test_linreg_trains_in_the_compiled_loop_by_default_with_mse_and_no_warning():
    x, y = _housing()
    weight = np.linspace(-0.5, 0.5, 13, dtype=np.float32).reshape(1, 13)
    bias = np.array([20.0], np.float32)
    model = gc.Model(gc.models.linreg())  # no label_names: lro_label, from the head
    model.set_params({"fc_weight": weight, "fc_bias": bias})
    data = gc.io.NDArrayIter(x, y, batch_size=len(x))  # its label keeps the default name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = model.fit(
            data, optimizer_params={"learning_rate": 0.01}, num_epoch=3, verbose=False
        )
    assert model.fit_path == "compiled"
    assert sorted(history) == ["epoch", "time", "train_loss", "train_mse"]
    # One batch per epoch: the first epoch's metric is that of the starting parameters.
    residual = x.astype(np.float64) @ weight.T.astype(np.float64) + 20.0 - y.reshape(-1, 1)
    assert history["train_mse"][0] == pytest.approx(np.mean(residual**2), rel=1e-6)
    assert history["train_loss"][0] == pytest.approx(0.5 * np.mean(residual**2), rel=1e-6)
    assert history["train_mse"][2] < history["train_mse"][0]


def test_a_metric_the_loop_cannot_compute_warns_once_saying_why_and_the_cost():
    x, y = _housing()
    model = gc.Model(gc.models.linreg())
    data = gc.io.NDArrayIter(x, y, batch_size=len(x))
    with pytest.warns(StepByStepWarning) as caught:
        model.fit(data, eval_metric="acc", num_epoch=2, verbose=False)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "accuracy" in message and "LinearRegressionOutput 'lro'" in message
    assert "whose output is predictions" in message and "about 1 s instead of 0.06 s" in message
    assert "computes [" not in message, "the reason must not list what it computes"
    assert model.fit_path == (
        "step by step: the compiled loop does not compute the metric 'accuracy' (Accuracy) for "
        "LinearRegressionOutput 'lro', whose output is predictions"
    )
    assert caught[0].filename == __file__, "the warning points at the caller's fit"


def _fit_both(symbol, x, y, metric, **fit) -> tuple[gc.Model, gc.Model]:
    """The same training compiled and step by step (a batch_end_callback asks for it)."""
    models = []
    for compiled in (True, False):
        model = gc.Model(symbol)
        data = gc.io.NDArrayIter(x, y, batch_size=BATCH, shuffle=True, seed=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore" if not compiled else "error", StepByStepWarning)
            model.fit(
                data,
                eval_metric=metric,
                optimizer_params={"learning_rate": 0.1},
                num_epoch=3,
                batch_end_callback=None if compiled else (lambda param: None),
                verbose=False,
                **fit,
            )
        models.append(model)
    fast, slow = models
    assert fast.fit_path == "compiled" and slow.fit_path.startswith("step by step")
    return fast, slow


@pytest.mark.parametrize(
    ("head", "metric", "key"),
    [
        ("softmax", "acc", "accuracy"),
        ("softmax", metrics.TopKAccuracy(top_k=2), "top_k_accuracy_2"),
        ("softmax", "ce", "cross-entropy"),
        ("softmax", "perplexity", "perplexity"),
        ("linear", "mse", "mse"),
        ("linear", "rmse", "rmse"),
        ("linear", "mae", "mae"),
        ("logistic", "mae", "mae"),
    ],
)
def test_a_metric_computed_in_the_compiled_loop_equals_the_step_by_step_one(head, metric, key):
    x, classes, binary = samples()
    if head == "softmax":
        symbol, y = classifier(), classes
    elif head == "linear":
        symbol, y = gc.models.linreg(), x @ np.arange(FEATURES, dtype=np.float32)
    else:
        symbol, y = logistic(), binary
    fast, slow = _fit_both(symbol, x, y, metric)
    assert fast._trainer.plan.metric == metrics.create(metric).compiled_loop_statistic(
        loss_heads(symbol)[0].definition.output
    )
    np.testing.assert_allclose(
        fast.history[f"train_{key}"], slow.history[f"train_{key}"], rtol=1e-6
    )
    np.testing.assert_allclose(fast.history["train_loss"], slow.history["train_loss"], rtol=1e-5)


def test_a_bad_label_names_the_head_the_label_the_value_and_where_on_every_path():
    x, classes, _ = samples()
    symbol = classifier()
    for bad, spelled in ((float(CLASSES), "4.0"), (np.nan, "nan")):
        y = classes.copy()
        y[21] = bad  # batch 1, row 5 without shuffling
        model = gc.Model(symbol)
        with pytest.raises(ValueError) as compiled:
            model.fit(gc.io.NDArrayIter(x, y, batch_size=BATCH), num_epoch=1, verbose=False)
        assert model.fit_path == "compiled"
        assert str(compiled.value) == (
            f"fit: the label 'softmax_label' of SoftmaxOutput 'softmax' is {spelled} at sample 21 "
            "of the training data (epoch 0, batch 1); it must be a class index in [0, 4)"
        )
        model = gc.Model(symbol)
        with pytest.warns(StepByStepWarning), pytest.raises(ValueError) as stepped:
            model.fit(
                gc.io.NDArrayIter(x, y, batch_size=BATCH),
                batch_end_callback=lambda param: None,
                verbose=False,
            )
        assert str(stepped.value) == (
            f"fit: the label 'softmax_label' of SoftmaxOutput 'softmax' is {spelled} at element 5 "
            "of batch 1 of epoch 0; it must be a class index in [0, 4)"
        )
    executor = symbol.simple_bind(gc.cpu(), data=(BATCH, FEATURES))
    executor.arg_dict["softmax_label"][:] = classes[:BATCH]
    executor.arg_dict["softmax_label"][3] = -1.0
    with pytest.raises(ValueError) as plain:
        executor.forward(is_train=True)
    assert str(plain.value) == (
        "SoftmaxOutput: label element 3 is -1.0; it must be a class index in [0, 4)"
    )
    assert any(
        "softmax (SoftmaxOutput) at test_heads.py:" in note for note in plain.value.__notes__
    )


def test_make_loss_trains_with_its_own_loss_as_the_default_metric():
    """MXNet's mx.metric.Loss: a MakeLoss head has no label, so accuracy cannot be its metric."""
    fc = gc.FullyConnected(gc.Variable("data"), num_hidden=1, name="fc")
    net = gc.MakeLoss(gc.square(fc), name="loss")
    assert default_metric(loss_heads(net)) == "loss"
    model = gc.Model(net)
    features = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    data = gc.io.NDArrayIter(features, None, batch_size=10)
    with pytest.warns(gc.StepByStepWarning, match="no loss statistic for MakeLoss"):
        model.fit(data, num_epoch=3, optimizer_params={"learning_rate": 0.05}, verbose=False)
    losses = model.history["train_loss"]
    assert losses[2] < losses[1] < losses[0], losses
