"""gc.Model: fit, the SGD step it takes, the NaN stop, predict and score, checkpoints that
resume exactly, atomic writes, and what fit prints.

Every model here is the same small MLP (or linreg) with batches of 50, so that the kernels
compile once for the module."""

from __future__ import annotations

import io
import os
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.data.io import BPTTIter, NDArrayIter
from graphc.training import checkpoint as model_checkpoint
from graphc.training.binding import ModelBindings
from graphc.training.checkpoint import CheckpointError
from graphc.training.heads import LossHead, batch_loss, default_rescale_grad, loss_heads
from graphc.training.initializer import Xavier, initialize
from graphc.training.model import Model, TrainingDivergedError

BATCH = 50
HIDDEN = (16,)
SGD = {"learning_rate": 0.1, "momentum": 0.9}


@pytest.fixture(scope="module")
def fashion():
    """The first 500 training and 120 test images of the bundled subset, flattened."""
    train_x, train_y, test_x, test_y = gc.datasets.fashion_mnist(bundled=True)
    return (
        train_x[:500].reshape(500, -1),
        train_y[:500],
        test_x[:120].reshape(120, -1),
        test_y[:120],
    )


def mlp_model() -> Model:
    return Model(gc.models.mlp(hidden=HIDDEN))


def train_iter(fashion, count=500, shuffle=False, seed=None) -> NDArrayIter:
    x, y = fashion[0][:count], fashion[1][:count]
    return NDArrayIter(x, y, batch_size=BATCH, shuffle=shuffle, seed=seed)


@pytest.fixture(scope="module")
def trained(fashion):
    """An MLP trained for two epochs, with its history and what fit printed."""
    model = mlp_model()
    val = NDArrayIter(fashion[2], fashion[3], batch_size=BATCH)
    stdout, stderr = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = stdout, stderr
    try:
        history = model.fit(train_iter(fashion), eval_data=val, optimizer_params=SGD, num_epoch=2)
    finally:
        sys.stdout, sys.stderr = saved
    return model, history, stdout.getvalue(), stderr.getvalue()


# -- training --------------------------------------------------------------------------------


def test_fit_lowers_the_loss_and_beats_chance(trained):
    model, history, stdout, _ = trained
    assert history["epoch"] == [1, 2]
    assert history["train_loss"][1] < history["train_loss"][0]
    assert history["train_loss"][0] < np.log(10)  # below the loss of a uniform guess
    assert history["val_accuracy"][1] > 0.5  # chance is 0.1
    assert history["val_loss"][1] < history["val_loss"][0]
    assert model.history is history
    assert set(history) == {
        "epoch",
        "time",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
    }


def test_not_a_terminal_prints_only_the_summary_lines(trained):
    _, history, stdout, stderr = trained
    lines = stdout.splitlines()
    assert stderr == ""
    assert len(lines) == 2
    acc, val_acc = history["train_accuracy"][1], history["val_accuracy"][1]
    assert lines[1].startswith(f"Epoch 2/2  train acc={acc:.4f} loss=")
    assert f"val acc={val_acc:.4f} loss=" in lines[1]
    assert lines[1].endswith(" samples/s)")


def test_terminal_gets_a_progress_bar(fashion, monkeypatch, capsys):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    model = mlp_model()
    model.fit(train_iter(fashion, count=100), num_epoch=2, optimizer_params=SGD)
    bar = terminal.getvalue()
    assert "Epoch 2/2  [####################] 2/2" in bar
    assert "samples/s" in bar and "acc=" in bar
    assert bar.endswith("\r")  # cleared before the summary line
    assert [line[:9] for line in capsys.readouterr().out.splitlines()] == ["Epoch 1/2", "Epoch 2/2"]


def test_log_every_and_verbose(fashion, capsys):
    model = mlp_model()
    model.fit(train_iter(fashion, count=100), num_epoch=4, log_every=3, optimizer_params=SGD)
    printed = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    assert printed == ["1/4", "3/4", "4/4"]
    model.fit(train_iter(fashion, count=100), begin_epoch=4, num_epoch=5, verbose=False)
    assert capsys.readouterr() == ("", "")
    assert model.history["epoch"] == [1, 2, 3, 4, 5]


def reference_params(model: Model) -> dict[str, np.ndarray]:
    params = {
        name: np.zeros(shape, np.float32)
        for name, shape in zip(
            model.symbol.list_arguments(),
            model.symbol.infer_shape(data=(BATCH, 784))[0],
        )
        if name in model.param_names
    }
    return dict(initialize(params, Xavier(), seed=7))


def test_one_step_is_the_sgd_step_of_the_executors_gradient(fashion):
    model = mlp_model()
    start = reference_params(model)
    model.set_params(start)
    exe = model.symbol.simple_bind(gc.cpu(), data=(BATCH, 784))
    exe.copy_params_from(start)
    exe.forward(is_train=True, data=fashion[0][:BATCH], softmax_label=fashion[1][:BATCH])
    probs = exe.outputs[0].astype(np.float64).copy()
    exe.backward()
    losses = []
    model.fit(
        train_iter(fashion, count=BATCH),
        optimizer_params={"learning_rate": 0.5},
        batch_end_callback=lambda param: losses.append(param.loss),
        verbose=False,
    )
    assert model.optimizer.rescale_grad == 1 / BATCH
    after, _ = model.get_params()
    for name in model.param_names:
        expected = start[name] - 0.5 * (exe.grad_dict[name] / BATCH)
        np.testing.assert_allclose(after[name], expected, rtol=1e-6, atol=1e-7, err_msg=name)
    labels = fashion[1][:BATCH].astype(int)
    cross_entropy = -np.log(probs[np.arange(BATCH), labels]).mean()
    assert losses == [pytest.approx(cross_entropy, rel=1e-9)]


def test_linreg_step_matches_numpy_least_squares():
    features, targets = gc.datasets.housing()
    x = ((features - features.mean(0)) / features.std(0))[:BATCH].astype(np.float32)
    y = targets[:BATCH].reshape(BATCH, 1)
    weight = np.linspace(-0.5, 0.5, 13, dtype=np.float32).reshape(1, 13)
    bias = np.array([1.0], np.float32)
    model = Model(gc.models.linreg(), label_names=("lro_label",))
    model.set_params({"fc_weight": weight, "fc_bias": bias})
    train = NDArrayIter(x, targets[:BATCH], batch_size=BATCH, label_name="lro_label")
    history = model.fit(
        train, eval_metric="mse", optimizer_params={"learning_rate": 0.1}, verbose=False
    )
    residual = x.astype(np.float64) @ weight.T + bias - y
    # The head's loss is half the squared error, its gradient summed over the batch.
    assert history["train_loss"][0] == pytest.approx(0.5 * np.mean(residual**2), rel=1e-6)
    after, _ = model.get_params()
    expected_weight = weight - 0.1 * (residual.T @ x) / BATCH
    expected_bias = bias - 0.1 * residual.sum(0) / BATCH
    np.testing.assert_allclose(after["fc_weight"], expected_weight, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(after["fc_bias"], expected_bias, rtol=1e-5, atol=1e-6)


def test_nan_stops_before_the_update_and_names_epoch_and_batch(fashion):
    x, y = fashion[0][:200].copy(), fashion[1][:200]
    x[2 * BATCH + 7, 100] = np.nan  # in batch 2 of every epoch
    model = mlp_model()
    snapshots = []

    def keep_params(param):
        snapshots.append(model.get_params()[0])

    train = NDArrayIter(x, y, batch_size=BATCH)
    with pytest.raises(TrainingDivergedError, match="diverged at epoch 0, batch 2") as caught:
        model.fit(train, num_epoch=2, batch_end_callback=keep_params, verbose=False)
    assert (caught.value.epoch, caught.value.nbatch) == (0, 2)
    message = str(caught.value)
    assert "the loss is nan" in message
    assert "holds 1 non-finite input values" in message
    assert isinstance(caught.value, FloatingPointError)
    assert len(snapshots) == 2
    after = model.get_params()[0]
    for name in model.param_names:
        np.testing.assert_array_equal(after[name], snapshots[-1][name])


# -- prediction and evaluation ---------------------------------------------------------------


def test_predict_drops_padding_rows(trained, fashion):
    model = trained[0]
    out = model.predict(fashion[2][:70], batch_size=BATCH)  # 2 batches, the last padded by 30
    assert out.shape == (70, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    whole = model.predict(fashion[2][:100], batch_size=BATCH)
    np.testing.assert_array_equal(out, whole[:70])
    from_iter = model.predict(NDArrayIter(fashion[2][:70], batch_size=BATCH))
    np.testing.assert_array_equal(from_iter, out)


def test_score_is_the_metric_computed_by_hand(trained, fashion):
    model = trained[0]
    val = NDArrayIter(fashion[2], fashion[3], batch_size=BATCH)  # 120: the last batch pads 30
    [(name, value)] = model.score(val, "acc")
    predicted = model.predict(fashion[2], batch_size=BATCH).argmax(axis=1)
    assert name == "accuracy"
    assert value == pytest.approx(np.mean(predicted == fashion[3]), abs=1e-12)
    assert value == trained[1]["val_accuracy"][-1]


def test_predict_before_any_parameters_is_an_error(fashion):
    with pytest.raises(ValueError, match="no parameters yet"):
        mlp_model().predict(fashion[2][:5])


def test_names_that_do_not_match_are_reported(fashion):
    with pytest.raises(ValueError, match=r"label_names \['softmax_label'\].*lro_label"):
        Model(gc.models.linreg(), label_names=("softmax_label",))
    model = mlp_model()
    renamed = NDArrayIter(fashion[0][:BATCH], fashion[1][:BATCH], batch_size=BATCH, data_name="x")
    with pytest.raises(ValueError, match=r"provides data \['x'\].*\['data'\]"):
        model.fit(renamed, verbose=False)
    # Two labels cannot be matched by position: their names must match.
    two = {"y": fashion[1][:BATCH], "z": fashion[1][:BATCH]}
    both = NDArrayIter(fashion[0][:BATCH], two, batch_size=BATCH)
    with pytest.raises(ValueError, match=r"provides labels \['y', 'z'\].*\['softmax_label'\]"):
        model.fit(both, verbose=False)


# -- loss heads (no compilation) -------------------------------------------------------------


def test_rescale_grad_follows_the_loss_heads():
    assert default_rescale_grad(loss_heads(gc.models.mlp()), 50) == 1 / 50
    assert default_rescale_grad(loss_heads(gc.models.linreg()), 8) == 1 / 8
    # charlm's SoftmaxOutput divides by the batch itself (normalization='batch').
    assert default_rescale_grad(loss_heads(gc.models.charlm(11, 6, 7)), 8) == 1.0
    mixed = [
        LossHead(0, "SoftmaxOutput", {"normalization": "batch"}, "a"),
        LossHead(1, "LinearRegressionOutput", {}, "b"),
    ]
    with pytest.raises(ValueError, match="give rescale_grad"):
        default_rescale_grad(mixed, 8)


def test_batch_loss_leaves_padding_out_and_ignores_labels():
    head = LossHead(0, "SoftmaxOutput", {"use_ignore": True, "ignore_label": -1.0}, "y")
    probs = np.array([[0.5, 0.5], [0.1, 0.9], [0.0, 1.0]], np.float32)
    labels = {"y": np.array([1.0, -1.0, 0.0])}
    # Row 1 is ignored, row 2 is padding: only -log 0.5 counts.
    assert batch_loss([head], [probs], labels, batch_size=3, pad=1) == pytest.approx(np.log(2))
    regression = LossHead(0, "LinearRegressionOutput", {}, "t")
    out = np.array([[1.0, 3.0], [0.0, 0.0]])
    loss = batch_loss([regression], [out], {"t": np.zeros((2, 2))}, batch_size=2)
    assert loss == pytest.approx(0.5 * (1 + 9) / 2 / 2)


def test_charlm_labels_bind_as_the_flat_head_needs():
    bindings = ModelBindings(gc.models.charlm(11, 6, 7), gc.cpu(), ("data",), ("softmax_label",))
    stream = np.arange(200) % 11
    shapes = bindings.input_shapes(BPTTIter(stream, 3, 5, layout="TN"), "fit")
    assert shapes == {"data": (5, 3), "softmax_label": (15,)}


# -- checkpoints -----------------------------------------------------------------------------


def test_checkpoint_round_trip(trained, fashion, tmp_path):
    model = trained[0]
    prefix = str(tmp_path / "mlp")
    model.save_checkpoint(prefix, 2)
    assert sorted(os.listdir(tmp_path)) == ["mlp-0002.npz", "mlp-symbol.json"]
    loaded = Model.load(prefix, 2)
    for saved, restored in zip(model.get_params(), loaded.get_params()):
        assert saved.keys() == restored.keys()
        for name in saved:
            np.testing.assert_array_equal(saved[name], restored[name])
    assert loaded.symbol.tojson() == model.symbol.tojson()
    assert loaded.history == model.history
    np.testing.assert_array_equal(
        loaded.predict(fashion[2][:BATCH]), model.predict(fashion[2][:BATCH])
    )
    with np.load(prefix + "-0002.npz", allow_pickle=False) as archive:
        assert int(archive["epoch"]) == 2
        assert int(archive["num_update"]) == 20
        assert archive["opt:fc1_weight:momentum"].shape == (16, 784)
        assert '"class": "SGD"' in str(archive["optimizer"])


@pytest.mark.parametrize("shuffle", [False, True])
def test_resumed_training_equals_uninterrupted_training(fashion, tmp_path, shuffle):
    prefix = str(tmp_path / "run")

    def recorder(model, log):
        def record(param):
            if param.epoch == 1:
                log.append((param.loss, model.get_params()[0]))

        return record

    straight, straight_log = mlp_model(), []
    straight.fit(
        train_iter(fashion, count=200, shuffle=shuffle, seed=3),
        optimizer_params=SGD,
        num_epoch=2,
        batch_end_callback=recorder(straight, straight_log),
        epoch_end_callback=straight.checkpoint_callback(prefix),
        verbose=False,
    )
    resumed = Model.load(prefix, 1)
    resumed_log = []
    fresh = train_iter(fashion, count=200, shuffle=shuffle, seed=3)
    first_order = fresh.order.copy()
    resumed.fit(
        fresh,
        optimizer_params=SGD,
        begin_epoch=1,
        num_epoch=2,
        batch_end_callback=recorder(resumed, resumed_log),
        verbose=False,
    )
    assert len(resumed_log) == len(straight_log) == 4
    assert [loss for loss, _ in resumed_log] == [loss for loss, _ in straight_log]
    for (_, resumed_params), (_, straight_params) in zip(resumed_log, straight_log):
        for name in straight.param_names:
            np.testing.assert_array_equal(resumed_params[name], straight_params[name])
    # With shuffling, epoch 1's order is not the one a fresh iterator starts with.
    with np.load(prefix + "-0001.npz", allow_pickle=False) as archive:
        saved_order = archive["data_epoch_indices"]
    assert np.array_equal(saved_order, first_order) is not shuffle


def test_failed_write_keeps_the_old_checkpoint(trained, tmp_path, monkeypatch):
    model = trained[0]
    prefix = str(tmp_path / "mlp")
    model.save_checkpoint(prefix, 1)
    before = (tmp_path / "mlp-0001.npz").read_bytes()

    def savez_then_fail(stream, **entries):
        stream.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(model_checkpoint.np, "savez", savez_then_fail)
    with pytest.raises(OSError, match="disk full"):
        model.save_checkpoint(prefix, 1)
    with pytest.raises(OSError, match="disk full"):
        model.save_checkpoint(prefix, 2)
    monkeypatch.undo()

    def replace_fails(source, target):
        raise OSError("rename failed")

    monkeypatch.setattr(model_checkpoint.os, "replace", replace_fails)
    with pytest.raises(OSError, match="rename failed"):
        model.save_checkpoint(prefix, 1)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["mlp-0001.npz", "mlp-symbol.json"]
    assert (tmp_path / "mlp-0001.npz").read_bytes() == before
    assert Model.load(prefix, 1).get_params()[0].keys() == set(model.param_names)


def test_missing_and_corrupt_files_are_named(trained, tmp_path):
    prefix = str(tmp_path / "mlp")
    with pytest.raises(FileNotFoundError, match="mlp-symbol.json"):
        Model.load(prefix, 1)
    trained[0].save_checkpoint(prefix, 1)
    with pytest.raises(FileNotFoundError, match="mlp-0003.npz"):
        Model.load(prefix, 3)
    npz = tmp_path / "mlp-0001.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="mlp-0001.npz.*corrupt or truncated"):
        Model.load(prefix, 1)
    (tmp_path / "mlp-symbol.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="mlp-symbol.json"):
        Model.load(prefix, 1)
