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


class _SmallTask:
    """What the NumPy baseline's trainers read of a task, for a model small enough to
    check by finite differences."""

    def __init__(self, model: str, params: dict, **settings) -> None:
        self.model, self.params = model, params
        self.settings = dict(settings, optimizer="sgd", learning_rate=0.1)
        self.batch = settings.get("batch", 0)

    def initial(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self.params.items()}


def _lenet_case(rng):
    shapes = {"conv1_weight": (20, 1, 5, 5), "conv1_bias": (20,), "conv2_weight": (50, 20, 5, 5),
              "conv2_bias": (50,), "fc1_weight": (500, 800), "fc1_bias": (500,),
              "fc2_weight": (10, 500), "fc2_bias": (10,)}  # fmt: skip
    params = {name: rng.normal(0, 0.1, shape) for name, shape in shapes.items()}
    x, y = rng.normal(size=(3, 28, 28, 1)), rng.integers(0, 10, 3)
    return _SmallTask("lenet", params), x, y


def _charlm_case(rng):
    vocab, embed, hidden = 7, 5, 6
    shapes = {"embed_weight": (vocab, embed), "lstm_i2h_weight": (4 * hidden, embed),
              "lstm_h2h_weight": (4 * hidden, hidden), "lstm_i2h_bias": (4 * hidden,),
              "lstm_h2h_bias": (4 * hidden,), "decoder_weight": (vocab, hidden),
              "decoder_bias": (vocab,)}  # fmt: skip
    params = {name: rng.normal(0, 0.5, shape) for name, shape in shapes.items()}
    x, y = rng.integers(0, vocab, (4, 3)), rng.integers(0, vocab, (4, 3))
    return _SmallTask("charlm", params, batch=3, hidden=hidden), x, y


@pytest.mark.parametrize("case", [_lenet_case, _charlm_case], ids=["lenet", "charlm"])
def test_numpy_baselines_hand_written_gradients_match_finite_differences(case, monkeypatch):
    """In float64, each parameter's gradient (at a few random entries) from the baseline's
    backward equals the central difference of its loss, the carried state held fixed."""
    monkeypatch.syspath_prepend(str(PEERS_DIR))
    import numpy_peer

    rng = np.random.default_rng(0)
    task, x, y = case(rng)
    trainer = numpy_peer.TRAINERS[task.model](task)
    trainer.start_epoch()
    trainer.params = {name: value.astype(np.float64) for name, value in trainer.params.items()}
    start_state = getattr(trainer, "state", None)
    grads = {}
    trainer.update = grads.update  # keep the weights where they are

    def loss() -> float:
        trainer.state = start_state
        return trainer.step(x, y)

    loss()
    computed = dict(grads)
    step = 1e-6
    for name, param in trainer.params.items():
        for _ in range(3):
            index = tuple(rng.integers(0, size) for size in param.shape)
            param[index] += step
            above = loss()
            param[index] -= 2 * step
            below = loss()
            param[index] += step
            numeric = (above - below) / (2 * step)
            assert computed[name][index] == pytest.approx(numeric, rel=1e-4, abs=1e-8), name


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
