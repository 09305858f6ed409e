"""The graphc command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc.cli import load_model_file, main


def test_compile_model_file_prints_summary(capsys):
    code = main(["compile", "examples/lenet_model.py", "--shape", "data=4,1,28,28", "--dump", "ir"])
    out = capsys.readouterr().out
    assert code == 0
    assert "conv1 = Convolution(data, conv1_weight, conv1_bias;" in out
    assert "outputs:    softmax_output (4, 10)" in out
    assert "parameters: 8 arrays, 431,080 values" in out
    assert "nodes (forward), after the passes (-O2)" in out and "fused groups" in out
    assert "bound:      cpu(0) for inference" in out
    assert out.count("kernels:    ") == 1 and "memory:     " in out


def test_compile_saved_json_and_report_shape_errors(tmp_path, capsys):
    path = tmp_path / "mlp.json"
    gc.models.mlp().save(str(path))
    assert main(["compile", str(path), "--shape", "data=2,5", "-O0"]) == 0
    assert "after the passes (-O0)" in capsys.readouterr().out
    assert main(["compile", str(path), "--shape", "data=2,5", "--shape", "fc1_weight=64,6"]) == 1
    err = capsys.readouterr().err
    assert "fc1 (FullyConnected)" in err and "Traceback" not in err


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


def _kernel_name(line: str) -> str:
    """The kernel a line of the compile report names: "  seconds s  how  name (nodes)"."""
    return re.split(r"\s{2,}", line.strip())[2]


@pytest.mark.slow
def test_compile_train_reports_every_kernel_and_a_second_run_loads_them_all(tmp_path):
    model = tmp_path / "small.py"
    model.write_text(MODEL_FILE)
    environment = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path / "cache"))
    environment["NUMBA_CACHE_DIR"] = str(tmp_path / "cache" / "numba")
    command = [sys.executable, "-m", "graphc.cli", "compile", str(model), "--shape", "data=5,7"]

    def run() -> str:
        result = subprocess.run(
            [*command, "--train", "--explain"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    first = run()
    assert "training:   compiled, one batch of 5" in first
    assert "why: new kernel source" in first  # --explain
    kernels = [line for line in first.splitlines() if line.startswith("  ") and "why:" not in line]
    assert any("(the training loop)" in line for line in kernels), first
    assert any("fc1 (FullyConnected) at small.py" in line for line in kernels), first
    assert all("loaded from the disk cache" not in line for line in kernels), first
    second = run()
    again = [line for line in second.splitlines() if line.startswith("  ")]
    # Every kernel the first run compiled is loaded now; so is one the first run found in
    # memory, compiled there as another kernel's callee (the dot kernel under a fused dot).
    first_names = {_kernel_name(line) for line in kernels}
    again_names = {_kernel_name(line) for line in again}
    assert first_names <= again_names, second
    extra = again_names - first_names
    assert len(extra) <= 1 and all("gemm.dot_kernel" in name for name in extra), second
    assert all("loaded from the disk cache" in line for line in again), second
    assert "found: 0 compiled, 0 compiled by a worker" in second


def _model(tmp_path, text: str) -> str:
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.unit
def test_a_model_file_that_raises_names_its_line_without_a_traceback(tmp_path, capsys):
    path = _model(
        tmp_path,
        """
        import graphc as gc

        width = 1 / 0
    """,
    )
    assert main(["compile", path]) == 1
    err = capsys.readouterr().err
    assert f"{path}:4: ZeroDivisionError: division by zero" in err and "Traceback" not in err
    with pytest.raises(ZeroDivisionError):
        main(["compile", path, "--traceback"])
    broken = _model(tmp_path, "net = (\n")
    assert main(["compile", broken]) == 1
    assert f"{broken}:1: SyntaxError" in capsys.readouterr().err


@pytest.mark.unit
def test_a_model_file_without_a_model_and_bad_usage(tmp_path, capsys):
    path = _model(tmp_path, "answer = 42\n")
    assert main(["compile", path]) == 1
    assert "defines no model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["compile", path, "--shape", "data"])
    assert usage.value.code == 2
    assert "usage: graphc compile" in capsys.readouterr().err


def test_build_input_shapes_label_names_dot_and_kernels(tmp_path, capsys):
    path = _model(
        tmp_path,
        """
        import graphc as gc

        input_shapes = {"data": (3, 7)}
        label_names = ["target"]

        def build():
            fc = gc.FullyConnected(gc.Variable("data"), num_hidden=2, name="fc")
            return gc.LinearRegressionOutput(gc.tanh(fc), gc.Variable("target"), name="out")
    """,
    )
    assert load_model_file(path).label_names == ("target",)
    out_dir = tmp_path / "dump"
    code = main(["compile", path, "--dump", "dot", "--dump", "kernels", "--out", str(out_dir)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "outputs:    out_output (3, 2)" in out  # the file's input_shapes
    assert "subgraph cluster_" in (out_dir / "after-fusion.dot").read_text()  # a fused group
    assert (out_dir / "before-fusion.dot").exists()
    assert list(out_dir.glob("k_*.py")), "the generated kernels' sources"


def test_train_resume_and_evaluate_from_the_shell(tmp_path, capsys):
    path = _model(
        tmp_path,
        """
        import graphc as gc

        net = gc.models.linreg()
    """,
    )
    prefix = str(tmp_path / "linreg")
    args = ["train", path, "--data", "housing", "--batch-size", "506", "--lr", "0.1"]
    assert main([*args, "--epochs", "3", "--checkpoint", prefix, "--quiet"]) == 0
    assert (tmp_path / "linreg-0003.npz").exists()
    assert main([*args, "--epochs", "2", "--checkpoint", prefix, "--resume", "3", "--quiet"]) == 0
    assert (tmp_path / "linreg-0005.npz").exists()
    capsys.readouterr()
    assert main(["evaluate", prefix, "5", "--data", "housing", "--batch-size", "506"]) == 0
    out = capsys.readouterr().out
    assert "data:       Boston Housing, 506 districts (all)" in out and "mse: " in out


def test_evaluate_reports_a_classifiers_confusions(tmp_path, capsys):
    path = _model(
        tmp_path,
        """
        import graphc as gc

        input_shapes = {"data": (100, 784)}
        net = gc.models.softmax_regression()
    """,
    )
    prefix = str(tmp_path / "softmax")
    assert main(["train", path, "--data", "fashion-mnist", "--checkpoint", prefix, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", prefix, "1", "--data", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert "confusion (rows: true class, columns: predicted)" in out
    assert "most confident mistakes" in out and "accuracy: " in out
    report = (tmp_path / "softmax-0001-report.txt").read_text()
    assert report.startswith("confusion") and (tmp_path / "softmax-0001-report.png").exists()
    assert main(["evaluate", prefix, "7", "--data", "fashion-mnist"]) == 1
    assert "softmax-0007" in capsys.readouterr().err  # a missing checkpoint, named
    assert main(["evaluate", prefix, "1", "--data", "mnist-fashion"]) == 1
    assert "--data 'mnist-fashion'" in capsys.readouterr().err


def test_the_examples_are_model_files(capsys):
    assert main(["compile", "examples/mnist_mlp.py", "--shape", "data=8,784"]) == 0
    assert "outputs:    softmax_output (8, 10)" in capsys.readouterr().out


def test_cache_info_verify_and_clear(tmp_path):
    environment = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path / "cache"))
    environment["NUMBA_CACHE_DIR"] = str(tmp_path / "cache" / "numba")

    def graphc(*args):
        result = subprocess.run(
            [sys.executable, "-m", "graphc.cli", *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )
        return result.returncode, result.stdout + result.stderr

    model = tmp_path / "small.py"
    model.write_text(MODEL_FILE)
    assert graphc("compile", str(model), "--shape", "data=5,7")[0] == 0
    code, out = graphc("cache", "info")
    assert code == 0, out
    counts = {
        line.split()[0]: int(line.split()[-4].replace(",", ""))
        for line in out.splitlines()
        if line.endswith("MiB") and "files" in line
    }
    assert counts["generated"] > 0 and counts["Numba"] > 0, out
    source = next((tmp_path / "cache" / "kernels").glob("k_*.py"))
    assert graphc("cache", "verify")[0] == 0
    source.write_text(source.read_text()[:-20])  # cut short
    code, out = graphc("cache", "verify")
    assert code == 1 and f"damaged:  {source}" in out
    code, out = graphc("compile", str(model), "--shape", "data=5,7", "--explain")
    assert code == 0 and f"rebuilt:  {source.name}: its cached source was damaged" in out, out
    code, out = graphc("cache", "verify")
    assert code == 0 and "compiled again from the source" in out, out
    code, out = graphc("cache", "clear")
    assert code == 0 and not (tmp_path / "cache" / "kernels").exists()
    numba = tmp_path / "cache" / "numba"  # NUMBA_CACHE_DIR set: graphc's folders only
    assert not [p for p in numba.iterdir() if p.name.startswith(("codegen_cpu_", "kernels_"))]


@pytest.mark.unit
def test_the_report_is_text_without_matplotlib(tmp_path, monkeypatch, capsys):
    from graphc.cli.train_command import _classifier_report

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    labels = np.array([0.0, 1.0, 1.0])
    base = str(tmp_path / "report")
    _classifier_report(probs, labels, np.zeros((3, 1, 28, 28)), base)
    text = (tmp_path / "report.txt").read_text()
    assert "    1     1     1" in text  # the confusion row of class 1: one each way
    assert "       2    1    0 0.700" in text  # the one mistake
    assert not (tmp_path / "report.png").exists()
    assert f"report:     {base}.txt\n" in capsys.readouterr().out


@pytest.mark.unit
def test_explain_tells_a_new_shape_dtype_version_or_source_from_the_cache(tmp_path, monkeypatch):
    from graphc.cli import compile_command

    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compile_command, "_cached_sources", {})
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    old = "def kernel(x, out):\n    for i in range(128):\n        out[i] = np.float32(0.5) * x[i]\n"
    (kernels / "k_old.py").write_text("# graphc kernel sha256=0\n" + old)
    before = {"k_old.py"}
    cases = {
        "version changed": old,
        "new shape": old.replace("128", "64"),
        "new dtype": old.replace("float32", "float64"),
        "new shape and dtype": old.replace("128", "64").replace("float32", "float64"),
        "new kernel source": old.replace("*", "+"),
    }
    for index, (reason, source) in enumerate(cases.items()):
        name = f"k_new{index}.py"
        (kernels / name).write_text("# graphc kernel sha256=0\n" + source)
        assert compile_command._why_new_source(source, before).startswith(reason + ":")
