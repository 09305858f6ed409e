"""Recurrent state carried from one batch to the next: truncated back-propagation through
time with ``Model(..., state_names=...)``.

A stateful symbol takes its initial recurrent state as input variables and returns its final
state as outputs (``models.charlm(stateful=True)``: ``lstm_state`` and ``lstm_state_cell``
in, ``lstm_state_next_output`` and ``lstm_state_cell_next_output`` out). ``state_names``
maps each such input to the output whose value after a batch becomes that input for the
next batch. These inputs are neither parameters nor data: no initializer, no gradient, not
in a checkpoint, not read from the iterator. The outputs they come from are not loss heads,
and they send no gradient back (their head gradient is zero, so a state output need not be
behind ``BlockGrad``, though charlm's is): gradients flow through one window, ``seq_len``
steps, as truncated BPTT means.

The rule, for every pass over an iterator (each training epoch, each ``score``, each
``predict``):

* the states start at zero;
* before each batch, if the iterator says the batch continues the one before it
  (``BPTTIter.is_continuation``), the state inputs take the state outputs of that batch;
  otherwise they are zero. An iterator without ``is_continuation`` (``NDArrayIter``) thus
  starts every batch from zero.

The state outputs are copied at the end of the forward pass into arrays of this module's
own: the executor overwrites its output arrays at the next forward, and the backward pass
still reads the initial state that the forward was given, so the inputs cannot take the new
state before the next batch begins.

A running total as the state: the output ``total + data`` feeds ``total``.

>>> import numpy as np, graphc as gc
>>> data, total = gc.Variable("data"), gc.Variable("total")
>>> net = gc.BlockGrad(total + data, name="total_next")
>>> exe = net.simple_bind(gc.cpu(), grad_req="null", data=(1, 2), total=(1, 2))
>>> windows = gc.io.BPTTIter(np.arange(9), batch_size=1, seq_len=2)
>>> states = CarriedStates(exe, {"total": "total_next_output"})
>>> for batch in windows:
...     states.before_forward(windows)
...     _ = exe.forward(data=batch.data[0])
...     states.after_forward()
>>> exe.outputs[0].tolist()  # [0, 1] + [2, 3] + [4, 5] + [6, 7]
[[12.0, 16.0]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from graphc.ir.errors import ShapeError
from graphc.ir.symbol import Symbol
from graphc.runtime.executor import Executor
from graphc.training.heads import loss_heads


def check_state_names(
    symbol: Symbol,
    state_names: Mapping[str, str] | None,
    data_names: Sequence[str],
    label_names: Sequence[str],
) -> dict[str, str]:
    """``state_names`` as a dict, once every key is an argument of ``symbol`` that is
    neither data nor a label, and every value an output of it that is not a loss head.

    >>> import graphc as gc
    >>> net = gc.models.charlm(7, 5, 6, stateful=True)
    >>> check_state_names(net, {"lstm_state": "softmax_output"}, ["data"], ["softmax_label"])
    Traceback (most recent call last):
    ...
    ValueError: Model: state_names maps 'lstm_state' to 'softmax_output', a loss head; ...
    """
    state_names = dict(state_names or {})
    arguments = symbol.list_arguments()
    outputs = symbol.list_outputs()
    heads = {outputs[head.output] for head in loss_heads(symbol)}
    taken = set(data_names) | set(label_names)
    for input_name, output_name in state_names.items():
        where = f"Model: state_names maps {input_name!r} to {output_name!r}"
        if input_name not in arguments:
            raise ValueError(
                f"{where}, but {input_name!r} is not an argument of the symbol; its arguments "
                f"are {arguments}"
            )
        if input_name in taken:
            raise ValueError(
                f"{where}, but {input_name!r} is in data_names or label_names; a state input "
                "is fed by the model, not by the iterator"
            )
        if output_name not in outputs:
            raise ValueError(
                f"{where}, but {output_name!r} is not an output of the symbol; its outputs "
                f"are {outputs}"
            )
        if output_name in heads:
            raise ValueError(
                f"{where}, a loss head; a state comes from an output that is not a loss "
                "(an LSTM's final state, behind BlockGrad)"
            )
    return state_names


def check_state_shapes(
    state_names: Mapping[str, str], arg_shapes: Mapping[str, tuple], out_shapes: Mapping
) -> None:
    """Each state input has the shape of the output that feeds it (ShapeError otherwise)."""
    for input_name, output_name in state_names.items():
        wanted, given = tuple(arg_shapes[input_name]), tuple(out_shapes[output_name])
        if wanted != given:
            raise ShapeError(
                f"bind: the state input {input_name!r} has shape {wanted}, but the output "
                f"{output_name!r} that state_names carries into it has shape {given}"
            )


def state_output_positions(symbol: Symbol, state_names: Mapping[str, str]) -> set[int]:
    """The positions among ``symbol``'s outputs of the outputs that feed a state."""
    fed = set(state_names.values())
    return {index for index, name in enumerate(symbol.list_outputs()) if name in fed}


class CarriedStates:
    """The state outputs of the last batch of one pass over an iterator, and the state
    inputs they become (see the module's rule). Make one per pass, so each pass starts
    from zero; with no ``state_names`` every method does nothing."""

    def __init__(self, executor: Executor, state_names: Mapping[str, str]) -> None:
        positions = {name: index for index, name in enumerate(executor.symbol.list_outputs())}
        self._executor = executor
        self._pairs = [(name, positions[output]) for name, output in state_names.items()]
        zeros = executor.target.arrays.zeros
        self._copy = executor.target.arrays.copy
        self._fill = executor.target.arrays.fill
        self._last = {
            name: zeros(executor.arg_dict[name].shape, executor.arg_dict[name].dtype)
            for name, _ in self._pairs
        }
        self._has_last = False
        self._out_grads = None
        if self._pairs:
            fed = {position for _, position in self._pairs}
            self._out_grads = [
                zeros(output.shape, output.dtype) if index in fed else None
                for index, output in enumerate(executor.outputs)
            ]

    def before_forward(self, data_iter) -> None:
        """Set the state inputs for the batch ``data_iter`` returned last: the last batch's
        state outputs if it is a continuation, else zeros."""
        carry = self._has_last and bool(getattr(data_iter, "is_continuation", False))
        for name, _ in self._pairs:
            if carry:
                self._copy(self._executor.arg_dict[name], self._last[name])
            else:
                self._fill(self._executor.arg_dict[name], 0)

    def after_forward(self) -> None:
        """Keep a copy of the state outputs of the forward pass just run."""
        for name, position in self._pairs:
            self._copy(self._last[name], self._executor.outputs[position])
        self._has_last = bool(self._pairs)

    @property
    def out_grads(self) -> list[np.ndarray | None] | None:
        """``Executor.backward``'s ``out_grads``: zero for the state outputs (None for the
        loss heads, which supply their own); None without states."""
        return self._out_grads
