"""graphc: a JIT compiler for neural-network computation graphs.

Build MXNet-style symbolic graphs, differentiate them as graphs, and evaluate them with
the NumPy reference executor.

>>> import graphc as gc
>>> x = gc.Variable("x")
>>> y = gc.FullyConnected(x, num_hidden=4, name="fc1")
>>> y.infer_shape(x=(2, 3))[0]
[(2, 3), (4, 3), (4,)]
"""

from graphc.cache_location import route_numba_cache

route_numba_cache()  # before anything below imports Numba

from graphc import codegen_cpu, datasets, initializer, io, metric, models, plot, viz
from graphc.ir import (
    DTypeError,
    GradientError,
    GraphcError,
    GraphFormatError,
    Group,
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
from graphc.model import Model, TrainingDivergedError  # noqa: E402 - after the runtime
from graphc.passes import optimize
from graphc.runtime import (
    Context,
    Executor,
    KernelCacheWarning,
    cpu,
    gpu,
    lr_scheduler,
    optimizer,
)

init = initializer  # MXNet's short name (mx.init.Xavier)

__version__ = "0.1.0"
