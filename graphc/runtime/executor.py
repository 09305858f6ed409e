"""The executor: a symbol bound to arrays, run by compiled kernels (MXNet's Executor).

At bind the executor builds the training graph (the forward outputs and, when gradients
are requested, the gradient graph from ``gc.grad``), optimizes it (``opt_level``), infers
every shape and dtype, lowers each node to a kernel for the context's target, plans the
buffers (``passes.liveness``, ``passes.memory_plan``), allocates one arena through the
target and compiles one sequence each for the forward and the backward kernels
(``codegen_cpu.sequence`` on the CPU). ``forward`` and ``backward`` are then one compiled
call each over the planned buffers; nothing is allocated per step.

The arena, one 64-byte aligned allocation, holds every intermediate (shared by lifetime),
the outputs, the gradients when the executor owns them (``simple_bind``, and ``Model``'s
executors; ``bind`` with ``args_grad`` writes the caller's arrays instead, as MXNet does)
and what ``reserve`` adds for the executor's life (``Model.fit`` puts the optimizer's state
there). ``outputs`` and ``grad_dict`` are views into it; parameters and data keep their own
arrays. On the CPU these are NumPy arrays; on a GPU (``gc.gpu()``) they are the device's
arrays (numba-cuda's, with ``__cuda_array_interface__``): ``gc.asnumpy(array)`` copies one
to the host, and ``forward`` takes host or device inputs.

>>> import numpy as np, graphc as gc
>>> net = gc.FullyConnected(gc.Variable("x"), num_hidden=2, name="fc")
>>> exe = net.simple_bind(gc.cpu(), x=(3, 4))
>>> exe.arg_dict["fc_weight"][:] = 1.0
>>> exe.forward(x=np.ones((3, 4), dtype=np.float32))[0].tolist()
[[4.0, 4.0], [4.0, 4.0], [4.0, 4.0]]
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import numpy as np

from graphc.backend.lowering import Kernel, NodeSpec, kernel_for
from graphc.backend.target import Target, target_for
from graphc.ir.errors import BackendError, DTypeError, ShapeError
from graphc.ir.grad import grad as build_gradients
from graphc.ir.graph import Graph
from graphc.ir.infer import infer_dtypes, infer_shapes
from graphc.ir.node import Node, NodeOutput
from graphc.ir.registry import get_op
from graphc.ir.symbol import Symbol, Variable
from graphc.ir.unknown_dims import resolve_unknown_dims, settle_dtypes
from graphc.passes.liveness import (
    BufferAssignment,
    assign_buffers,
    lifetime_requests,
    outputs_of,
    workspace_requests,
)
from graphc.passes.memory_plan import FOREVER, BufferRequest, plan_memory
from graphc.passes.pipeline import LEVEL_PASSES, optimize
from graphc.runtime.context import Context
from graphc.runtime.launch import CompiledSequence, Launch, call_launch, provenance
from graphc.runtime.shapes import check_input_shape

GRAD_REQS = ("write", "add", "null")
IN_PLACE_LEVEL = 2
"""From this optimization level on, elementwise kernels run in place where they can."""


GRADIENT_ALIGN = 64
"""The alignment of each gradient in the executor's gradient block (a cache line)."""

DROPOUT_STREAM_BITS = 24
"""Where :attr:`Executor.dropout_stream` goes in the step Dropout's masks are drawn for."""


class Executor:
    """A bound symbol. Use ``Symbol.simple_bind`` or ``Symbol.bind`` to make one."""

    def __init__(
        self,
        symbol: Symbol,
        ctx: Context,
        arg_dict: dict[str, np.ndarray],
        grad_dict: dict[str, np.ndarray],
        grad_req: dict[str, str],
        aux_dict: dict[str, np.ndarray],
        options: Mapping | None = None,
        opt_level: int | None = None,
        own_grads: bool = False,
    ) -> None:
        """``own_grads``: ``grad_dict``'s arrays are only initial values; the executor keeps
        its gradients in its arena and ``grad_dict`` holds views of them (``simple_bind``).
        Without it the caller's arrays are written in place (``bind`` with ``args_grad``)."""
        self.target: Target = target_for(ctx)
        self._arrays = self.target.arrays
        for table in (arg_dict, aux_dict):
            for name, array in table.items():
                check_input_shape("bind", name, array.shape)
        self.symbol = symbol
        self.ctx = ctx
        self.arg_dict = arg_dict
        self.grad_dict = grad_dict
        self.grad_req = grad_req
        self.aux_dict = aux_dict
        self._user_options = dict(options or {})
        self.options = {**self.target.bind_options(), **self._user_options}
        self.opt_level = resolve_opt_level(opt_level)
        self.dropout_counter = 0
        """Training forwards so far: the counter Dropout draws its masks from."""
        self.dropout_stream = 0
        """Which of several independent mask streams this executor draws from (a
        data-parallel rank: ranks that train together must not drop the same units);
        :meth:`dropout_step` adds it to the counter above its low 24 bits."""
        self._owns_grads = own_grads
        self._reserved: dict[tuple, tuple[tuple, np.dtype]] = {}
        self._persistent: dict[tuple, np.ndarray] = {}
        self._build()

    # -- bind ----------------------------------------------------------------------------------

    def _build(self) -> None:
        # ``self.symbol`` stays the user's (reshape settles MXNet's 0 sizes again); what is
        # compiled has them settled from the bound shapes (graphc.ir.unknown_dims).
        bound = {**self.arg_dict, **self.aux_dict}
        symbol = resolve_unknown_dims(self.symbol, {name: a.shape for name, a in bound.items()})
        symbol = settle_dtypes(symbol, {name: a.dtype for name, a in bound.items()})
        self._settled = symbol
        wrt = [
            name for name in symbol.list_arguments() if self.grad_req.get(name, "null") != "null"
        ]
        self._head_vars = self._head_gradient_variables() if wrt else []
        grads = build_gradients(symbol, wrt, head_grads=self._head_vars) if wrt else []
        self._grad_entries = dict(zip(wrt, (g.entries[0] for g in grads)))
        values = dict(self.arg_dict)
        values.update(self.aux_dict)
        self._head_arrays = self._allocate_head_gradients(values)
        values.update(self._head_arrays)
        # Forward and gradient are optimized together, so that they share work.
        training = Symbol(list(symbol.entries) + list(self._grad_entries.values()))
        shapes = {name: array.shape for name, array in values.items()}
        training = optimize(
            training,
            level=self.opt_level,
            shapes=shapes,
            forward_outputs=len(symbol.entries),
            capabilities=self.target.fusion,
        )
        entries = list(training.entries)
        self._output_entries = entries[: len(symbol.entries)]
        self._grad_entries = dict(zip(self._grad_entries, entries[len(symbol.entries) :]))
        graph = Graph(tuple(entries))
        self._shapes = infer_shapes(
            graph, {name: a.shape for name, a in values.items() if name in _names(graph)}
        )
        self._dtypes = infer_dtypes(
            graph, {name: a.dtype for name, a in values.items() if name in _names(graph)}
        )
        forward_nodes = set(Graph(tuple(self._output_entries)).nodes)
        schedule = [node for node in graph.nodes if not node.is_variable]
        self._forward_count = sum(1 for node in schedule if node in forward_nodes)
        schedule.sort(key=lambda node: node not in forward_nodes)  # stable: forward first
        self.graph = graph
        self.schedule = schedule
        self._kernels = [self._lower(node) for node in schedule]
        self._values = values
        self._bind_buffers(values)

    def _head_gradient_variables(self) -> list:
        heads = []
        for index, entry in enumerate(self.symbol.entries):
            node = entry.node
            is_loss = not node.is_variable and get_op(node.op).is_loss_head
            heads.append(None if is_loss else Variable(f"_head_grad{index}"))
        return heads

    def _allocate_head_gradients(self, values: dict) -> dict[str, np.ndarray]:
        heads = [var for var in self._head_vars if var is not None]
        if not heads:
            return {}
        shapes = infer_shapes(
            self._settled.graph,
            {n: a.shape for n, a in values.items() if n in _names(self._settled.graph)},
        )
        dtypes = infer_dtypes(
            self._settled.graph,
            {n: a.dtype for n, a in values.items() if n in _names(self._settled.graph)},
        )
        arrays = {}
        for var, entry in zip(self._head_vars, self._settled.entries):
            if var is not None:
                arrays[var.name] = self._arrays.zeros(shapes[entry], dtypes[entry])
                self._arrays.fill(arrays[var.name], 1)
        return arrays

    def _lower(self, node: Node) -> Kernel:
        opdef = get_op(node.op)
        count = opdef.num_outputs(node.attrs)
        outputs = [NodeOutput(node, i) for i in range(count)]
        spec = NodeSpec(
            op=node.op,
            name=node.name,
            attrs=node.attrs,
            in_shapes=tuple(self._shapes[e] for e in node.inputs),
            in_dtypes=tuple(self._dtypes[e] for e in node.inputs),
            out_shapes=tuple(self._shapes[e] for e in outputs),
            out_dtypes=tuple(self._dtypes[e] for e in outputs),
            options=self.options,
        )
        return kernel_for(spec, self.target.name)

    def _bind_buffers(self, values: dict[str, np.ndarray]) -> None:
        """Plan the arena (liveness and in-place decisions are the passes'), allocate it
        through the target, then bind each launch's arguments."""
        assignment = assign_buffers(
            self.schedule,
            views={
                node: kernel.view_of
                for node, kernel in zip(self.schedule, self._kernels)
                if kernel.view_of is not None
            },
            elementwise={
                node for node, kernel in zip(self.schedule, self._kernels) if kernel.elementwise
            },
            shapes=self._shapes,
            dtypes=self._dtypes,
            kept=set(self._output_entries) | set(self._grad_entries.values()),
            in_place=self.opt_level >= IN_PLACE_LEVEL,
        )
        self._direct_grads = self._direct_gradient_entries(assignment.first_def)
        direct = set(self._direct_grads.values())
        owned = [entry for entry in assignment.first_def if entry not in direct]
        requests = lifetime_requests(
            assignment,
            owned,
            outputs=self._output_entries,
            gradients=list(self._grad_entries.values()),
            end=len(self.schedule),
            nbytes={entry: _nbytes(self._shapes[entry], self._dtypes[entry]) for entry in owned},
        )
        workspace = workspace_requests(
            [[_nbytes(shape, dtype) for shape, dtype in k.workspace] for k in self._kernels]
        )
        self.memory_plan = plan_memory(
            requests + workspace + self._persistent_requests(),
            optimized=self.opt_level >= IN_PLACE_LEVEL,
        )
        self._arena = self._allocate_arena(self.memory_plan.arena_bytes)
        self._place_persistent()
        self._bind_launches(values, assignment, owned)

    def _allocate_arena(self, nbytes: int):
        try:
            return self.target.allocate_arena(nbytes)
        except MemoryError:
            sizes = sorted(self.memory_plan.sizes.items(), key=lambda item: -item[1])[:5]
            largest = ", ".join(
                f"{_buffer_label(key, self.schedule)} {size:,} bytes" for key, size in sizes
            )
            raise MemoryError(
                f"bind: the {self.target.name} arena of graph {self.symbol.list_outputs()} needs "
                f"{nbytes:,} bytes ({nbytes / 2**30:.2f} GiB), which cannot be allocated; "
                f"largest buffers: {largest}"
            ) from None

    def _bind_launches(
        self, values: dict, assignment: BufferAssignment, owned: list[NodeOutput]
    ) -> None:
        arrays: dict[NodeOutput, np.ndarray] = {}
        for node in self.graph.variables:
            arrays[NodeOutput(node, 0)] = values[node.name]
        for entry in owned:
            arrays[entry] = self._block_view(entry, self._shapes[entry], self._dtypes[entry])
        for name, entry in self._direct_grads.items():
            arrays[entry] = self.grad_dict[name]
        launches = []
        for position, (node, kernel) in enumerate(zip(self.schedule, self._kernels)):
            entries = outputs_of(node)
            if kernel.view_of is not None:
                source = arrays[node.inputs[kernel.view_of]]
                arrays[entries[0]] = source.reshape(self._shapes[entries[0]])
                continue
            for entry in entries:
                donor = assignment.in_place.get(entry)
                if donor is not None:
                    arrays[entry] = arrays[node.inputs[donor]]
            inputs = tuple(arrays[e] for e in node.inputs)
            outputs = tuple(arrays[entry] for entry in entries)
            workspace = tuple(
                self._block_view(("ws", position, slot), shape, dtype)
                for slot, (shape, dtype) in enumerate(kernel.workspace)
            )
            # the addresses of kernels called through them are filled where the launches
            # run: a compiled sequence compiles them with everything else, on every core
            arguments = kernel.arguments(inputs, outputs, workspace, resolve=False)
            launch = Launch(node, kernel, arguments)
            launches.append((position, launch))
        self._in_place = assignment.in_place
        self._forward_launches = [
            launch for position, launch in launches if position < self._forward_count
        ]
        self._backward_launches = [
            launch for position, launch in launches if position >= self._forward_count
        ]
        self.outputs = [arrays[entry] for entry in self._output_entries]
        self._grad_sources = {
            name: arrays[entry]
            for name, entry in self._grad_entries.items()
            if name not in self._direct_grads
        }
        self._forward_run = CompiledSequence(self.target, self._forward_launches)
        self._backward_run = CompiledSequence(
            self.target, self._backward_launches, prelude=tuple(self._forward_launches)
        )

    def _persistent_requests(self) -> list[BufferRequest]:
        """Buffers alive for the executor's whole life: the gradients it owns, one block
        (each gradient at an aligned offset in it, in argument order: a data-parallel fit
        sums them all in place with one call, :meth:`gradient_block`), and what ``reserve``
        asked for (optimizer state)."""
        offset, self._grad_offsets = 0, {}
        for name, array in self._owned_grads().items():
            self._grad_offsets[name] = offset
            offset += -(-_nbytes(array.shape, array.dtype) // GRADIENT_ALIGN) * GRADIENT_ALIGN
        requests = [BufferRequest(("grads",), offset, 0, FOREVER)] if offset else []
        return requests + [
            BufferRequest(("reserved", *key), _nbytes(shape, dtype), 0, FOREVER)
            for key, (shape, dtype) in self._reserved.items()
        ]

    def _gradient_bytes(self):
        """The arena's bytes of the gradient block, or None without owned gradients."""
        if ("grads",) not in self.memory_plan.offsets:
            return None
        start = self.memory_plan.offsets[("grads",)]
        return self._arena[start : start + self.memory_plan.sizes[("grads",)]]

    def gradient_block(self) -> np.ndarray | None:
        """Every gradient this executor owns, as one flat array of their dtype (with zeros
        in the alignment gaps between them, which stay zero), or None when it owns none or
        they have several dtypes."""
        block = self._gradient_bytes()
        dtypes = {array.dtype for array in self._owned_grads().values()}
        if block is None or len(dtypes) != 1:
            return None
        dtype = dtypes.pop()
        return block[: len(block) // dtype.itemsize * dtype.itemsize].view(dtype)

    def gradient_block_names(self) -> tuple[str, ...]:
        """The arguments whose gradients :meth:`gradient_block` holds, in its order."""
        return tuple(self._owned_grads())

    def _owned_grads(self) -> dict[str, np.ndarray]:
        return {
            name: array
            for name, array in self.grad_dict.items()
            if self._owns_grads and array is not None
        }

    def _place_persistent(self) -> None:
        """Point ``grad_dict`` and the reserved buffers at their blocks of the new arena,
        keeping their values."""
        block = self._gradient_bytes()
        if block is not None:
            self._arrays.fill(block, 0)  # the gaps between gradients too: a block sums whole
        for name, array in self._owned_grads().items():
            start = self._grad_offsets[name]
            size = _nbytes(array.shape, array.dtype)
            view = block[start : start + size].view(array.dtype).reshape(array.shape)
            self._arrays.copy(view, array)
            self.grad_dict[name] = view
        for key, (shape, dtype) in self._reserved.items():
            view = self._block_view(("reserved", *key), shape, dtype)
            previous = self._persistent.get(key)
            if previous is not None and previous.shape == view.shape:
                self._arrays.copy(view, previous)
            else:
                self._arrays.fill(view, 0)
            self._persistent[key] = view

    def reserve(self, group: str, buffers: Mapping[object, tuple]) -> dict[object, np.ndarray]:
        """Zeroed buffers in this executor's arena for as long as it lives, by name within
        ``group``, as (shape, dtype): the optimizer's state, so that one arena holds every
        intermediate, gradient and state array. Asking a group again with the same names,
        shapes and dtypes returns the same buffers (values kept); otherwise the group is
        replaced and the arena is planned again, once: buffers keep their values, the
        outputs too, other intermediates not (call it before a forward pass, not between
        forward and backward)."""
        wanted = {
            (group, name): (tuple(shape), np.dtype(dtype))
            for name, (shape, dtype) in buffers.items()
        }
        current = {key: spec for key, spec in self._reserved.items() if key[0] == group}
        if wanted != current:
            for key in current:
                del self._reserved[key]
                self._persistent.pop(key, None)
            self._reserved.update(wanted)
            outputs = [np.array(self._arrays.to_host(array)) for array in self.outputs]
            self._bind_buffers(self._values)
            for target, value in zip(self.outputs, outputs, strict=True):
                self._arrays.copy(target, value)
        return {name: self._persistent[(group, name)] for name in buffers}

    def _direct_gradient_entries(self, first_def: dict) -> dict[str, NodeOutput]:
        """Gradients the kernel that computes them writes straight into ``grad_dict``.

        A gradient with ``grad_req='write'`` whose entry is a buffer of its own (not a view,
        not an input or an in-place alias, not a forward output, not shared with another
        gradient) needs no copy: its array is the user's ``grad_dict`` array itself."""
        counts: dict[NodeOutput, int] = {}
        for entry in self._grad_entries.values():
            counts[entry] = counts.get(entry, 0) + 1
        direct = {}
        for name, entry in self._grad_entries.items():
            target = self.grad_dict.get(name)
            if (
                self.grad_req.get(name) == "write"
                and entry in first_def
                and counts[entry] == 1
                and entry not in self._output_entries
                and target is not None
                and target.shape == tuple(self._shapes[entry])
                and target.dtype == self._dtypes[entry]
                and self._arrays.owns(target)
            ):
                direct[name] = entry
        return direct

    def _block_view(self, key, shape, dtype) -> np.ndarray:
        return self.memory_plan.view(self._arena, key, shape, dtype)

    # -- run -----------------------------------------------------------------------------------

    def dropout_step(self) -> int:
        """The step Dropout's masks are drawn for: the counter, in the stream's block of
        2**24 steps (the mask hashes the step's low 32 bits: 256 streams of 16.7 million
        steps each stay apart)."""
        return self.dropout_counter + (self.dropout_stream << DROPOUT_STREAM_BITS)

    def forward(self, is_train: bool = False, **inputs: np.ndarray) -> list[np.ndarray]:
        """Copy the given inputs into their arguments and compute the outputs.

        Inputs must have exactly the bound shape and dtype: nothing is broadcast or cast."""
        for name, value in inputs.items():
            self._assign_input(name, value)
        counter = self.dropout_step() if is_train else -1
        self._forward_run(counter, is_train)
        self._last_forward = (counter, is_train)
        if is_train:
            self.dropout_counter += 1
        return self.outputs

    def backward(self, out_grads=None) -> None:
        """Compute the gradients of the last forward pass into ``grad_dict``.

        Loss heads supply their own gradient; other outputs take ``out_grads`` (one array per
        output) or ones."""
        if not self._grad_entries:
            raise BackendError(
                "backward: this executor was bound with grad_req='null' for every argument"
            )
        self._set_head_gradients(out_grads)
        counter, training = getattr(self, "_last_forward", (-1, False))
        self._backward_run(counter, training)
        for name, source in self._grad_sources.items():
            target = self.grad_dict[name]
            if self.grad_req[name] == "add":
                self._arrays.add(target, source)
            else:
                self._arrays.copy(target, source)

    def _assign_input(self, name: str, value) -> None:
        if name not in self.arg_dict:
            raise KeyError(
                f"forward: {name!r} is not an argument; arguments are {list(self.arg_dict)}"
            )
        target = self.arg_dict[name]
        if not self._arrays.owns(value):
            value = np.asarray(value)
        if value.shape != target.shape:
            raise ShapeError(
                f"forward: argument {name!r} expects shape {target.shape}, given {value.shape}"
            )
        if value.dtype != target.dtype:
            raise DTypeError(
                f"forward: argument {name!r} expects dtype {target.dtype}, given {value.dtype}"
            )
        self._arrays.copy(target, value)

    def _set_head_gradients(self, out_grads) -> None:
        heads = [(var, entry) for var, entry in zip(self._head_vars, self.symbol.entries)]
        if out_grads is None:
            for var, _ in heads:
                if var is not None:
                    self._arrays.fill(self._head_arrays[var.name], 1)
            return
        if isinstance(out_grads, np.ndarray) or self._arrays.owns(out_grads):
            out_grads = [out_grads]
        if len(out_grads) != len(heads):
            raise ValueError(f"backward: {len(out_grads)} out_grads for {len(heads)} outputs")
        for (var, _), value in zip(heads, out_grads):
            if var is None or value is None:
                continue
            target = self._head_arrays[var.name]
            if not self._arrays.owns(value):
                value = np.asarray(value)
            if value.shape != target.shape or value.dtype != target.dtype:
                output = self.symbol.list_outputs()[self._head_vars.index(var)]
                raise ShapeError(
                    f"backward: out_grad for output {output} expects {target.shape} {target.dtype},"
                    f" given {value.shape} {value.dtype}"
                )
            self._arrays.copy(target, value)

    @property
    def arena(self):
        """The one allocation (a byte array) that holds every planned buffer; ``outputs``,
        owned gradients and reserved state are views into it."""
        return self._arena

    def gradient_buffer(self, name: str) -> np.ndarray:
        """Where the backward kernels leave the gradient of argument ``name``: the
        ``grad_dict`` array itself when written directly, else the planned buffer that
        ``backward`` copies (or adds) from."""
        source = self._grad_sources.get(name)
        return self.grad_dict[name] if source is None else source

    # -- MXNet's conveniences ----------------------------------------------------------------

    @property
    def arg_arrays(self) -> list[np.ndarray]:
        return [self.arg_dict[name] for name in self.symbol.list_arguments()]

    @property
    def grad_arrays(self) -> list[np.ndarray | None]:
        return [self.grad_dict.get(name) for name in self.symbol.list_arguments()]

    @property
    def aux_arrays(self) -> list[np.ndarray]:
        return [self.aux_dict[name] for name in self.symbol.list_auxiliary_states()]

    @property
    def output_dict(self) -> dict[str, np.ndarray]:
        return dict(zip(self.symbol.list_outputs(), self.outputs))

    def copy_params_from(
        self,
        arg_params: Mapping,
        aux_params: Mapping | None = None,
        allow_extra_params: bool = False,
    ) -> None:
        """Copy parameter values into the bound arrays (shapes and dtypes must match)."""
        for source, target in ((arg_params, self.arg_dict), (aux_params or {}, self.aux_dict)):
            for name, value in source.items():
                if name not in target:
                    if allow_extra_params:
                        continue
                    raise KeyError(
                        f"copy_params_from: {name!r} is not bound here; bound: {list(target)}"
                    )
                value = np.asarray(self._arrays.to_host(value))
                if value.shape != target[name].shape:
                    raise ShapeError(
                        f"copy_params_from: {name!r} expects {target[name].shape}, given {value.shape}"
                    )
                self._arrays.copy(target[name], value.astype(target[name].dtype, copy=False))

    def reshape(self, **new_shapes: tuple) -> Executor:
        """An executor for new input shapes (MXNet's reshape). Arrays whose shape does not
        change are shared with this executor, not copied (gradients included: the new
        executor writes them where they are, in this executor's arena); the others are new
        zeros.
        Kernels whose key is unchanged come from the cache.

        >>> import graphc as gc
        >>> exe = gc.models.mlp().simple_bind(gc.cpu(), data=(4, 784))
        >>> bigger = exe.reshape(data=(16, 784))
        >>> bigger.arg_dict["fc1_weight"] is exe.arg_dict["fc1_weight"]
        True
        """
        names = self.symbol.list_arguments()
        new_shapes = {
            name: check_input_shape("reshape", name, shape) for name, shape in new_shapes.items()
        }
        partial, _, _ = self.symbol.infer_shape_partial(**new_shapes)
        given = {
            name: shape if shape is not None else self.arg_dict[name].shape
            for name, shape in zip(names, partial)
        }
        arg_shapes, _, aux_shapes = self.symbol.infer_shape(**given)

        def keep_or_new(table, name, shape):
            array = table[name]
            if array.shape == tuple(shape):
                return array
            return self._arrays.zeros(tuple(shape), array.dtype)

        args = {
            name: keep_or_new(self.arg_dict, name, shape) for name, shape in zip(names, arg_shapes)
        }
        grads = {
            name: keep_or_new(self.grad_dict, name, args[name].shape) for name in self.grad_dict
        }
        aux_names = self.symbol.list_auxiliary_states()
        aux = {
            name: keep_or_new(self.aux_dict, name, shape)
            for name, shape in zip(aux_names, aux_shapes)
        }
        return Executor(
            self.symbol,
            self.ctx,
            args,
            grads,
            dict(self.grad_req),
            aux,
            self._user_options,  # the target's own (its thread count) are read again
            self.opt_level,
            own_grads=False,  # writes the shared gradient arrays, which live in this arena
        )

    def profile(self, repeats: int = 10, is_train: bool = True) -> list[tuple[str, float]]:
        """Median milliseconds of every kernel of a forward and backward pass, each named
        by the user's nodes it computes (a fused kernel lists all of them), slowest first.

        Kernels run one by one from Python here, so the figures leave out the compiled
        sequence's savings; they say where the time goes, not what a step costs."""
        counter = self.dropout_step() if is_train else -1
        launches = self._forward_launches + (self._backward_launches if self._grad_entries else [])
        times: dict[int, list[float]] = {index: [] for index in range(len(launches))}
        for launch in launches:  # outside the timing, which is the kernel's alone
            launch.kernel.fill_addresses(launch.args)
        for _ in range(max(1, repeats)):
            for index, launch in enumerate(launches):
                start = time.perf_counter()
                call_launch(self.target, launch, counter, is_train, fill=False)
                times[index].append(time.perf_counter() - start)
        rows = [
            (provenance(launch.node), float(np.median(times[index])) * 1e3)
            for index, launch in enumerate(launches)
        ]
        return sorted(rows, key=lambda row: -row[1])

    def stats(self) -> dict[str, int]:
        """Nodes, kernels launched per forward+backward, the arena's bytes
        (``planned_peak_bytes``) and, of those, the bytes of buffers alive for the
        executor's whole life (gradients it owns, reserved optimizer state)."""
        return {
            "opt_level": self.opt_level,
            "nodes": len(self.schedule),
            "kernels_per_step": len(self._forward_launches) + len(self._backward_launches),
            "forward_kernels": len(self._forward_launches),
            "backward_kernels": len(self._backward_launches),
            "planned_peak_bytes": self.memory_plan.planned_peak_bytes,
            "persistent_bytes": sum(
                size
                for key, size in self.memory_plan.sizes.items()
                if isinstance(key, tuple) and key[0] in ("grads", "reserved")
            ),
        }

    def debug_str(self) -> str:
        """The bound training graph as optimized (fused nodes with the nodes they replaced),
        in schedule order, and the memory plan's lifetime table, whose positions are those
        in that schedule."""
        shapes = {n: a.shape for n, a in {**self.arg_dict, **self.aux_dict}.items()}
        shapes.update({name: array.shape for name, array in self._head_arrays.items()})
        present = {node.name for node in self.graph.variables}
        optimized = Symbol(list(self.graph.outputs))
        lines = [
            optimized.debug_str(**{n: s for n, s in shapes.items() if n in present}),
            "",
            "schedule: " + ", ".join(f"{i}:{node.name}" for i, node in enumerate(self.schedule)),
            "",
            "buffer lifetimes:",
        ]
        for key, (first, last) in self.memory_plan.lifetimes.items():
            last_text = "end" if last >= len(self.schedule) else str(last)
            lines.append(
                f"  {key!r:<28} positions {first}..{last_text} offset {self.memory_plan.offsets[key]:,}"
                f" bytes {self.memory_plan.sizes[key]:,}"
            )
        lines.append(
            f"planned peak: {self.memory_plan.planned_peak_bytes:,} bytes in one arena"
            f" ({self.memory_plan.strategy}; {self.memory_plan.requested_bytes:,} bytes"
            " without sharing)"
        )
        return "\n".join(lines)


def resolve_opt_level(opt_level: int | None) -> int:
    """The optimization level: as given, else ``GRAPHC_OPT_LEVEL``, else 2."""
    if opt_level is None:
        text = os.environ.get("GRAPHC_OPT_LEVEL", "2")
        try:
            opt_level = int(text)
        except ValueError:
            raise ValueError(
                f"GRAPHC_OPT_LEVEL={text!r} is not a level; allowed: 0, 1, 2"
            ) from None
    if opt_level not in LEVEL_PASSES:
        raise ValueError(f"opt_level={opt_level!r} is not a level; allowed: 0, 1, 2")
    return opt_level


def _buffer_label(key, schedule: list[Node]) -> str:
    """A memory-plan key as a user reads it: the node's output, a gradient, a workspace."""
    if isinstance(key, NodeOutput):
        return f"{key.node.name} ({key.node.op}) output {key.index}"
    if isinstance(key, tuple) and key and key[0] == "grads":
        return "the gradients"
    if isinstance(key, tuple) and key and key[0] == "ws":
        node = schedule[key[1]]
        return f"workspace of {node.name} ({node.op})"
    return repr(key)


def _nbytes(shape, dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _names(graph: Graph) -> set[str]:
    return {node.name for node in graph.variables}
