"""Test-wide settings: Numba counts its allocations (for the no-allocation test), and
kernels are cached in a per-session directory so tests never touch ~/.cache.

Tiers (markers registered in pyproject.toml): ``unit`` tests compile nothing with Numba and
run in seconds (``make test-fast`` runs ``pytest -m unit tests``); ``cpu`` tests compile
CPU kernels; ``slow`` tests, a part of them, train or cold-compile whole models
(``-m "cpu and not slow"`` leaves them out). Every test not marked ``unit`` (or ``cuda``,
``mpi``) is a ``cpu`` test, doctests included, so an unmarked test never slows the fast tier
down; a ``unit`` test that compiles a Numba function fails and says so.
"""

import os
import sys
import tempfile

import pytest

# Numba reads its environment once, when it is imported: imported before this file (by a
# plugin, or a filterwarnings entry in pyproject.toml naming a graphc class, which pytest
# 9.2 imports while it parses its options), it would count no allocations and cache in
# the user's ~/.cache.
if "numba.core.config" in sys.modules:
    raise pytest.UsageError(
        "numba was imported before tests/conftest.py could set NUMBA_NRT_STATS and the"
        " cache folder; keep graphc and numba out of pytest's options and plugins"
    )
os.environ.setdefault("NUMBA_NRT_STATS", "1")
# The CUDA backend's kernels run in Numba's simulator unless the caller says otherwise
# (NUMBA_ENABLE_CUDASIM=0 on a machine with a GPU); it changes nothing for the CPU backend.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
os.environ.setdefault("GRAPHC_CACHE_DIR", os.path.join(tempfile.gettempdir(), "graphc-test-cache"))

# Numba's cache goes where graphc routes it, even for test modules that import numba first.
from graphc.backend.cache_location import route_numba_cache  # noqa: E402

route_numba_cache()

NOT_CPU = ("unit", "cuda", "mpi")


def pytest_configure(config):
    # Tests that go step by step on purpose (a batch_end_callback) need not repeat that
    # warning; the tests of the warning itself catch it with pytest.warns, which filters do
    # not hide.
    config.addinivalue_line("filterwarnings", "ignore::graphc.StepByStepWarning")


def pytest_collection_modifyitems(items):
    """Mark ``cpu`` every test that is not ``unit``, ``cuda`` or ``mpi``; skip the ``cuda``
    tests, saying why, where they are asked to run on a GPU (NUMBA_ENABLE_CUDASIM=0, as
    ``make test-gpu`` does) and none is usable."""
    missing_gpu = _missing_gpu()
    if any(item.get_closest_marker("cuda") for item in items):
        _simulate_device_array_flags()
    for item in items:
        if not any(item.get_closest_marker(name) for name in NOT_CPU):
            item.add_marker(pytest.mark.cpu)
        if missing_gpu and item.get_closest_marker("cuda"):
            item.add_marker(pytest.mark.skip(reason=missing_gpu))


def _missing_gpu() -> str | None:
    """Why the CUDA tests cannot run on a GPU here, or None (the simulator needs none)."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        return None
    from graphc.codegen_cuda.device import require_device

    try:
        require_device()
    except (ImportError, RuntimeError) as missing:
        return f"NUMBA_ENABLE_CUDASIM=0 asks for a GPU: {missing}"
    return None


@pytest.fixture(autouse=True)
def _unit_tests_compile_nothing(request, monkeypatch):
    """Fail a ``unit`` test that compiles a Numba function: it belongs to the ``cpu`` tier.

    ``Dispatcher.compile`` runs the first time a function meets new argument types, whether
    it then compiles or loads Numba's on-disk cache; a function already compiled in this
    process is not seen, so the check is exact when ``-m unit`` runs alone. A test marked
    both ``unit`` and ``cpu`` (say a module's ``pytestmark`` and the test's own mark) fails
    too: ``-m unit`` would select it, and markers do not override one another.
    """
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    compiling = [name for name in ("cpu", "slow") if request.node.get_closest_marker(name)]
    if compiling:
        pytest.fail(
            f"marked unit and {' and '.join(compiling)}: a module marked unit cannot hold a "
            "compiling test; mark its tests one by one"
        )
    from numba.core.dispatcher import Dispatcher

    compiled = []
    original = Dispatcher.compile

    def recording_compile(dispatcher, signature):
        compiled.append(dispatcher.py_func.__qualname__)
        return original(dispatcher, signature)

    monkeypatch.setattr(Dispatcher, "compile", recording_compile)
    yield
    assert not compiled, f"marked unit but compiled {sorted(set(compiled))} with Numba: mark it cpu"


def _simulate_device_array_flags() -> None:
    """Under the simulator, make a device array's ``flags`` what numba-cuda's is on a GPU (a
    dict), not the NumPy flags object the simulator's stand-in passes through, so that code
    reading ``array.flags.c_contiguous`` from a device array fails here as it would there."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0"):
        return
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    def flags(array) -> dict:
        host = array._ary.flags
        return {
            "C_CONTIGUOUS": host.c_contiguous,
            "F_CONTIGUOUS": host.f_contiguous,
            "WRITEABLE": host.writeable,
        }

    FakeCUDAArray.flags = property(flags)
