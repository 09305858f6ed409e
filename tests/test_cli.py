"""The graphc command line."""

from __future__ import annotations

import pytest

import graphc as gc
from graphc.cli import main

pytestmark = pytest.mark.unit


def test_compile_model_file_prints_summary(capsys):
    code = main(
        ["compile", "examples/lenet_model.py", "--shape", "data=4,1,28,28", "--dump", "graph"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "conv1 = Convolution(data, conv1_weight, conv1_bias;" in out
    assert "outputs:    softmax_output (4, 10)" in out
    assert "parameters: 8 arrays, 431,080 values" in out


def test_compile_saved_json_and_report_shape_errors(tmp_path, capsys):
    path = tmp_path / "mlp.json"
    gc.models.mlp().save(str(path))
    assert main(["compile", str(path), "--shape", "data=2,5"]) == 0
    assert "forward:" in capsys.readouterr().out
    assert main(["compile", str(path), "--shape", "data=2,5", "--shape", "fc1_weight=64,6"]) == 1
    assert "fc1 (FullyConnected)" in capsys.readouterr().err


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
