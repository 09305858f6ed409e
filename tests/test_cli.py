"""The graphc command line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import graphc as gc
from graphc.cli import main


@pytest.mark.unit
def test_compile_model_file_prints_summary(capsys):
    code = main(
        ["compile", "examples/lenet_model.py", "--shape", "data=4,1,28,28", "--dump", "graph"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "conv1 = Convolution(data, conv1_weight, conv1_bias;" in out
    assert "outputs:    softmax_output (4, 10)" in out
    assert "parameters: 8 arrays, 431,080 values" in out


@pytest.mark.unit
def test_compile_saved_json_and_report_shape_errors(tmp_path, capsys):
    path = tmp_path / "mlp.json"
    gc.models.mlp().save(str(path))
    assert main(["compile", str(path), "--shape", "data=2,5"]) == 0
    assert "forward:" in capsys.readouterr().out
    assert main(["compile", str(path), "--shape", "data=2,5", "--shape", "fc1_weight=64,6"]) == 1
    assert "fc1 (FullyConnected)" in capsys.readouterr().err


@pytest.mark.unit
def test_compile_dumps_the_optimized_graph_and_every_pass(tmp_path, capsys):
    code = main(
        [
            "compile",
            "examples/lenet_model.py",
            "--shape",
            "data=4,1,28,28",
            "--dump",
            "optimized",
            "--dump-passes",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "fused(conv1, tanh1) = _fused(data, conv1_weight, conv1_bias)" in out
    assert "  | tanh1 = tanh(conv1)  -> output 0  # lenet_model.py:" in out
    files = sorted(path.name for path in tmp_path.iterdir())
    assert "02-fuse-after.dot" in files and "01-simplify-before.txt" in files
    assert "subgraph cluster_" in (tmp_path / "02-fuse-after.dot").read_text()


MODEL_FILE = textwrap.dedent(
    """
    import graphc as gc

    data = gc.Variable("data")
    hidden = gc.Activation(gc.FullyConnected(data, num_hidden=3, name="fc1"), act_type="relu")
    net = gc.SoftmaxOutput(gc.FullyConnected(hidden, num_hidden=4, name="fc2"), name="softmax")
    """
)


@pytest.mark.slow
def test_compile_train_reports_every_kernel_and_a_second_run_loads_them_all(tmp_path):
    model = tmp_path / "small.py"
    model.write_text(MODEL_FILE)
    environment = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path / "cache"))
    environment["NUMBA_CACHE_DIR"] = str(tmp_path / "cache" / "numba")
    command = [sys.executable, "-m", "graphc.cli", "compile", str(model), "--shape", "data=5,7"]

    def run() -> str:
        result = subprocess.run(
            [*command, "--train"], env=environment, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    first = run()
    assert "training:   compiled, one batch of 5" in first
    kernels = [line for line in first.splitlines() if line.startswith("  ")]
    assert any("(the training loop)" in line for line in kernels), first
    assert any("fc1 (FullyConnected) at small.py" in line for line in kernels), first
    assert all("loaded from the disk cache" not in line for line in kernels), first
    second = run()
    again = [line for line in second.splitlines() if line.startswith("  ")]
    assert len(again) == len(kernels), second
    assert all("loaded from the disk cache" in line for line in again), second
    assert "found: 0 compiled, 0 compiled by a worker" in second
