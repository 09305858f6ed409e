"""Checkpoints of a ``Model``: the symbol as JSON and everything else in one ``.npz``.

``{prefix}-symbol.json`` holds the graph (``graphc.ir.serialize``) and
``{prefix}-{epoch:04d}.npz`` holds, as plain arrays that load with ``allow_pickle=False``:

================================  =============================================================
entry                             what
================================  =============================================================
``format``                        ``CHECKPOINT_FORMAT``
``epoch``                         epochs completed: ``fit(begin_epoch=epoch)`` resumes
``arg:NAME``, ``aux:NAME``        parameters and auxiliary states
``num_update``                    the optimizer's update count (absent without an optimizer)
``opt:PARAM:STATE``               each state array of ``Optimizer.get_state``
``optimizer``                     JSON: the optimizer's class and hyper-parameters
``train_step``                    training forwards done (Dropout's masks follow from it)
``data_state``                    JSON: the shuffling generator of the training NDArrayIter
``data_order``,                   that iterator's order and indices for the next epoch,
``data_epoch_indices``,           and how many parts its data was cut into (``num_parts``:
``data_num_parts``                rank 0's part of a data-parallel fit)
``history``                       JSON: ``Model.history``
================================  =============================================================

Both files are written to a temporary file in their directory and renamed over the final
name (``os.replace``), so a crash mid-write leaves the previous checkpoint intact and never
a partial file under the final name.

>>> import os, tempfile
>>> import numpy as np, graphc as gc
>>> state = CheckpointState(gc.models.linreg(), 3, {"fc_weight": np.ones((1, 2), np.float32)})
>>> prefix = os.path.join(tempfile.mkdtemp(), "linreg")
>>> save_checkpoint_files(prefix, state)
>>> sorted(os.listdir(os.path.dirname(prefix)))
['linreg-0003.npz', 'linreg-symbol.json']
>>> load_checkpoint_files(prefix, 3).arg_params["fc_weight"].tolist()
[[1.0, 1.0]]
"""

from __future__ import annotations

import json
import numbers
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphc.data.io import NDArrayIter
from graphc.ir.errors import GraphcError, GraphFormatError
from graphc.ir.serialize import file_mode, load_json, to_json, write_atomic
from graphc.ir.symbol import Symbol

CHECKPOINT_FORMAT = 1


class CheckpointError(GraphcError, ValueError):
    """A checkpoint file is corrupt, truncated or lacks an entry; the message names the file."""


@dataclass
class CheckpointState:
    """Everything a checkpoint holds (see the module docstring for the file layout)."""

    symbol: Symbol
    epoch: int
    arg_params: dict[str, np.ndarray]
    aux_params: dict[str, np.ndarray] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    optimizer_state: dict[str, Any] | None = None
    train_step: int = 0
    data_state: dict[str, Any] | None = None
    history: dict[str, list] = field(default_factory=dict)


def symbol_path(prefix: str) -> str:
    return f"{prefix}-symbol.json"


def params_path(prefix: str, epoch: int) -> str:
    return f"{prefix}-{epoch:04d}.npz"


def save_checkpoint_files(prefix: str, state: CheckpointState) -> None:
    """Write ``state`` as ``{prefix}-symbol.json`` and ``{prefix}-{epoch:04d}.npz``."""
    if (
        isinstance(state.epoch, bool)
        or not isinstance(state.epoch, numbers.Integral)
        or state.epoch < 0
    ):
        raise ValueError(f"save_checkpoint: epoch must be an integer >= 0, got {state.epoch!r}")
    directory = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"save_checkpoint: the directory {directory!r} of prefix {prefix!r} does not exist"
        )
    _write_npz_atomic(params_path(prefix, state.epoch), _entries(state))
    write_atomic(symbol_path(prefix), to_json(state.symbol))


def _entries(state: CheckpointState) -> dict[str, np.ndarray]:
    entries: dict[str, np.ndarray] = {
        "format": np.array(CHECKPOINT_FORMAT),
        "epoch": np.array(int(state.epoch)),
        "train_step": np.array(state.train_step),
        "history": np.array(json.dumps(state.history)),
    }
    for kind, params in (("arg", state.arg_params), ("aux", state.aux_params)):
        for name, array in params.items():
            entries[f"{kind}:{name}"] = np.asarray(array)
    if state.optimizer is not None:
        entries["optimizer"] = np.array(json.dumps(state.optimizer))
    for key, value in (state.optimizer_state or {}).items():
        entries["num_update" if key == "num_update" else f"opt:{key}"] = np.asarray(value)
    if state.data_state is not None:
        entries["data_state"] = np.array(json.dumps(state.data_state["rng"]))
        entries["data_order"] = np.asarray(state.data_state["order"], dtype=np.int64)
        entries["data_epoch_indices"] = np.asarray(
            state.data_state["epoch_indices"], dtype=np.int64
        )
        entries["data_num_parts"] = np.asarray(state.data_state.get("num_parts", 1))
    return entries


def _write_npz_atomic(path: str, entries: dict[str, np.ndarray]) -> None:
    handle, temporary = tempfile.mkstemp(
        dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-", suffix=".npz"
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **entries)
            stream.flush()
            os.fsync(stream.fileno())
            os.fchmod(stream.fileno(), file_mode())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def load_checkpoint_files(prefix: str, epoch: int) -> CheckpointState:
    """Read what :func:`save_checkpoint_files` wrote.

    Raises FileNotFoundError when a file is missing and CheckpointError when one is corrupt
    or lacks an entry; both name the file."""
    symbol_file, npz_file = symbol_path(prefix), params_path(prefix, epoch)
    for path in (symbol_file, npz_file):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Model.load: no checkpoint file {path!r} (save_checkpoint({prefix!r}, "
                f"{epoch}) writes {symbol_file!r} and {npz_file!r})"
            )
    with open(symbol_file, encoding="utf-8") as stream:
        text = stream.read()
    try:
        symbol = load_json(text)
    except GraphFormatError as exc:
        raise CheckpointError(f"{symbol_file}: not a graphc symbol file: {exc}") from None
    entries = _read_npz(npz_file)
    return _state_from_entries(npz_file, symbol, entries)


def _read_npz(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (corrupt or truncated): {exc}"
        ) from None


def _state_from_entries(path: str, symbol: Symbol, entries: dict) -> CheckpointState:
    for key in ("format", "epoch", "train_step", "history"):
        if key not in entries:
            raise CheckpointError(f"{path}: no {key!r} entry; it holds {sorted(entries)}")
    if int(entries["format"]) != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {int(entries['format'])}, this graphc reads "
            f"{CHECKPOINT_FORMAT}"
        )
    state = CheckpointState(
        symbol=symbol,
        epoch=int(entries["epoch"]),
        arg_params=_prefixed(entries, "arg:"),
        aux_params=_prefixed(entries, "aux:"),
        train_step=int(entries["train_step"]),
        history=_json(path, entries, "history"),
    )
    missing = sorted(set(symbol.list_auxiliary_states()) - set(state.aux_params))
    if missing:
        raise CheckpointError(f"{path}: no 'aux:' entry for the auxiliary states {missing}")
    if "optimizer" in entries:
        state.optimizer = _json(path, entries, "optimizer")
        if "num_update" not in entries:
            raise CheckpointError(f"{path}: an 'optimizer' entry but no 'num_update'")
        state.optimizer_state = {"num_update": int(entries["num_update"])}
        state.optimizer_state.update(_prefixed(entries, "opt:"))
    if "data_state" in entries:
        state.data_state = {
            "rng": _json(path, entries, "data_state"),
            "order": entries["data_order"],
            "epoch_indices": entries["data_epoch_indices"],
            "num_parts": int(entries.get("data_num_parts", 1)),  # before [dist]: one part
        }
    return state


def _prefixed(entries: dict, prefix: str) -> dict[str, np.ndarray]:
    return {
        key[len(prefix) :]: np.ascontiguousarray(value)
        for key, value in entries.items()
        if key.startswith(prefix)
    }


def _json(path: str, entries: dict, key: str) -> Any:
    try:
        return json.loads(str(entries[key]))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: the {key!r} entry is not valid JSON: {exc}") from None


# -- the training iterator's order -------------------------------------------------------------


def iterator_state(data_iter) -> dict[str, Any] | None:
    """What decides the order of the coming epochs of an ``NDArrayIter``: its generator's
    state and its next epoch's order; None for other iterators (``BPTTIter`` has a fixed
    order). Call it at the start of an epoch.

    ``NDArrayIter`` has no public state API, so this reads its generator (``_rng``)."""
    if not isinstance(data_iter, NDArrayIter):
        return None
    return {
        "rng": data_iter._rng.bit_generator.state,
        "order": np.array(data_iter.order, dtype=np.int64),
        "epoch_indices": np.array(data_iter.epoch_indices, dtype=np.int64),
        "num_parts": data_iter.num_parts,
    }


def restore_iterator_state(data_iter, state: dict[str, Any]) -> None:
    """Put ``data_iter`` at the start of the epoch that :func:`iterator_state` recorded, so
    that it and every later epoch see the samples in the order they had when it was saved.

    A data-parallel checkpoint holds rank 0's state, which every rank takes for its own part
    (the same order the ranks had when their iterators share a ``seed``, as they should);
    saved from another number of parts, it is not restored (a warning says so)."""
    if not isinstance(data_iter, NDArrayIter):
        raise TypeError(
            "fit: the checkpoint holds the order of an NDArrayIter, but train_data is a "
            f"{type(data_iter).__name__}"
        )
    parts = int(state.get("num_parts", 1))
    if parts != data_iter.num_parts:
        # Rank 0 saved the order of its part; with another number of parts every rank's
        # part is another set of samples, so that order does not apply.
        warnings.warn(
            f"fit: the checkpoint's data order is of one part in {parts}, but train_data "
            f"reads one in {data_iter.num_parts} (another number of ranks); each rank starts "
            "a fresh order of its part",
            stacklevel=4,
        )
        return
    indices = np.asarray(state["epoch_indices"], dtype=np.int64)
    if indices.size and int(indices.max()) >= data_iter.num_data:
        raise ValueError(
            f"fit: the checkpoint's data order indexes {int(indices.max()) + 1} samples, but "
            f"train_data holds {data_iter.num_data}; resume with the same training data"
        )
    data_iter._rng.bit_generator.state = state["rng"]
    data_iter.order = np.array(state["order"], dtype=np.int64)
    data_iter.epoch_indices = indices.copy()
    data_iter._cursor = 0
