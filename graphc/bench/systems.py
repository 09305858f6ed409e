"""Who runs the tasks: graphc (CPU at its default threads and at one, CUDA), the NumPy
baseline, and the peers, each a script in ``graphc/bench/peers/`` run by the interpreter
given with ``--peer NAME=PYTHON``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from graphc.bench.tasks import MODELS

PEERS_DIR = Path(__file__).resolve().parent / "peers"


@dataclass(frozen=True)
class System:
    """One column of the table.

    ``interpreter`` is ``"graphc"`` for graphc's own (``sys.executable``), else the
    ``--peer`` name whose interpreter runs ``script``; ``models`` the models the script
    writes (the others are reported as not run, with ``not_written``); ``setup`` the
    command that makes the peer's interpreter."""

    name: str
    label: str
    interpreter: str
    script: str
    mode: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    models: tuple[str, ...] = MODELS
    not_written: str = ""
    import_name: str = ""
    setup: str = ""

    @property
    def is_peer(self) -> bool:
        return self.interpreter != "graphc"


_ONE_THREAD = {"GRAPHC_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

SYSTEMS = (
    System("graphc", "graphc CPU", "graphc", "graphc.bench.graphc_system", "cpu"),
    System("graphc-1t", "graphc CPU, 1 thread", "graphc", "graphc.bench.graphc_system", "cpu",
           env=_ONE_THREAD),
    System("graphc-cuda", "graphc CUDA", "graphc", "graphc.bench.graphc_system", "cuda",
           env={"NUMBA_ENABLE_CUDASIM": "0"}),
    System("numpy", "NumPy by hand", "graphc", "numpy_peer.py"),
    System("torch", "PyTorch eager", "torch", "torch_peer.py", "eager", import_name="torch",
           setup="python3 -m venv /tmp/peers/torch && /tmp/peers/torch/bin/pip install torch==2.13.0 numpy"),
    System("torch-1t", "PyTorch eager, 1 thread", "torch", "torch_peer.py", "eager",
           env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, import_name="torch",
           setup="python3 -m venv /tmp/peers/torch && /tmp/peers/torch/bin/pip install torch==2.13.0 numpy"),
    System("torch-compile", "PyTorch torch.compile", "torch", "torch_peer.py", "compile",
           import_name="torch",
           setup="python3 -m venv /tmp/peers/torch && /tmp/peers/torch/bin/pip install torch==2.13.0 numpy"),
    System("mxnet", "MXNet Gluon", "mxnet", "mxnet_peer.py", import_name="mxnet",
           setup="python3 -m venv /tmp/peers/mxnet && /tmp/peers/mxnet/bin/pip install"
           " mxnet==1.9.1 'numpy<1.24'"),
    System("jax", "JAX jit", "jax", "jax_peer.py", import_name="jax",
           setup="python3 -m venv /tmp/peers/jax && /tmp/peers/jax/bin/pip install jax jaxlib"),
    System("pytensor-c", "PyTensor C", "pytensor", "pytensor_peer.py", "C",
           env={"PYTENSOR_FLAGS": "blas__ldflags=-lopenblas"}, import_name="pytensor",
           setup="apt-get install -y libopenblas-dev && python3 -m venv /tmp/peers/pytensor &&"
           " /tmp/peers/pytensor/bin/pip install pytensor numba"),
    System("pytensor-numba", "PyTensor Numba", "pytensor", "pytensor_peer.py", "NUMBA",
           import_name="pytensor",
           setup="python3 -m venv /tmp/peers/pytensor && /tmp/peers/pytensor/bin/pip install"
           " pytensor numba"),
)  # fmt: skip

BY_NAME = {system.name: system for system in SYSTEMS}
PEER_NAMES = tuple(sorted({s.interpreter for s in SYSTEMS if s.is_peer}))
