"""The arrays behind a ``Model``: its parameters, and one executor per input shape bound to
them.

The parameter arrays are allocated once, at the first bind, and every executor (training,
evaluation, prediction, for any batch shape) is bound to those same arrays with
``Symbol.bind``, so an update made through one is seen by all without a copy. The training
executor has a gradient for every parameter and none for data and labels; the others have
none at all, so they compile no backward kernels. An evaluation or prediction with the
training batch shape reuses the training executor.

An iterator's data and labels feed the arguments of the same names; an iterator with one
label feeds a model with one label whatever its name (``NDArrayIter``'s default
``softmax_label`` feeds ``models.linreg``'s ``lro_label``): :meth:`ModelBindings.input_names`.

>>> import graphc as gc
>>> bindings = ModelBindings(gc.models.mlp(), gc.cpu(), ("data",), ("softmax_label",))
>>> train = bindings.executor({"data": (8, 784), "softmax_label": (8,)}, for_training=True)
>>> test = bindings.executor({"data": (2, 784), "softmax_label": (2,)}, for_training=False)
>>> test.arg_dict["fc1_weight"] is train.arg_dict["fc1_weight"], sorted(test.grad_dict)
(True, [])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from graphc.backend.target import HOST_ARRAYS, ArrayOps, target_for
from graphc.ir.errors import ShapeError
from graphc.ir.infer import describe
from graphc.ir.symbol import Symbol
from graphc.runtime.arrays import asnumpy
from graphc.runtime.bind import bind
from graphc.runtime.context import Context
from graphc.runtime.executor import Executor
from graphc.training.states import check_state_names, check_state_shapes


class ModelBindings:
    """Parameter arrays and the executors bound to them.

    Attributes
    ----------
    param_names : list of str
        The arguments that are neither data, labels nor state inputs, in argument order.
    state_names : dict of str to str
        State input to the output that feeds it (``graphc.training.states``).
    arg_params, aux_params : dict of str to ndarray, or None
        None until the first bind or ``set``; then the arrays every executor reads (device
        arrays for a GPU context once bound; ``host_params`` gives their values).
    train_executor : Executor or None
        The executor ``fit`` used last.
    """

    def __init__(
        self,
        symbol: Symbol,
        ctx: Context,
        data_names: Sequence[str],
        label_names: Sequence[str],
        opt_level: int | None = None,
        state_names: Mapping[str, str] | None = None,
    ) -> None:
        arguments = symbol.list_arguments()
        for kind, names in (("data_names", data_names), ("label_names", label_names)):
            unknown = [name for name in names if name not in arguments]
            if unknown:
                raise ValueError(
                    f"Model: {kind} {unknown} are not arguments of the symbol; its arguments "
                    f"are {arguments}"
                )
        self.symbol = symbol
        self.param_source: str | None = None
        """The file the parameters were read from, named when one does not fit."""
        self.ctx = ctx
        self.arrays: ArrayOps = target_for(ctx).arrays
        self.data_names = tuple(data_names)
        self.label_names = tuple(label_names)
        self.opt_level = opt_level
        self.state_names = check_state_names(symbol, state_names, data_names, label_names)
        inputs = set(self.data_names) | set(self.label_names) | set(self.state_names)
        self.param_names = [name for name in arguments if name not in inputs]
        self.arg_params: dict[str, np.ndarray] | None = None
        self.aux_params: dict[str, np.ndarray] = {}
        self.executors: dict[tuple, Executor] = {}
        self.train_executor: Executor | None = None

    def set(self, arg_params, aux_params) -> None:
        """Take these values: copied into the bound arrays once an executor exists, else
        kept (as copies) until the first bind checks their shapes."""
        missing = sorted(set(self.param_names) - set(arg_params))
        unknown = sorted(set(arg_params) - set(self.param_names))
        if missing or unknown:
            raise KeyError(
                f"set_params: missing {missing}, not parameters {unknown}; the parameters are "
                f"{self.param_names}"
            )
        aux_params = dict(aux_params or {})
        if self.executors:
            for table, given in ((self.arg_params, arg_params), (self.aux_params, aux_params)):
                for name, value in given.items():
                    copy_into(table[name], value, f"set_params: {name!r}", arrays=self.arrays)
            return
        self.arg_params = {name: np.array(value) for name, value in arg_params.items()}
        self.aux_params = {name: np.array(value) for name, value in aux_params.items()}

    def input_names(self, data_iter) -> tuple[list[str], list[str]]:
        """The arguments the iterator's data and labels feed, in its order: their names,
        except that one label feeds the model's one label whatever the two are named.

        >>> import numpy as np, graphc as gc
        >>> bindings = ModelBindings(gc.models.linreg(), gc.cpu(), ("data",), ("lro_label",))
        >>> bindings.input_names(gc.io.NDArrayIter(np.zeros((4, 13)), np.zeros(4), 2))
        (['data'], ['lro_label'])
        """
        data_names, label_names = iterator_names(data_iter)
        if len(label_names) == 1 == len(self.label_names):
            label_names = list(self.label_names)
        return data_names, label_names

    def input_shapes(self, data_iter, what: str) -> dict[str, tuple]:
        """Data shapes from ``provide_data``; label shapes as the symbol infers them from the
        data (a batch's label is reshaped to them), else from ``provide_label``. Labels
        must be provided unless ``what`` is ``'predict'``."""
        provided = {name: tuple(shape) for name, shape in data_iter.provide_data}
        label_shapes = [tuple(shape) for _, shape in getattr(data_iter, "provide_label", [])]
        labels = dict(zip(self.input_names(data_iter)[1], label_shapes))
        _check_names(what, "data", provided, self.data_names, "NDArrayIter's data_name")
        if what != "predict":
            _check_names(
                what,
                "label",
                labels,
                self.label_names,
                "NDArrayIter's label_name, Model's label_names",
            )
        partial = self.symbol.infer_shape_partial(**provided)[0]
        inferred = dict(zip(self.symbol.list_arguments(), partial))
        shapes = dict(provided)
        for name in self.label_names:
            shapes[name] = _label_shape(name, inferred.get(name), labels.get(name), provided, what)
        return shapes

    def executor(self, shapes: dict[str, tuple], for_training: bool) -> Executor:
        """The executor for these input shapes, bound to the parameter arrays."""
        key = tuple(sorted(shapes.items()))
        # The training executor also serves evaluation and prediction of its shapes.
        for candidate in ((True, key), (for_training, key)):
            if candidate in self.executors:
                return self.executors[candidate]
        names = self.symbol.list_arguments()
        arg_shapes, out_shapes, aux_shapes = self.symbol.infer_shape(**shapes)
        arg_types, _, aux_types = self.symbol.infer_type()
        arg_specs = {name: (tuple(s), t) for name, s, t in zip(names, arg_shapes, arg_types)}
        check_state_shapes(
            self.state_names,
            dict(zip(names, arg_shapes)),
            dict(zip(self.symbol.list_outputs(), out_shapes)),
        )
        aux_names = self.symbol.list_auxiliary_states()
        aux_specs = {name: (tuple(s), t) for name, s, t in zip(aux_names, aux_shapes, aux_types)}
        self._bind_params(arg_specs, aux_specs)
        zeros = self.arrays.zeros
        args = {
            name: self.arg_params[name] if name in self.arg_params else zeros(shape, dtype)
            for name, (shape, dtype) in arg_specs.items()
        }
        grads = None
        if for_training:  # initial values: each executor keeps its gradients in its arena
            grads = {
                name: zeros(self.arg_params[name].shape, self.arg_params[name].dtype)
                for name in self.param_names
            }
        executor = bind(
            self.symbol,
            self.ctx,
            args,
            args_grad=grads,
            aux_states=self.aux_params,
            opt_level=self.opt_level,
            own_grads=True,
        )
        self.executors[(for_training, key)] = executor
        return executor

    def _readers(self, name: str) -> str:
        """`` (read by fc2 (FullyConnected) at <file:line or file node>)``: where the user
        defined what reads a variable."""
        readers = [
            describe(node)
            for node in self.symbol.graph.nodes
            if any(entry.node.is_variable and entry.node.name == name for entry in node.inputs)
        ]
        return f" (read by {', '.join(readers)})" if readers else ""

    def _bind_params(self, arg_specs: dict, aux_specs: dict) -> None:
        """Allocate the parameter arrays (zeros) at the first bind; otherwise check that the
        ones set have the shapes the symbol needs, and, before any bind, give them its
        dtype."""
        if self.arg_params is None:
            zeros = self.arrays.zeros
            self.arg_params = {
                name: zeros(tuple(shape), dtype)
                for name, (shape, dtype) in arg_specs.items()
                if name in self.param_names
            }
            self.aux_params = {
                name: zeros(tuple(shape), dtype) for name, (shape, dtype) in aux_specs.items()
            }
            return
        tables = [(self.arg_params, name, arg_specs[name]) for name in self.param_names]
        tables += [(self.aux_params, name, spec) for name, spec in aux_specs.items()]
        for table, name, (shape, dtype) in tables:
            if name not in table:
                raise KeyError(f"bind: no value for {name!r}; set_params or load it")
            if table[name].shape != shape:
                source = f" (from {self.param_source})" if self.param_source else ""
                raise ShapeError(
                    f"bind: {name!r}{source} has shape {table[name].shape}, the symbol needs"
                    f" {shape} for these inputs{self._readers(name)}"
                )
            value = table[name]
            if isinstance(value, np.ndarray) and (
                value.dtype != dtype or not value.flags.c_contiguous
            ):
                table[name] = np.ascontiguousarray(value, dtype=dtype)
            elif not isinstance(value, np.ndarray) and value.dtype != dtype:
                table[name] = np.asarray(self.arrays.to_host(value), dtype=dtype)
            if not self.arrays.owns(table[name]):  # values set on the host, bound on a device
                bound = self.arrays.zeros(tuple(shape), dtype)
                self.arrays.copy(bound, table[name])
                table[name] = bound

    def host_params(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The parameters' and auxiliary states' values as NumPy arrays: the bound arrays
        themselves on the CPU, copies from the device on a GPU."""
        return (
            {name: asnumpy(array) for name, array in (self.arg_params or {}).items()},
            {name: asnumpy(array) for name, array in self.aux_params.items()},
        )

    def write_params(self, values: Mapping[str, np.ndarray]) -> None:
        """Copy host ``values`` into the bound parameter and auxiliary arrays of their
        names (nothing to do on the CPU when they are the bound arrays themselves)."""
        for name, value in values.items():
            table = self.arg_params if name in self.arg_params else self.aux_params
            if table[name] is not value:
                self.arrays.copy(table[name], value)

    def copy_batch(self, executor: Executor, batch, data_names, label_names) -> None:
        """Copy a ``DataBatch`` into the executor's data and label arrays, in place; the
        names are those of :meth:`input_names`."""
        for name, value in zip(data_names, batch.data):
            copy_into(executor.arg_dict[name], value, f"batch data {name!r}", False, self.arrays)
        for name, value in zip(label_names, batch.label):
            if name in self.label_names:
                copy_into(
                    executor.arg_dict[name], value, f"batch label {name!r}", arrays=self.arrays
                )


def _check_names(what: str, kind: str, provided, expected, hint: str) -> None:
    """The iterator must provide exactly the model's data (or label) names."""
    if set(provided) != set(expected):
        plural = "data" if kind == "data" else "labels"
        raise ValueError(
            f"{what}: the iterator provides {plural} {list(provided)}, the model's "
            f"{kind}_names are {list(expected)}; name them alike ({hint})"
        )


def _label_shape(name: str, inferred, given, provided: dict, what: str) -> tuple:
    if inferred is not None:
        if given is not None and math.prod(given) != math.prod(inferred):
            raise ShapeError(
                f"{what}: the iterator's label {name!r} has shape {given}, the symbol needs "
                f"{tuple(inferred)} for data {provided}"
            )
        return tuple(inferred)
    if given is not None:
        return given
    raise ShapeError(
        f"{what}: the shape of label {name!r} does not follow from data {provided}; use an "
        "iterator with provide_label"
    )


def copy_into(
    target: np.ndarray, value, what: str, reshape: bool = True, arrays: ArrayOps = HOST_ARRAYS
) -> None:
    """Copy ``value`` into ``target`` in place (an array of ``arrays``: a device array for
    a GPU model, copied to from the host). With ``reshape`` (labels), a value of the
    same size but another shape (a (T, N) label for a (T * N,) head) is copied through a
    reshaped view; data must have the bound shape exactly. Values are cast to the bound
    dtype as NumPy's ``same_kind`` rule allows (float64 data into a float32 model, as
    MXNet's ``Module`` does, integer labels into float ones); float into integer is refused.

    >>> target = np.zeros(4, np.float32)
    >>> copy_into(target, np.arange(4).reshape(2, 2), "label")
    >>> target.tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    value = np.asarray(value)
    if value.shape != target.shape:
        if value.size != target.size or not reshape:
            raise ShapeError(
                f"{what} has shape {value.shape}, the model is bound to {target.shape}"
            )
        value = value.reshape(target.shape)
    if arrays is HOST_ARRAYS:
        np.copyto(target, value, casting="same_kind")
        return
    if not np.can_cast(value.dtype, target.dtype, casting="same_kind"):
        raise TypeError(f"{what}: cannot cast {value.dtype} to the model's {target.dtype}")
    arrays.copy(target, value.astype(target.dtype, copy=False))


def iterator_names(data_iter) -> tuple[list[str], list[str]]:
    """The names in an iterator's ``provide_data`` and ``provide_label``."""
    labels = getattr(data_iter, "provide_label", [])
    return [desc[0] for desc in data_iter.provide_data], [desc[0] for desc in labels]


def batch_size_of(data_iter) -> int:
    """Samples per batch: the iterator's ``batch_size``, else the first data's first axis."""
    size = getattr(data_iter, "batch_size", None)
    return int(size) if size is not None else int(data_iter.provide_data[0][1][0])


def num_batches_of(data_iter) -> int | None:
    """``len(data_iter)``, or None for an iterator without a length."""
    try:
        return len(data_iter)
    except TypeError:
        return None
