"""What a fresh process compiles: nothing on a warm start, and for a new batch size or
sequence length only what depends on it (issue [compile]).

Each child trains two batches through ``Model.fit`` and reports every Numba compile (a
cache miss: Numba's ``numba:compile`` event does not fire for a load from its disk cache),
over the session's test caches (tests/conftest.py), so the first child is warm wherever
other tests compiled the same kernels. Counts are asserted, never seconds. The children
compile in one process (``GRAPHC_COMPILE_JOBS=1``), so the listener sees every compile;
tests/test_compile_workers.py tests compiling in workers.

The children of one test share a private copy of the session's Numba cache, taken when the
test starts: what they find is what they and the tests before them left, and no test
running beside them (pytest-xdist's other worker) rewrites an entry between two children.
(A CI run over the shared cache once saw the third CharLM child compile ``one_hot_at``
again; the children alone, over one cache, never have.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent(
    """
    import json
    import numpy as np
    from numba.core import event

    compiled = []

    class Recorder(event.Listener):
        def on_start(self, event):  # numba's Listener requires it
            return None  # a compile is recorded once, when it ends (on_end)

        def on_end(self, event):
            function = event.data["dispatcher"].py_func
            compiled.append([function.__module__, function.__qualname__])

    event.register("numba:compile", Recorder())
    import numba

    def listener_probe(x):  # compiled, never cached: the listener must see it
        return x + 1

    numba.njit(listener_probe)(1)
    assert compiled == [[__name__, "listener_probe"]], compiled
    compiled.clear()
    import graphc as gc

    model_name, shape = {model!r}, {shape!r}
    rng = np.random.default_rng(0)
    if model_name == "charlm":
        vocab = 11
        net = gc.models.charlm(vocab, embed=6, hidden=7, stateful=True)
        model = gc.Model(net, state_names=gc.models.CHARLM_STATE_NAMES)
        tokens = rng.integers(0, vocab, shape[1] * (2 * shape[0] + 1))
        data = gc.io.BPTTIter(tokens, shape[1], shape[0], layout="TN")
        metric = "perplexity"
    else:
        model = gc.Model(getattr(gc.models, model_name)())
        x = rng.random((2 * shape[0],) + tuple(shape[1:]), dtype=np.float32)
        y = rng.integers(0, 10, 2 * shape[0]).astype(np.float32)
        data = gc.io.NDArrayIter(x, y, batch_size=shape[0])
        metric = "acc"
    model.fit(data, eval_metric=metric, num_epoch=1, verbose=False)
    assert model.fit_path == "compiled", model.fit_path
    print("COMPILED " + json.dumps(compiled))

    # Functions this process compiled twice for one signature but for literal types (a
    # literal 0 passed on: Numba types it Literal[int](0) and compiles the callee again).
    import sys
    from numba.core import types
    doubled = []
    for name, module in list(sys.modules.items()):
        if name.startswith("graphc.codegen_cpu"):
            for attribute, value in vars(module).items():
                if not hasattr(value, "py_func"):  # not a Numba dispatcher
                    continue
                signatures = getattr(value, "signatures", None)
                plain = [tuple(map(types.unliteral, signature)) for signature in signatures or ()]
                if len(set(plain)) < len(plain):
                    doubled.append(name + "." + attribute)
    print("DOUBLED " + json.dumps(sorted(set(doubled))))
    """
)


@pytest.fixture
def numba_cache(tmp_path) -> str:
    """A private copy of the session's Numba cache (tests/conftest.py routes it)."""
    copy = tmp_path / "numba"
    shared = os.environ["NUMBA_CACHE_DIR"]
    if os.path.isdir(shared):
        # Entries are written to temporary names and renamed (Numba's own writes): a copy
        # taken while another test compiles holds whole files, at worst an index entry
        # whose data is not there yet, which the first child compiles.
        shutil.copytree(shared, copy, ignore=shutil.ignore_patterns("*.tmp.*", "*.lock"))
    return str(copy)


def compiled_by_a_child(model: str, shape: tuple, numba_cache: str) -> list[list[str]]:
    """What the child compiled, after checking that it compiled no function twice for one
    signature (meaningful where it compiles: the first child of a fresh session)."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(model=model, shape=shape)],
        env=dict(os.environ, GRAPHC_COMPILE_JOBS="1", NUMBA_CACHE_DIR=numba_cache),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    doubled = next(line for line in lines if line.startswith("DOUBLED "))
    assert json.loads(doubled[len("DOUBLED ") :]) == [], doubled
    line = next(line for line in lines if line.startswith("COMPILED "))
    return json.loads(line[len("COMPILED ") :])


@pytest.mark.parametrize(
    "model, shape, new_shape",
    [
        ("mlp", (6, 784), (4, 784)),
        # Both below the sizes from which LeNet's kernels split over threads: a fused loop
        # that splits is another kernel (numba.prange over its parts), compiled once.
        ("lenet", (3, 1, 28, 28), (2, 1, 28, 28)),
    ],
    ids=["mlp", "lenet"],
)
def test_a_warm_start_and_a_new_batch_size_compile_nothing(model, shape, new_shape, numba_cache):
    compiled_by_a_child(model, shape, numba_cache)  # warms the copy (cold in a fresh session)
    assert compiled_by_a_child(model, shape, numba_cache) == [], "a warm start compiled"
    assert compiled_by_a_child(model, new_shape, numba_cache) == [], "a new batch size compiled"


def test_a_new_sequence_length_compiles_only_kernels_of_that_shape(numba_cache):
    """The LSTM and the hand-written kernels take the length at run time; the training loop
    names no kernel; what may compile again is a generated kernel whose source holds a
    number of that shape (the loss gradient's division by the T*N rows, a constant the
    passes folded)."""
    compiled_by_a_child("charlm", (5, 3), numba_cache)
    assert compiled_by_a_child("charlm", (5, 3), numba_cache) == [], "a warm start compiled"
    again = compiled_by_a_child("charlm", (7, 3), numba_cache)
    assert all(module.startswith("graphc_kernels.") for module, _ in again), again
    assert not [name for _, name in again if name in ("train", "run")], again
    assert len(again) <= 2, again
