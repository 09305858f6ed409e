"""``graphc bench``: the harness runs graphc and the NumPy baseline from the same task files,
lists the peers it was not given as absent, and rejects what it cannot run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from graphc.bench.peers.peer_protocol import Task
from graphc.bench.systems import PEERS_DIR
from graphc.bench.tasks import write_task


def bench(*arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "graphc.cli", "bench", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_quick_bench_of_graphc_and_numpy_lists_absent_peers_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    systems = "graphc,numpy,torch,jax,graphc-cuda"
    done = bench("--quick", "--models", "linreg,softmax", "--systems", systems, "--repeat", "1",
                 "--json", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "### LinReg (Housing)" in done.stdout and "### Softmax (Fashion-MNIST)" in done.stdout
    assert "| PyTorch eager | absent: no --peer torch=PYTHON; set it up: `python3 -m venv" in (
        done.stdout
    )
    document = json.loads(out.read_text())
    assert document["quick"] is True and document["repeat"] == 1
    assert document["machine"]["cores"] >= 1 and document["machine"]["cpu"]
    assert "numpy" in document["machine"]["libraries"]
    assert set(document["data"]) == {"linreg", "softmax"}
    rows = {(r["model"], r["system"]): r for r in document["results"]}
    assert rows[("linreg", "jax")]["status"] == "absent"
    assert rows[("softmax", "graphc-cuda")]["status"] in ("absent", "ok")
    for model in ("linreg", "softmax"):
        ours, baseline = rows[(model, "graphc")], rows[(model, "numpy")]
        assert ours["status"] == "ok" and baseline["status"] == "ok"
        assert ours["seconds"] > 0 and ours["samples_per_s"] > 0 and ours["x_best_peer"] > 0
        assert ours["first_step_warm_s"] and ours["first_step_cold_s"] is None  # --quick
        assert ours["version"].startswith("graphc") and baseline["version"].startswith("NumPy")
        # Same weights, batches and updates: the same losses after the same steps.
        assert ours["first_loss"] == pytest.approx(baseline["first_loss"], rel=1e-4)
        assert ours["final_loss"] == pytest.approx(baseline["final_loss"], rel=1e-3)
        assert ours["quality"] == pytest.approx(baseline["quality"], rel=1e-2)
    assert rows[("softmax", "numpy")]["quality_name"] == "test accuracy"
    assert rows[("linreg", "numpy")]["quality_name"] == "mse"


def test_numpy_baseline_starts_from_the_task_files_weights(tmp_path):
    """The baseline's first loss is the loss of the task file's initial weights on the
    first batch, computed here independently."""
    task_file = write_task("softmax", str(tmp_path / "softmax.npz"), quick=True)
    out = tmp_path / "result.json"
    subprocess.run(
        [sys.executable, str(PEERS_DIR / "numpy_peer.py"), "--task", task_file.path,
         "--out", str(out), "--first-step-only"],
        check=True, timeout=60,
    )  # fmt: skip
    task = Task(task_file.path)
    weights = task.initial()
    x, y = task.batches()[0]
    logits = x.astype(np.float64) @ weights["fc_weight"].T + weights["fc_bias"]
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_probs[np.arange(len(y)), y].mean()
    assert json.loads(out.read_text())["first_loss"] == pytest.approx(expected, rel=1e-5)


def test_a_bad_peer_path_exits_1_naming_it(tmp_path):
    missing = tmp_path / "no-python"
    done = bench("--quick", "--models", "linreg", "--peer", f"torch={missing}")
    assert done.returncode == 1
    assert f"--peer torch={missing}: no executable file there" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_peer_without_its_framework_exits_1():
    done = bench("--quick", "--models", "linreg", "--peer", f"mxnet={sys.executable}")
    if done.returncode == 0:  # this interpreter has mxnet after all
        pytest.skip("mxnet imports here")
    assert done.returncode == 1
    assert "cannot import mxnet there" in done.stderr


@pytest.mark.parametrize(
    "arguments",
    [
        ["--models", "resnet"],
        ["--systems", "graphc,caffe"],
        ["--peer", "caffe=/usr/bin/python3"],
        ["--peer", "torch"],
        ["--repeat", "0"],
    ],
)
def test_bad_usage_exits_2_with_the_usage_line(arguments):
    done = bench(*arguments)
    assert done.returncode == 2
    assert "usage: graphc bench" in done.stderr
