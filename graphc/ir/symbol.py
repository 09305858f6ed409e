"""Symbol: the user's handle on one or more node outputs, with MXNet's methods.

>>> import graphc as gc
>>> data = gc.Variable("data")
>>> net = gc.FullyConnected(data, num_hidden=10, name="fc1")
>>> net.list_arguments()
['data', 'fc1_weight', 'fc1_bias']
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from graphc.ir.graph import Graph
from graphc.ir.infer import infer_dtypes, infer_shapes
from graphc.ir.node import NAMES, VARIABLE_OP, Node, NodeOutput, freeze_attrs, user_source
from graphc.ir.registry import REQUIRED, OpDef, get_op

_BINDERS: dict[str, Callable] = {}
"""``simple_bind`` and ``bind``, registered by ``graphc.runtime`` when it is imported: the IR
comes first in the way through graphc and imports nothing above it, while MXNet's API puts
binding on the symbol."""


def register_binders(**binders: Callable) -> None:
    _BINDERS.update(binders)


def _binder(name: str) -> Callable:
    try:
        return _BINDERS[name]
    except KeyError:
        raise RuntimeError(
            f"Symbol.{name} needs graphc.runtime; import graphc (not graphc.ir alone)"
        ) from None


class Symbol:
    """One or more outputs of graph nodes. Immutable; arithmetic builds new nodes."""

    __slots__ = ("_entries", "_graph")

    def __init__(self, entries: Sequence[NodeOutput]):
        self._entries = tuple(entries)
        self._graph = None

    # -- structure ---------------------------------------------------------------------------

    @property
    def entries(self) -> tuple[NodeOutput, ...]:
        return self._entries

    @property
    def graph(self) -> Graph:
        if self._graph is None:
            self._graph = Graph(self._entries)
        return self._graph

    @property
    def node(self) -> Node:
        """The node of a single-output symbol."""
        self._require_single("node")
        return self._entries[0].node

    @property
    def name(self) -> str | None:
        """The node name of a single-output symbol (None for a group)."""
        if len(self._entries) != 1:
            return None
        return self._entries[0].node.name

    def _require_single(self, what: str) -> None:
        if len(self._entries) != 1:
            raise ValueError(
                f"{what} needs a single-output symbol; this one has {len(self)} outputs"
            )

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return (Symbol([entry]) for entry in self._entries)

    def __getitem__(self, key: int | str) -> Symbol:
        if isinstance(key, str):
            names = self.list_outputs()
            if key not in names:
                raise KeyError(f"no output named {key!r}; outputs are {names}")
            return Symbol([self._entries[names.index(key)]])
        if not -len(self) <= key < len(self):
            raise IndexError(f"output index {key} out of range for {len(self)} outputs")
        return Symbol([self._entries[key]])

    def __repr__(self) -> str:
        if len(self._entries) == 1:
            return f"<Symbol {self.name}>"
        return f"<Symbol group [{', '.join(self.list_outputs())}]>"

    # -- MXNet's introspection ---------------------------------------------------------------

    def list_arguments(self) -> list[str]:
        """Names of the arguments (variables that are not auxiliary states), in graph order."""
        return [node.name for node in self.graph.arguments]

    def list_auxiliary_states(self) -> list[str]:
        return [node.name for node in self.graph.aux_variables]

    def list_inputs(self) -> list[str]:
        return [node.name for node in self.graph.variables]

    def list_outputs(self) -> list[str]:
        """``{node}_{output}`` for each output; a variable's output is just its name."""
        names = []
        for entry in self._entries:
            node = entry.node
            if node.is_variable:
                names.append(node.name)
            else:
                names.append(f"{node.name}_{output_names(node)[entry.index]}")
        return names

    def get_internals(self) -> Symbol:
        """Every visible output of every node in the graph, as one group."""
        entries = []
        for node in self.graph.nodes:
            count = 1 if node.is_variable else get_op(node.op).num_visible_outputs(node.attrs)
            entries.extend(NodeOutput(node, index) for index in range(count))
        return Symbol(entries)

    def get_children(self) -> Symbol | None:
        self._require_single("get_children")
        inputs = self._entries[0].node.inputs
        return Symbol(inputs) if inputs else None

    def attr_dict(self) -> dict[str, dict[str, Any]]:
        return {node.name: dict(node.attrs) for node in self.graph.nodes if node.attrs}

    # -- inference ---------------------------------------------------------------------------

    def infer_shape(self, *args: tuple, **kwargs: tuple):
        """Infer all shapes from some argument shapes.

        Returns ``(arg_shapes, out_shapes, aux_shapes)``, lists in the order of
        list_arguments, list_outputs and list_auxiliary_states.

        >>> import graphc as gc
        >>> fc = gc.FullyConnected(gc.Variable("x"), num_hidden=3, name="fc")
        >>> fc.infer_shape(x=(2, 5))
        ([(2, 5), (3, 5), (3,)], [(2, 3)], [])
        """
        return self._infer_shape(args, kwargs, partial=False)

    def infer_shape_partial(self, *args: tuple, **kwargs: tuple):
        """Like infer_shape, with None for whatever cannot be inferred."""
        return self._infer_shape(args, kwargs, partial=True)

    def _infer_shape(self, args: tuple, kwargs: dict, partial: bool):
        # unknown_dims infers shapes with this module's Symbol: imported here, not above.
        from graphc.ir.unknown_dims import resolve_unknown_dims

        given = _positional_to_names(self.list_arguments(), args, kwargs)
        settled = resolve_unknown_dims(self, given) if not partial else self
        inferred = infer_shapes(settled.graph, given, partial=partial)
        return settled._by_role(inferred)

    def infer_type(self, *args: Any, **kwargs: Any):
        """Infer all dtypes; returns ``(arg_types, out_types, aux_types)`` of numpy dtypes."""
        given = _positional_to_names(self.list_arguments(), args, kwargs)
        inferred = infer_dtypes(self.graph, given)
        return self._by_role(inferred)

    def _by_role(self, inferred):
        graph = self.graph
        args = [inferred.variables[node.name] for node in graph.arguments]
        outs = [inferred[entry] for entry in self._entries]
        aux = [inferred.variables[node.name] for node in graph.aux_variables]
        return args, outs, aux

    # -- listing and serialization -------------------------------------------------------------

    def debug_str(self, **shapes: tuple) -> str:
        """One line per node: name, op, inputs, attributes and (when inferable) shapes."""
        from graphc.ir.listing import debug_str

        return debug_str(self, shapes)

    def tojson(self) -> str:
        from graphc.ir.serialize import to_json

        return to_json(self)

    def save(self, fname: str) -> None:
        from graphc.ir.serialize import save

        save(self, fname)

    # -- binding (the runtime builds executors) ---------------------------------------------

    def simple_bind(
        self, ctx=None, grad_req="write", type_dict=None, options=None, opt_level=None, **shapes
    ):
        """Allocate arguments and gradients from input shapes and bind an Executor.

        ``options`` tunes code generation: ``fastmath`` (default False), ``im2col_bytes``
        (the convolution workspace bound, default 64 MiB) and ``num_threads`` (the threads
        the kernels split their work for; default ``gc.get_num_threads()``). ``opt_level`` 0, 1 or 2 (default
        ``GRAPHC_OPT_LEVEL``, else 2) selects the optimization passes."""
        return _binder("simple_bind")(
            self,
            ctx,
            grad_req=grad_req,
            type_dict=type_dict,
            options=options,
            opt_level=opt_level,
            **shapes,
        )

    def bind(
        self,
        ctx,
        args,
        args_grad=None,
        grad_req="write",
        aux_states=None,
        options=None,
        opt_level=None,
        own_grads=False,
    ):
        """Bind to caller-owned arrays (read and written in place); with ``own_grads`` the
        gradients live in the executor's arena, ``args_grad`` giving their initial values."""
        return _binder("bind")(
            self,
            ctx,
            args,
            args_grad=args_grad,
            grad_req=grad_req,
            aux_states=aux_states,
            options=options,
            opt_level=opt_level,
            own_grads=own_grads,
        )

    # -- operators -------------------------------------------------------------------------

    def __add__(self, other):
        return _binary("add", self, other)

    def __radd__(self, other):
        return _binary("add", other, self)

    def __sub__(self, other):
        return _binary("subtract", self, other)

    def __rsub__(self, other):
        return _binary("subtract", other, self)

    def __mul__(self, other):
        return _binary("multiply", self, other)

    def __rmul__(self, other):
        return _binary("multiply", other, self)

    def __truediv__(self, other):
        return _binary("divide", self, other)

    def __rtruediv__(self, other):
        return _binary("divide", other, self)

    def __pow__(self, other):
        return _binary("power", self, other)

    def __rpow__(self, other):
        return _binary("power", other, self)

    def __neg__(self):
        return apply_op("negative", [self], {})

    def __matmul__(self, other):
        return apply_op("dot", [self, other], {})

    def __gt__(self, other):
        return _binary("greater", self, other)

    def __ge__(self, other):
        return _binary("greater_equal", self, other)

    def __lt__(self, other):
        return _binary("lesser", self, other)

    def __le__(self, other):
        return _binary("lesser_equal", self, other)

    # Symbols are graph handles: == builds no node, and hashing is by identity.
    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise TypeError("a Symbol has no truth value; evaluate it with gc.evaluate first")


def output_names(node: Node) -> tuple[str, ...]:
    if node.is_variable:
        return (node.name,)
    opdef = get_op(node.op)
    return opdef.output_names(node.attrs) + opdef.hidden_output_names(node.attrs)


def _positional_to_names(arguments: list[str], args: tuple, kwargs: dict) -> dict:
    given = dict(kwargs)
    if len(args) > len(arguments):
        raise ValueError(f"{len(args)} positional values for {len(arguments)} arguments")
    for name, value in zip(arguments, args):
        if value is not None:
            given[name] = value
    return {name: value for name, value in given.items() if value is not None}


def scalar(value: float) -> Symbol:
    """A constant scalar that takes the dtype of whatever it is combined with."""
    return apply_op("_scalar", [], {"value": float(value)})


def as_symbol(value: Any) -> Symbol:
    if isinstance(value, Symbol):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return scalar(value)
    raise TypeError(f"cannot combine a Symbol with {type(value).__name__} {value!r}")


def _binary(op: str, left: Any, right: Any) -> Symbol:
    return apply_op(op, [as_symbol(left), as_symbol(right)], {})


def Variable(
    name: str,
    shape: Sequence[int] | None = None,
    dtype: Any = None,
    init: Any = None,
    lr_mult: float | None = None,
    wd_mult: float | None = None,
    **attrs: Any,
) -> Symbol:
    """A named input of the graph (data, label or parameter).

    >>> import graphc as gc
    >>> gc.Variable("data", shape=(100, 1, 28, 28)).name
    'data'
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Variable name must be a non-empty string, not {name!r}")
    values: dict[str, Any] = dict(attrs)
    if shape is not None:
        shape = tuple(int(dim) for dim in shape)
        if any(dim < 0 for dim in shape):
            raise ValueError(f"Variable {name}: shape {shape} has a negative dimension")
        values["shape"] = shape
    if dtype is not None:
        values["dtype"] = np.dtype(dtype).name
    if init is not None:
        values["init"] = (
            init if isinstance(init, str) else getattr(init, "dumps", lambda: str(init))()
        )
    if lr_mult is not None:
        values["lr_mult"] = float(lr_mult)
    if wd_mult is not None:
        values["wd_mult"] = float(wd_mult)
    node = Node(VARIABLE_OP, name, (), freeze_attrs(values), user_source())
    return Symbol([NodeOutput(node, 0)])


var = Variable


def Group(symbols: Iterable[Symbol]) -> Symbol:
    """One symbol over the outputs of several."""
    entries: list[NodeOutput] = []
    for symbol in symbols:
        entries.extend(symbol.entries)
    return Symbol(entries)


def apply_op(
    op: str,
    inputs: Sequence[Symbol | None],
    attrs: Mapping[str, Any],
    name: str | None = None,
) -> Symbol:
    """Create a node of ``op``: validate attributes, auto-create missing parameter and label
    variables (``{name}_weight``, ``{name}_label``) and return a symbol of its visible outputs."""
    opdef = get_op(op)
    name = name or NAMES.next_name(op)
    source = user_source()
    where = f"{name} ({op}) at {source}"
    parsed = opdef.parse_attrs(attrs, where)
    input_names = opdef.input_names(parsed)
    inputs = list(inputs)
    if len(inputs) > len(input_names):
        raise ValueError(f"{where}: {len(inputs)} inputs given, {op} takes {list(input_names)}")
    inputs += [None] * (len(input_names) - len(inputs))
    entries = []
    for input_name, value in zip(input_names, inputs):
        if value is None:
            if input_name in opdef.params or input_name in opdef.labels or input_name in opdef.aux:
                value = Variable(f"{name}_{input_name}")
            else:
                raise ValueError(f"{where}: input {input_name!r} is required")
        value = as_symbol(value)
        if len(value) != 1:
            raise ValueError(
                f"{where}: input {input_name!r} is a group of {len(value)} outputs; pick one"
            )
        entries.append(value.entries[0])
    node = Node(op, name, tuple(entries), freeze_attrs(parsed), source)
    count = opdef.num_visible_outputs(parsed)
    return Symbol([NodeOutput(node, index) for index in range(count)])


def make_constructor(opdef: OpDef, public_name: str | None = None):
    """The top-level function for an op: inputs positionally or by name, then attributes.

    ``gc.FullyConnected(data, num_hidden=10, name="fc1")`` or with explicit parameters
    ``gc.FullyConnected(data=x, weight=w, bias=b, num_hidden=10)``."""

    def constructor(
        *args: Any, name: str | None = None, attr: Mapping | None = None, **kwargs: Any
    ):
        if opdef.variadic:
            inputs = list(args)
            kwargs.setdefault("num_args", len(inputs))
            attrs = kwargs
        else:
            input_names = opdef.input_names(_attrs_for_inputs(opdef, kwargs))
            inputs = list(args) + [None] * (len(input_names) - len(args))
            attrs = {}
            for key, value in kwargs.items():
                if key in input_names and key not in opdef.schema:
                    inputs[input_names.index(key)] = value
                else:
                    attrs[key] = value
        return apply_op(opdef.name, inputs, attrs, name=name)

    constructor.__name__ = public_name or opdef.name
    constructor.__qualname__ = constructor.__name__
    constructor.__doc__ = opdef.doc
    return functools.wraps(constructor)(constructor)


def _attrs_for_inputs(opdef: OpDef, kwargs: Mapping[str, Any]) -> dict:
    """Attributes good enough to list the op's inputs (``no_bias`` decides whether ``bias``
    is one) before they are validated for real: given values, else defaults, else None."""
    values = {}
    for attr in opdef.attrs:
        try:
            parsed = attr.parse(kwargs[attr.name], opdef.name) if attr.name in kwargs else None
        except ValueError:
            parsed = None  # apply_op reports it, naming the node
        if parsed is None and attr.name not in kwargs:
            parsed = None if attr.default is REQUIRED else attr.default
        values[attr.name] = parsed
    return values
