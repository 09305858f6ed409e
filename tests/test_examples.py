"""The example scripts run end to end and print what their docstrings promise.

Each runs as a user would run it, in a subprocess, with settings small enough for a test;
the environment carries over, so the kernels are cached where conftest.py puts them.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import graphc as gc
from graphc.data.datasets.housing import HOUSING_CSV
from graphc.data.datasets.text import HIAWATHA_TXT

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str) -> str:
    """The stdout of ``examples/<name>.py args``; fails with its stderr if it fails."""
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_housing_linear_regression_and_overfitting_mlp(tmp_path):
    shutil.copy(HOUSING_CSV, tmp_path / "housing.csv")
    out = run_example(
        "housing_linreg", "--steps", "12", "--epochs", "600", "--data-dir", str(tmp_path)
    )
    steps = {int(step): float(mse) for step, mse in re.findall(r"step +(\d+) +mse +(\S+)", out)}
    first_ten = [steps[step] for step in range(11)]
    assert first_ten[0] > 300
    assert all(later < earlier for earlier, later in zip(first_ten, first_ten[1:]))
    assert first_ten[10] < 30
    assert steps[12] < first_ten[10]

    epochs = re.findall(r"epoch +(\d+) +train +(\S+) +val +(\S+)", out)
    train_mse = {int(epoch): float(train) for epoch, train, _ in epochs}
    val_mse = {int(epoch): float(val) for epoch, _, val in epochs}
    assert sorted(train_mse) == [1, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600]
    best = re.search(r"best validation mse (\S+) at epoch (\d+) \(train (\S+)\)", out)
    best_val, best_epoch, train_at_best = float(best[1]), int(best[2]), float(best[3])
    # Overfitting: the validation error has passed its minimum and risen again while the
    # training error went on falling.
    assert 50 < best_epoch < 500
    assert val_mse[600] > 1.1 * best_val
    assert train_mse[600] < 0.5 * train_at_best
    assert best_val < 15


def test_housing_quiet_prints_only_the_summaries():
    out = run_example("housing_linreg", "--steps", "10", "--epochs", "3", "--quiet")
    lines = out.splitlines()
    assert [line[:3] for line in lines] == ["(a)", "(b)"]
    after_ten = float(re.search(r"after 10 steps (\S+),", lines[0])[1])
    assert 0 < after_ten < 30


def test_charlm_trains_samples_and_checkpoints(tmp_path):
    # The first ~3,000 characters of Hiawatha: 75 batches of 10 x 4 per epoch.
    small = tmp_path / "hiawatha-start.txt"
    small.write_text(HIAWATHA_TXT.read_text(encoding="utf-8-sig")[:3000], encoding="utf-8")
    vocab = gc.datasets.text(small).vocab
    prefix = str(tmp_path / "charlm")
    out = run_example(
        "charlm",
        *("--seq-len", "10", "--batch-size", "4", "--embed", "8", "--hidden", "8"),
        *("--epochs", "2", "--generate", "20", "--data-dir", str(small)),
        *("--checkpoint", prefix, "--quiet"),
    )
    per_epoch = re.search(r"per epoch: (\S+), (\S+);", out)
    first, second = float(per_epoch[1]), float(per_epoch[2])
    assert all(math.isfinite(value) for value in (first, second))
    # Better than guessing uniformly over the vocabulary, and better after the 2nd epoch.
    assert 1 < second < first < len(vocab)

    generated = out.split("----- generated text -----\n")[1]
    generated = generated.split("\n----- end of generated text -----")[0]
    assert len(generated) == 20
    assert set(generated) <= set(vocab)

    loaded = gc.Model.load(prefix, 2, state_names=gc.models.CHARLM_STATE_NAMES)
    assert loaded.get_params()[0]["decoder_weight"].shape == (len(vocab), 8)


def test_lenet_example_trains_reports_and_checkpoints(tmp_path):
    """What `make run` runs, cut short: one epoch on 500 bundled images."""
    out = run_example(
        "lenet",
        "--epochs",
        "1",
        "--limit",
        "500",
        "--quiet",
        "--checkpoint",
        str(tmp_path / "lenet"),
    )
    assert "Epoch 1/1  train acc=" in out
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert 0.3 < accuracy <= 1.0, "better than chance after one epoch"
    assert (tmp_path / "lenet-symbol.json").exists() and (tmp_path / "lenet-0001.npz").exists()
