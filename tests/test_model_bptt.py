"""Truncated back-propagation through time with ``Model(..., state_names=...)``: the LSTM
state of ``charlm(stateful=True)`` carried from one ``BPTTIter`` window to the next equals
one evaluation over the joined windows, resets at every epoch, and trains.

Every model here has the same batch shape (seq_len 4, batch 3), so the LSTM kernels
compile once for the module."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.data.io import BPTTIter
from graphc.models import CHARLM_STATE_NAMES
from graphc.training.model import Model

VOCAB, EMBED, HIDDEN, SEQ_LEN, BATCH = 7, 5, 6, 4, 3
# 27 tokens: 3 rows of 9, so two windows of 4 steps (the last token is only a label).
TWO_WINDOWS = np.random.default_rng(1).integers(0, VOCAB, size=27)


def windows(stream: np.ndarray = TWO_WINDOWS) -> BPTTIter:
    return BPTTIter(stream, BATCH, SEQ_LEN, layout="TN")


def stateful_model() -> Model:
    net = gc.models.charlm(VOCAB, EMBED, HIDDEN, stateful=True)
    return Model(net, state_names=CHARLM_STATE_NAMES)


class RecordingMetric(gc.metric.CrossEntropy):
    """Cross-entropy that also keeps a copy of every prediction it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.predictions: list[np.ndarray] = []

    def update(self, labels, preds, num_valid=None) -> None:
        assert len(preds) == 1, "the state outputs must not reach the metric"
        self.predictions.append(np.array(preds[0]))
        super().update(labels, preds, num_valid)


@pytest.fixture(scope="module")
def params() -> dict[str, np.ndarray]:
    """Random parameters, large enough that the initial state changes the output."""
    net = gc.models.charlm(VOCAB, EMBED, HIDDEN)
    rng = np.random.default_rng(0)
    arg_shapes = net.infer_shape(data=(SEQ_LEN, BATCH))[0]
    return {
        name: rng.normal(scale=0.7, size=shape).astype(np.float32)
        for name, shape in zip(net.list_arguments(), arg_shapes)
        if name not in ("data", "softmax_label")
    }


@pytest.fixture(scope="module")
def reference(params) -> tuple[np.ndarray, np.ndarray]:
    """The softmax (8, batch, vocab) of one reference evaluation over both windows joined,
    from a zero state, and the labels (8, batch)."""
    streams = windows().streams
    data = streams[:, : 2 * SEQ_LEN].T.astype(np.float32)
    labels = streams[:, 1 : 2 * SEQ_LEN + 1].T
    zeros = np.zeros((BATCH, HIDDEN), np.float32)
    inputs = {
        **params,
        "data": data,
        "lstm_state": zeros,
        "lstm_state_cell": zeros,
        "softmax_label": np.zeros(2 * SEQ_LEN * BATCH, np.float32),
    }
    net = gc.models.charlm(VOCAB, EMBED, HIDDEN, stateful=True)
    probs = gc.evaluate(net, inputs)[0]
    return probs.reshape(2 * SEQ_LEN, BATCH, VOCAB), labels


@pytest.fixture(scope="module")
def frozen(params) -> tuple[Model, list[np.ndarray], list[float]]:
    """The stateful model with ``params``, fitted for two epochs with learning rate 0 (so
    its later predictions reuse the training executor), the softmax of every batch and the
    losses."""
    model = stateful_model()
    model.set_params(params)
    recorder = RecordingMetric()
    losses = []
    model.fit(
        windows(),
        eval_metric=recorder,
        optimizer_params={"learning_rate": 0.0},
        num_epoch=2,
        batch_end_callback=lambda param: losses.append(param.loss),
        verbose=False,
    )
    return model, recorder.predictions, losses


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    picked = np.take_along_axis(probs, labels[..., None], axis=-1)
    return float(-np.log(picked).mean())


def test_state_inputs_are_neither_parameters_nor_data(frozen, tmp_path):
    model, _, _ = frozen
    assert model.state_names == dict(CHARLM_STATE_NAMES)
    assert not {"lstm_state", "lstm_state_cell"} & set(model.param_names)
    assert not {"lstm_state", "lstm_state_cell"} & set(model.get_params()[0])
    model.save_checkpoint(str(tmp_path / "charlm"), 2)
    saved = np.load(tmp_path / "charlm-0002.npz")
    assert "arg:lstm_i2h_weight" in saved.files
    assert not [name for name in saved.files if "lstm_state" in name]


def test_fit_carries_the_state_within_an_epoch_and_resets_it_at_the_next(frozen, reference):
    _, predictions, losses = frozen
    expected, labels = reference
    first, second, next_first, next_second = (
        prediction.reshape(SEQ_LEN, BATCH, VOCAB) for prediction in predictions
    )
    np.testing.assert_allclose(first, expected[:SEQ_LEN], rtol=0, atol=1e-5)
    np.testing.assert_allclose(second, expected[SEQ_LEN:], rtol=0, atol=1e-5)
    assert losses[1] == pytest.approx(cross_entropy(expected[SEQ_LEN:], labels[SEQ_LEN:]), 1e-5)
    # Epoch 2 starts from zero again: with the parameters unchanged its batches repeat
    # epoch 1's.
    np.testing.assert_array_equal(next_first, first)
    np.testing.assert_array_equal(next_second, second)
    assert losses[2:] == losses[:2]


def test_predict_and_score_carry_the_state_over_the_pass(frozen, reference):
    model, _, _ = frozen
    expected, labels = reference
    carried = model.predict(windows())
    assert [output.shape for output in carried] == [(24, VOCAB), (6, HIDDEN), (6, HIDDEN)]
    carried = carried[0].reshape(2, SEQ_LEN, BATCH, VOCAB)
    np.testing.assert_allclose(carried[0], expected[:SEQ_LEN], rtol=0, atol=1e-5)
    np.testing.assert_allclose(carried[1], expected[SEQ_LEN:], rtol=0, atol=1e-5)
    (name, value), *_ = model.score(windows(), "ce")
    assert name == "cross-entropy"
    assert value == pytest.approx(cross_entropy(expected, labels), abs=1e-5)


def test_without_carrying_the_second_window_differs(frozen, params, reference):
    """The stateless charlm starts the second window from zero, and so does the stateful
    model on an iterator without ``is_continuation``."""
    model, _, _ = frozen
    expected, _ = reference
    second_window = windows().streams[:, SEQ_LEN : 2 * SEQ_LEN].T.astype(np.float32)
    stateless = gc.evaluate(
        gc.models.charlm(VOCAB, EMBED, HIDDEN),
        {**params, "data": second_window, "softmax_label": np.zeros(SEQ_LEN * BATCH, np.float32)},
    )[0].reshape(SEQ_LEN, BATCH, VOCAB)
    assert np.abs(stateless - expected[SEQ_LEN:]).max() > 1e-2

    joined = windows().streams[:, : 2 * SEQ_LEN].T.astype(np.float32)
    rows_of_steps = gc.io.NDArrayIter(joined, batch_size=SEQ_LEN)  # batch k: steps 4k..4k+3
    reset_each_batch = model.predict(rows_of_steps)[0].reshape(2, SEQ_LEN, BATCH, VOCAB)
    np.testing.assert_allclose(reset_each_batch[0], expected[:SEQ_LEN], rtol=0, atol=1e-5)
    np.testing.assert_allclose(reset_each_batch[1], stateless, rtol=0, atol=1e-5)


def test_fit_with_state_names_lowers_the_loss():
    text = np.tile([0, 1, 2, 0, 3, 4, 5, 6, 2, 1], 12)  # 120 tokens: 9 windows per epoch
    model = stateful_model()
    history = model.fit(
        windows(text),
        eval_metric="perplexity",
        optimizer="adam",
        optimizer_params={"learning_rate": 0.05},
        num_epoch=5,
        verbose=False,
    )
    losses = history["train_loss"]
    assert losses[-1] < 0.6 * losses[0]
    assert losses[-1] < np.log(VOCAB) / 2


@pytest.mark.parametrize(
    ("state_names", "message"),
    [
        ({"lstm_stat": "lstm_state_next_output"}, "'lstm_stat' is not an argument"),
        ({"lstm_state": "lstm_state_next"}, "'lstm_state_next' is not an output"),
        ({"data": "lstm_state_next_output"}, "'data' is in data_names"),
        ({"lstm_state": "softmax_output"}, "a loss head"),
    ],
)
def test_state_names_naming_the_wrong_input_or_output_is_an_error(state_names, message):
    net = gc.models.charlm(VOCAB, EMBED, HIDDEN, stateful=True)
    with pytest.raises(ValueError, match=message):
        Model(net, state_names=state_names)


def test_a_stateful_symbol_without_state_names_is_refused_by_fit():
    net = gc.models.charlm(VOCAB, EMBED, HIDDEN, stateful=True)
    with pytest.raises(ValueError, match="lstm_state_next_output.*state_names"):
        Model(net).fit(windows(), verbose=False)


def test_a_token_stream_defaults_to_perplexity_in_the_compiled_loop():
    """charlm on a BPTTIter: no eval_metric gives perplexity (the head's stream metric),
    computed in the compiled loop, with no warning; it equals exp of the mean loss, which
    is the same cross-entropy per token (charlm's loss is the mean per character)."""
    stream = np.random.default_rng(4).integers(0, VOCAB, size=200)
    model = stateful_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = model.fit(windows(stream), num_epoch=2, verbose=False)
    assert model.fit_path == "compiled"
    assert "train_perplexity" in history and "train_accuracy" not in history
    np.testing.assert_allclose(
        np.log(history["train_perplexity"]), history["train_loss"], rtol=1e-6
    )
