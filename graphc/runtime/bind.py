"""``Symbol.simple_bind`` and ``Symbol.bind``: from a symbol to an Executor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from graphc.backend.target import ArrayOps, target_for
from graphc.ir.errors import DTypeError, MissingInputError, ShapeError
from graphc.ir.gradcheck import non_differentiable_arguments
from graphc.ir.symbol import Symbol
from graphc.runtime.context import Context, cpu
from graphc.runtime.executor import GRAD_REQS, Executor
from graphc.runtime.shapes import check_input_shape


def _grad_reqs(symbol: Symbol, grad_req) -> dict[str, str]:
    """One request per argument; labels and indices never get a gradient."""
    arguments = symbol.list_arguments()
    skip = non_differentiable_arguments(symbol)
    if isinstance(grad_req, str):
        requests = {name: grad_req for name in arguments}
    elif isinstance(grad_req, Mapping):
        unknown = sorted(set(grad_req) - set(arguments))
        if unknown:
            raise MissingInputError(
                f"grad_req names {unknown}, which are not arguments: {arguments}"
            )
        requests = {name: grad_req.get(name, "null") for name in arguments}
    else:
        requests = dict(zip(arguments, grad_req))
    for name, request in requests.items():
        if request not in GRAD_REQS:
            raise ValueError(
                f"grad_req for {name!r} is {request!r}; allowed: {', '.join(GRAD_REQS)}"
            )
    return {name: ("null" if name in skip else request) for name, request in requests.items()}


def simple_bind(
    symbol: Symbol,
    ctx: Context | None = None,
    grad_req="write",
    type_dict=None,
    options: Mapping | None = None,
    opt_level: int | None = None,
    **shapes,
) -> Executor:
    """Allocate every argument (zeros) and gradient from the given input shapes and bind.

    ``opt_level`` 0, 1 or 2 (default: ``GRAPHC_OPT_LEVEL``, else 2) selects the passes run
    on the training graph before it is lowered.

    >>> import graphc as gc
    >>> exe = gc.models.mlp().simple_bind(gc.cpu(), data=(4, 784))
    >>> exe.arg_dict["fc1_weight"].shape, exe.grad_dict["fc1_weight"].shape
    ((64, 784), (64, 784))
    """
    shapes = {name: check_input_shape("simple_bind", name, s) for name, s in shapes.items()}
    ctx = ctx or cpu()
    zeros = target_for(ctx).arrays.zeros
    arg_shapes, _, aux_shapes = symbol.infer_shape(**shapes)
    arg_types, _, aux_types = symbol.infer_type(**dict(type_dict or {}))
    names = symbol.list_arguments()
    args = {
        name: zeros(tuple(shape), np.dtype(dtype))
        for name, shape, dtype in zip(names, arg_shapes, arg_types)
    }
    aux = {
        name: zeros(tuple(shape), np.dtype(dtype))
        for name, shape, dtype in zip(symbol.list_auxiliary_states(), aux_shapes, aux_types)
    }
    requests = _grad_reqs(symbol, grad_req)
    grads = {
        name: zeros(args[name].shape, args[name].dtype)
        for name, request in requests.items()
        if request != "null"
    }
    return Executor(symbol, ctx, args, grads, requests, aux, options, opt_level, own_grads=True)


def bind(
    symbol: Symbol,
    ctx: Context | None,
    args,
    args_grad=None,
    grad_req="write",
    aux_states=None,
    options: Mapping | None = None,
    opt_level: int | None = None,
    own_grads: bool = False,
) -> Executor:
    """Bind to arrays the caller owns: the executor reads and writes them in place, so they
    must live where the kernels run (NumPy arrays for ``gc.cpu()``, device arrays for
    ``gc.gpu()``).

    With ``own_grads`` the ``args_grad`` arrays only give the gradients' initial values:
    the executor keeps its gradients in its arena, as ``simple_bind`` does, and
    ``grad_dict`` holds views of them."""
    names = symbol.list_arguments()
    ctx = ctx or cpu()
    arrays = target_for(ctx).arrays
    args = _as_dict(args, names, "args", arrays, ctx)
    requests = _grad_reqs(symbol, grad_req)
    if args_grad is None:
        requests = {name: "null" for name in names}
        grads = {}
    else:
        grads = _as_dict(args_grad, names, "args_grad", arrays, ctx, allow_missing=True)
        requests = {name: (req if name in grads else "null") for name, req in requests.items()}
    aux = _as_dict(aux_states or {}, symbol.list_auxiliary_states(), "aux_states", arrays, ctx)
    shapes = {name: array.shape for name, array in args.items()}
    arg_shapes, _, _ = symbol.infer_shape(**shapes)
    arg_types, _, _ = symbol.infer_type(**{name: array.dtype for name, array in args.items()})
    for name, shape, dtype in zip(names, arg_shapes, arg_types):
        for kind, table in (("args_grad", grads),):
            if name in table and (table[name].shape != shape or table[name].dtype != dtype):
                raise ShapeError(
                    f"bind: {kind}[{name!r}] is {table[name].shape} {table[name].dtype}, expected {shape} {dtype}"
                )
    return Executor(
        symbol, ctx, args, grads, requests, aux, options, opt_level, own_grads=own_grads
    )


def _as_dict(
    arrays,
    names: Sequence[str],
    what: str,
    target_arrays: ArrayOps,
    ctx: Context,
    allow_missing: bool = False,
) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping):
        arrays = dict(zip(names, arrays))
    missing = [name for name in names if name not in arrays]
    if missing and not allow_missing:
        raise MissingInputError(f"bind: {what} lacks {missing}")
    unknown = sorted(set(arrays) - set(names))
    if unknown:
        raise MissingInputError(
            f"bind: {what} has {unknown}, which the symbol does not take; it takes {list(names)}"
        )
    result = {}
    kind = "numpy array" if ctx.device_type == "cpu" else f"device array on {ctx}"
    for name, array in arrays.items():
        if not target_arrays.owns(array):
            raise DTypeError(
                f"bind: {what}[{name!r}] must be a writeable C-contiguous {kind}, not"
                f" {type(array).__name__}"
            )
        result[name] = array
    return result
