"""A CPU-only program never loads the optional extras' libraries (numba-cuda, onnx, mpi4py,
matplotlib): importing graphc, binding and running a graph on the CPU leaves them out."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import graphc as gc

    net = gc.FullyConnected(gc.Variable("x"), num_hidden=2, name="fc")
    exe = net.simple_bind(gc.cpu(), x=(3, 4))
    exe.forward(x=np.ones((3, 4), dtype=np.float32))
    optional = ("numba.cuda", "numba_cuda", "cuda", "onnx", "mpi4py", "matplotlib")
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in optional
                            or m.startswith("numba.cuda"))))
    """
)


def test_a_cpu_run_loads_no_optional_library():
    result = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1]) == []
