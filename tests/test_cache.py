"""The kernel cache: content-addressed files, concurrent compiles, corruption, warm starts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.backend import source_cache as cache

PROGRAM = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import graphc as gc  # first: it routes Numba's cache before Numba is imported
    from numba.core import event
    x = gc.Variable("x")
    net = gc.tanh(gc.FullyConnected(x, num_hidden=3, name="fc")) * 2.0 + 1.0
    # Numba announces every compile (a load from its cache is not one) as an event.
    with event.install_recorder("numba:compile") as recorder:
        exe = net.simple_bind(gc.cpu(), x=(4, 5))
        exe.arg_dict["fc_weight"][:] = np.arange(15, dtype=np.float32).reshape(3, 5) / 10
        out = exe.forward(x=np.ones((4, 5), dtype=np.float32))[0]
    compiles = sum(1 for _, happened in recorder.buffer if happened.is_start)
    print(json.dumps({"out": out.tolist(), "compiles": compiles}))
    """
)


def _run(cache_dir, count=1):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    env.pop("NUMBA_CACHE_DIR", None)  # graphc then routes Numba's cache under cache_dir
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROGRAM],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        results.append((out, err))
    return results


@pytest.mark.cpu
def test_two_processes_compiling_at_once_both_succeed_and_a_third_starts_warm(tmp_path):
    import json

    first, second = _run(tmp_path, count=2)
    assert json.loads(first[0])["out"] == json.loads(second[0])["out"]
    kernels = list((tmp_path / "kernels").glob("k_*.py"))
    assert kernels, "generated kernels are stored as real files"
    assert sum(json.loads(out)["compiles"] for out, _ in (first, second)) > 0, "a cold start"
    (warm,) = _run(tmp_path)
    assert json.loads(warm[0])["compiles"] == 0, "the third process compiled again"


@pytest.mark.cpu
def test_corrupted_source_entry_is_rebuilt_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    source = (
        "import numba\n\n\n@numba.njit(cache=True)\ndef kernel(a, out):\n    out[0] = a[0] + 41.0\n"
    )
    path = tmp_path / "kernels" / f"k_{cache.cache_key(source)}.py"
    path.parent.mkdir(parents=True)
    path.write_text(
        "# graphc kernel sha256=0\nimport numba\ndef kernel(a, out):\n    out[0] = -1.0\n"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        function = cache.load_kernel(source)
    assert [w.category for w in caught] == [cache.KernelCacheWarning]
    assert "corrupt" in str(caught[0].message)
    out = np.zeros(1)
    function(np.ones(1), out)
    assert out[0] == 42.0


@pytest.mark.cpu
def test_truncated_numba_cache_is_recompiled_with_a_warning(tmp_path):
    """Every compiled entry of the run, generated and hand-written kernels alike, is cut
    short; the next process warns, recompiles and computes the same result."""
    import json

    (first,) = _run(tmp_path)
    entries = [p for p in (tmp_path / "numba").rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert any("codegen_cpu" in str(p) for p in entries), "hand-written kernels are cached there"
    assert any("kernels" in str(p) for p in entries), "generated kernels are cached there"
    for entry in entries:
        entry.write_bytes(entry.read_bytes()[:10])
    (out, err) = _run(tmp_path)[0]
    assert "KernelCacheWarning" in err and "recompiling" in err
    assert json.loads(out)["out"] == json.loads(first[0])["out"]
    (again,) = _run(tmp_path)
    assert "KernelCacheWarning" not in again[1], "the rebuilt entries load cleanly"


@pytest.mark.unit
def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "here"))
    assert cache.cache_dir() == tmp_path / "here"
    monkeypatch.delenv("GRAPHC_CACHE_DIR")
    assert str(cache.cache_dir()).endswith(os.path.join(".cache", "graphc"))
    assert os.environ["NUMBA_CACHE_DIR"]  # routed (or the user's own) before Numba loaded
    assert "numba=" in cache.version_salt() and "llvmlite=" in cache.version_salt()
    assert gc.__version__ in cache.version_salt()
    # Numba checks a cached function against its own file only: the kernels' sources key
    # every entry, so a changed conv.py never leaves a generated step with the old code.
    from graphc.backend.cache_location import kernel_code_version

    assert f"kernels={kernel_code_version()}" in cache.version_salt()
    assert len(kernel_code_version()) == 16
