"""graphc: a JIT compiler for neural-network computation graphs.

Build MXNet-style symbolic graphs, differentiate them as graphs, and evaluate them with
the NumPy reference executor; bind them to compiled kernels and train them.

>>> import graphc as gc
>>> x = gc.Variable("x")
>>> y = gc.FullyConnected(x, num_hidden=4, name="fc1")
>>> y.infer_shape(x=(2, 3))[0]
[(2, 3), (4, 3), (4,)]
"""

from graphc.backend.cache_location import route_numba_cache

route_numba_cache()  # before anything below imports Numba

import sys
from importlib.metadata import PackageNotFoundError, version

from graphc import (
    backend,
    codegen_cpu,
    codegen_cuda,
    data,
    interop,
    ir,
    models,
    passes,
    runtime,
    training,
)
from graphc.backend import KernelCacheWarning
from graphc.codegen_cpu.threads import get_num_threads, set_num_threads
from graphc.ir import (
    DTypeError,
    GradientError,
    GraphcError,
    GraphFormatError,
    Group,
    ImportFormatError,
    MissingInputError,
    ShapeError,
    Symbol,
    Variable,
    evaluate,
    grad,
    gradcheck,
    load,
    load_json,
    var,
)
from graphc.ir.ops import *  # noqa: F403 - every op constructor at the top level, as mx.sym.*
from graphc.passes import optimize
from graphc.runtime import Context, Executor, asnumpy, cpu, gpu
from graphc.training import Model, StepByStepWarning, TrainingDivergedError

_MODULES = {
    "io": data.io,
    "datasets": data.datasets,
    "optimizer": training.optimizer,
    "lr_scheduler": training.lr_scheduler,
    "metric": training.metric,
    "initializer": training.initializer,
    "init": training.initializer,  # MXNet's short name (mx.init.Xavier)
    "plot": training.plot,
    "kvstore": training.kvstore,
    "viz": passes.dump,
    "mxnet": interop.mxnet,
    "onnx": interop.onnx,
}
"""Public module names as MXNet users know them (``gc.io``, ``gc.metric``), for the modules
that live in the layered packages; ``import graphc.io`` works too."""

for _name, _module in _MODULES.items():
    globals()[_name] = _module
    sys.modules[f"{__name__}.{_name}"] = _module
del _name, _module

try:
    __version__ = version("graphc")  # pyproject.toml holds it
except PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"

del sys, version, PackageNotFoundError, route_numba_cache
