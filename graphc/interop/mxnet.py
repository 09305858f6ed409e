"""MXNet 1.x checkpoints in graphc, without MXNet: ``gc.mxnet.load_checkpoint``.

>>> import graphc as gc
>>> symbol, arg_params, aux_params = gc.mxnet.load_checkpoint("lenet", 10)  # doctest: +SKIP
>>> model = gc.Model.load_mxnet("lenet", 10)                                 # doctest: +SKIP

``load_checkpoint`` reads ``<prefix>-symbol.json`` (``graphc.interop.mxnet_json``) and
``<prefix>-<epoch:04d>.params`` (``graphc.interop.mxnet_ndarray``), as MXNet's
``mx.model.load_checkpoint`` does, and returns NumPy arrays. A fused ``RNN`` node's packed
parameter vector comes back as the four arrays of graphc's LSTM
(:func:`unpack_rnn_parameters`). A stored name the symbol does not have is an error naming
the file and the name; shapes its ops cannot take are an error at the first bind, naming
the parameter and the node of the symbol file that reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graphc.interop.mxnet_json import MXNetGraph, PackedRNN, read_symbol_json
from graphc.interop.mxnet_ndarray import read_ndarray_list
from graphc.ir.errors import ImportFormatError
from graphc.ir.symbol import Symbol


def symbol_path(prefix: str) -> str:
    return f"{prefix}-symbol.json"


def params_path(prefix: str, epoch: int) -> str:
    return f"{prefix}-{int(epoch):04d}.params"


def load_symbol(fname: str | Path) -> Symbol:
    """The symbol of an MXNet ``-symbol.json`` file (``mx.sym.load``)."""
    return _read_graph(str(fname)).symbol


def load_params(fname: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(arg_params, aux_params)`` of an MXNet ``.params`` file, as stored (a fused RNN's
    vector still packed), split on the ``arg:`` and ``aux:`` prefixes."""
    fname = str(fname)
    arg_params, aux_params = {}, {}
    for key, array in read_ndarray_list(fname).items():
        kind, _, name = key.partition(":")
        if kind not in ("arg", "aux") or not name:
            raise ImportFormatError(
                f"{fname}: key {key!r} is neither 'arg:<name>' nor 'aux:<name>'"
            )
        (arg_params if kind == "arg" else aux_params)[name] = array
    return arg_params, aux_params


def load_checkpoint(
    prefix: str, epoch: int
) -> tuple[Symbol, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(symbol, arg_params, aux_params)`` of the checkpoint MXNet's
    ``mx.model.save_checkpoint(prefix, epoch, ...)`` wrote, as ``mx.model.load_checkpoint``
    returns them, with NumPy arrays. No MXNet is needed or imported."""
    graph = _read_graph(symbol_path(prefix))
    fname = params_path(prefix, epoch)
    arg_params, aux_params = load_params(fname)
    for rnn in graph.packed_rnns:
        if rnn.packed not in arg_params:
            raise ImportFormatError(f"{fname}: no 'arg:{rnn.packed}' for the RNN {rnn.prefix!r}")
        try:
            arg_params.update(unpacked_rnn_parameters(rnn, arg_params.pop(rnn.packed)))
        except ValueError as exc:
            raise ImportFormatError(f"{fname}: 'arg:{rnn.packed}': {exc}") from None
    _check_against_symbol(graph.symbol, arg_params, aux_params, fname)
    return graph.symbol, arg_params, aux_params


def unpack_rnn_parameters(packed: np.ndarray, num_hidden: int) -> tuple[np.ndarray, ...]:
    """``(i2h_weight, h2h_weight, i2h_bias, h2h_bias)`` of one layer, one direction of
    MXNet's fused LSTM from its packed ``parameters`` vector.

    MXNet's RNN op (src/operator/rnn-inl.h, the layout cuDNN uses) packs every weight
    before every bias: ``i2h_weight`` (4H, I) then ``h2h_weight`` (4H, H), then
    ``i2h_bias`` and ``h2h_bias`` (4H each), gates in the order input, forget, cell,
    output, which is graphc's. The input size I follows from the length, 4H (I + H + 2).
    """
    packed = np.asarray(packed)
    hidden = int(num_hidden)
    gates = 4 * hidden
    if packed.ndim != 1 or packed.size % gates or packed.size // gates - hidden - 2 < 1:
        raise ValueError(
            f"a packed LSTM vector of H={hidden} holds 4H (I + H + 2) values for some input"
            f" size I >= 1; this one has shape {packed.shape}"
        )
    inputs = packed.size // gates - hidden - 2
    ends = np.cumsum([gates * inputs, gates * hidden, gates, gates])
    i2h_weight, h2h_weight, i2h_bias, h2h_bias = np.split(packed, ends[:-1])
    return (
        i2h_weight.reshape(gates, inputs).copy(),
        h2h_weight.reshape(gates, hidden).copy(),
        i2h_bias.copy(),
        h2h_bias.copy(),
    )


LSTM_PARAMETERS = ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")
"""graphc's LSTM parameters, in the order :func:`unpack_rnn_parameters` returns them; the
LSTM named ``rnn`` holds ``rnn_i2h_weight`` and so on."""


def unpacked_rnn_parameters(rnn: PackedRNN, packed: np.ndarray) -> dict[str, np.ndarray]:
    """The packed vector of the RNN node ``rnn`` as graphc's LSTM parameters, by name."""
    arrays = unpack_rnn_parameters(packed, rnn.num_hidden)
    return {f"{rnn.prefix}_{name}": array for name, array in zip(LSTM_PARAMETERS, arrays)}


def _read_graph(fname: str) -> MXNetGraph:
    with open(fname, encoding="utf-8") as handle:
        text = handle.read()
    return read_symbol_json(text, fname)


def _check_against_symbol(symbol: Symbol, arg_params: dict, aux_params: dict, fname: str) -> None:
    """Every stored array names an argument (auxiliary state) of the symbol. Their shapes
    are checked at the first bind, which knows the data's shape (a checkpoint does not):
    a mismatch names the parameter and the node of the symbol file that reads it."""
    for table, names, kind in (
        (arg_params, symbol.list_arguments(), "arg"),
        (aux_params, symbol.list_auxiliary_states(), "aux"),
    ):
        unknown = sorted(set(table) - set(names))
        what = "an argument" if kind == "arg" else "an auxiliary state"
        if unknown:
            raise ImportFormatError(
                f"{fname}: {kind}:{unknown[0]} is not {what} of the symbol (it has {names})"
            )
