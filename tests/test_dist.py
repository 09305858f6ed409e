"""Data-parallel training over MPI (``kvstore="dist_sync"``), two ranks launched with the
mpich wheel's ``mpiexec`` in subprocesses (tests/dist_worker.py holds what each rank runs).

Two ranks at batch B must end with the parameters of one process at batch 2B over the same
global batches (float64, 1e-10), bit-identical to each other; a failing, leaving, hanging
or mismatched rank must end the job with a clear message within a bounded time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dist_worker
import numpy as np
import pytest

pytestmark = pytest.mark.mpi

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
try:  # the test extra brings mpi4py and the mpich wheel; an install without them skips
    import mpi4py  # noqa: F401
except ImportError:
    pytest.skip("pip install 'graphc[dist]' (mpi4py and mpich)", allow_module_level=True)
if MPIEXEC is None:  # mpi4py without a launcher is a broken install, not a reason to skip
    raise RuntimeError("mpi4py is installed but no mpiexec was found: pip install mpich")

WORKER = Path(__file__).with_name("dist_worker.py")


def launch(
    scenario: str, out: Path, limit: float = 90
) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    result = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, str(WORKER), scenario, str(out)],
        capture_output=True,
        text=True,
        timeout=limit,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return result, time.monotonic() - start


def ranks(out: Path, name: str) -> list[dict]:
    return [dict(np.load(out / f"{name}-rank{rank}.npz")) for rank in range(2)]


def single_process_params(epochs: int = 2) -> dict:
    """One process at batch 2B over the two ranks' global batches, from rank 0's weights."""
    import graphc as gc

    x, y = dist_worker.data()
    order = dist_worker.global_order(2)
    it = gc.io.NDArrayIter(x[order], y[order], batch_size=2 * dist_worker.BATCH)
    net = dist_worker.model(gc)
    net.fit(
        it,
        eval_data=gc.io.NDArrayIter(x, y, batch_size=60),
        optimizer="sgd",
        optimizer_params={"learning_rate": 0.5, "momentum": 0.9},
        num_epoch=epochs,
        seed=0,
        quiet=True,
    )
    return net


@pytest.fixture(scope="module")
def single():
    return single_process_params()


@pytest.mark.parametrize("scenario", ["compiled", "steps", "buckets"])
def test_two_ranks_end_with_the_parameters_of_one_process_at_the_global_batch(
    scenario, single, tmp_path
):
    result, _ = launch(scenario, tmp_path)
    assert result.returncode == 0, result.stderr
    first, second = ranks(tmp_path, scenario)
    for name, value in single.get_params()[0].items():
        assert np.array_equal(first[f"param:{name}"], second[f"param:{name}"]), name
        np.testing.assert_allclose(first[f"param:{name}"], value, rtol=0, atol=1e-10)
    # the history is every rank's figures: the same on both, and one process's
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_array_equal(first[f"history:{key}"], second[f"history:{key}"])
        np.testing.assert_allclose(first[f"history:{key}"], single.history[key], atol=1e-10)
    # only rank 0 shows anything
    assert result.stdout.count("Epoch 2/2") == 1
    if scenario == "buckets":  # fc2 and fc1 complete apart: at least two buckets
        assert int(first["buckets"]) >= 2
        # and the first starts while backward kernels are still to run: an overlap
        assert int(first["starts"].min()) < int(first["kernels"]) - 1
    path = str(first["path"])
    assert path.startswith("step by step") if scenario == "steps" else path == "compiled"
    # the compiled loop sums the gradient block where it lies, unless it sums buckets
    assert bool(first["in_place"]) == (scenario == "compiled")
    # kvstore push sums the lists of both ranks: (1 + 1) + (2 + 1)
    assert first["pulled"].tolist() == second["pulled"].tolist() == [5.0, 5.0, 5.0]


def test_two_ranks_carry_their_lstm_state_as_one_process_over_all_the_rows(tmp_path):
    import graphc as gc

    result, _ = launch("bptt", tmp_path)
    assert result.returncode == 0, result.stderr
    first, second = ranks(tmp_path, "bptt")
    net = dist_worker.charlm(gc)
    it = gc.io.BPTTIter(
        dist_worker.stream(), 2 * dist_worker.ROWS, dist_worker.SEQ_LEN, layout="TN"
    )
    net.fit(it, optimizer="adam", num_epoch=2, seed=0, quiet=True)
    for name, value in net.get_params()[0].items():
        assert np.array_equal(first[f"param:{name}"], second[f"param:{name}"]), name
        np.testing.assert_allclose(first[f"param:{name}"], value, rtol=0, atol=1e-10)


def test_the_checkpoint_is_written_once_and_resuming_on_two_ranks_equals_an_uninterrupted_run(
    tmp_path,
):
    result, _ = launch("checkpoint", tmp_path)
    assert result.returncode == 0, result.stderr
    whole, resumed = ranks(tmp_path, "uninterrupted"), ranks(tmp_path, "resumed")
    assert [int(rank["writes"]) for rank in whole] == [1, 0]  # rank 0 writes, rank 1 waits
    for rank in range(2):
        for key in whole[rank]:
            if key.startswith("param:"):
                np.testing.assert_array_equal(resumed[rank][key], whole[rank][key])
    # on one process the checkpoint's order (of one part in two) does not apply: said
    import graphc as gc

    x, y = dist_worker.data()
    alone = gc.Model.load(str(tmp_path / "mlp"), 1)
    it = gc.io.NDArrayIter(x, y, batch_size=dist_worker.BATCH, shuffle=True, seed=5)
    with pytest.warns(UserWarning, match="one part in 2, but train_data reads one in 1"):
        alone.fit(it, num_epoch=2, begin_epoch=1, quiet=True)


@pytest.mark.parametrize(
    "scenario, message",
    [
        ("raise", "rank 1 of 2 stopped in fit with ValueError: a bad batch on rank 1"),
        ("exit_in_fit", "rank 1 of 2 stopped in fit with SystemExit: 3"),
        ("exit_before_fit", "the ranks [1] did not reach the start of fit within 4 s"),
        ("mismatch", "rank 1 differs from rank 0 in its bound shapes"),
        (
            "stall",
            "made no progress for 4 s (stall_timeout=4 s); the ranks that did not arrive: rank 1"
            " is not waiting on the others (it last left the gradient allreduce of training"
            " steps",
        ),
    ],
)
def test_a_failing_rank_ends_the_job_with_a_message_naming_it(scenario, message, tmp_path):
    result, seconds = launch(scenario, tmp_path, limit=90)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-3000:]
    assert seconds < 45  # the 4 s deadlines fired: never a job that waits until killed


@pytest.mark.parametrize("scenario", ["diverge", "diverge_steps"])
def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_the_same_step(scenario, tmp_path):
    result, _ = launch(scenario, tmp_path)
    assert result.returncode == 0, result.stderr
    first, second = ranks(tmp_path, scenario)
    assert first["at"].tolist() == second["at"].tolist() == [0, 3]


def test_graphc_train_np_runs_the_ranks_under_mpiexec():
    example = Path(__file__).parents[1] / "examples" / "housing_linreg.py"
    result = subprocess.run(
        [sys.executable, "-m", "graphc.cli", "train", str(example), "--data", "housing"]
        + ["--batch-size", "50", "--epochs", "2", "--np", "2"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert "workers:    2 (kvstore dist_sync), batch 50 each, 100 in all" in result.stdout
    assert result.stdout.count("Epoch 2/2") == 1  # rank 0 alone prints


def test_the_readme_example_trains_on_two_ranks(tmp_path):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Data-parallel training over MPI", 1)[1]
    script = tmp_path / "train.py"
    script.write_text(section.split("```python\n", 1)[1].split("```", 1)[0])
    result = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Epoch 1/1") == 1
    assert sorted(path.name for path in tmp_path.glob("lenet*")) == [
        "lenet-0001.npz",
        "lenet-symbol.json",
    ]
