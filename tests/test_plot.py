"""gc.plot.history: a PNG of the training curves with matplotlib, a clear message without."""

from __future__ import annotations

import sys

import pytest

from graphc.training import plot

pytestmark = pytest.mark.unit

RUN = {
    "epoch": [1, 2, 3],
    "time": [1.0, 1.0, 1.0],
    "train_loss": [1.2, 0.8, 0.6],
    "train_accuracy": [0.5, 0.7, 0.8],
    "val_loss": [1.3, 0.9, float("nan")],
    "val_accuracy": [0.45, 0.65, 0.75],
}


def test_history_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "run.png"
    assert plot.history(RUN, path, title="mlp") == str(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # Two panels side by side: the PNG is about twice as wide as it is high.
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (900, 350)


def test_missing_matplotlib_gives_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(
        ImportError, match=r"gc.plot.history needs matplotlib: pip install matplotlib"
    ):
        plot.history(RUN, tmp_path / "run.png")
    with pytest.raises(plot.MissingDependencyError):
        plot.history(RUN, tmp_path / "run.png")
    assert not (tmp_path / "run.png").exists()


def test_panels_loss_first_then_metrics():
    assert plot.panels(RUN) == ["loss", "accuracy"]
    assert plot.panels({"epoch": [1], "val_mse": [0.1], "train_loss": [0.2]}) == ["loss", "mse"]


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ({"train_loss": [1.0]}, "no 'epoch'"),
        ({"epoch": [], "train_loss": []}, "no epoch"),
        ({"epoch": [1, 2], "train_loss": [1.0]}, "'train_loss' has 1 values for 2 epochs"),
        ({"epoch": [1], "time": [1.0]}, "nothing to draw"),
    ],
)
def test_bad_history_is_named(history, message):
    with pytest.raises(ValueError, match=message):
        plot.panels(history)
