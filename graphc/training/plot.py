"""Plots of a training run, with matplotlib (an optional dependency, imported when used).

The figure is drawn on a ``matplotlib.figure.Figure`` and saved by the Agg renderer, without
``pyplot``, so plotting never changes the backend or the figures of an interactive session.

>>> import graphc as gc
>>> run = {"epoch": [1, 2], "train_loss": [0.9, 0.6], "train_accuracy": [0.7, 0.8]}
>>> panels(run)
['loss', 'accuracy']
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

SPLITS = (("train", "-o"), ("val", "--s"))
"""The history key prefixes drawn in each panel, and their line styles."""


class MissingDependencyError(ImportError):
    """An optional dependency that a function needs is not installed."""


def history(
    history: Mapping[str, Sequence[float]], path: str | os.PathLike, title: str | None = None
) -> str:
    """Write a PNG of the loss and metric curves of ``Model.history``, one panel each, with
    the training and (when present) validation value per epoch.

    Parameters
    ----------
    history : mapping of str to list
        ``epoch`` and any ``train_<name>`` / ``val_<name>`` lists of the same length, as
        ``Model.fit`` returns; NaN values are left as gaps.
    path : str or path
        The PNG file to write.
    title : str, optional
        A title above the panels.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    MissingDependencyError
        (an ImportError) when matplotlib is not installed.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "run.png")
    >>> run = {"epoch": [1, 2], "train_loss": [0.9, 0.6], "val_loss": [1.0, 0.8]}
    >>> history(run, path) == path and open(path, "rb").read(4) == b"\\x89PNG"  # doctest: +SKIP
    True
    """
    names = panels(history)
    figure_class, ticker = matplotlib_modules()
    figure = figure_class(figsize=(4.5 * len(names), 3.5), dpi=100)
    axes = figure.subplots(1, len(names), squeeze=False)[0]
    epochs = list(history["epoch"])
    for axis, name in zip(axes, names):
        for split, style in SPLITS:
            values = history.get(f"{split}_{name}")
            if values is not None and any(math.isfinite(value) for value in values):
                axis.plot(epochs, list(values), style, label=split)
        axis.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(os.fspath(path), format="png")
    return os.fspath(path)


def panels(history: Mapping[str, Sequence[float]]) -> list[str]:
    """The quantities to draw: ``loss`` first, then each metric, from the ``train_`` and
    ``val_`` keys; checks that every list has one value per epoch."""
    if "epoch" not in history:
        raise ValueError(
            f"gc.plot.history: the history has no 'epoch' list; its keys are {sorted(history)}"
        )
    count = len(history["epoch"])
    if count == 0:
        raise ValueError("gc.plot.history: the history holds no epoch")
    names: list[str] = []
    for key, values in history.items():
        split, _, name = key.partition("_")
        if split not in dict(SPLITS) or not name:
            continue
        if len(values) != count:
            raise ValueError(
                f"gc.plot.history: {key!r} has {len(values)} values for {count} epochs"
            )
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(
            f"gc.plot.history: nothing to draw; expected train_<name> or val_<name> keys, "
            f"found {sorted(history)}"
        )
    return sorted(names, key=lambda name: name != "loss")


def matplotlib_modules(what: str = "gc.plot.history"):
    """``Figure`` and the ``ticker`` module, or the install command when it is missing
    (``what`` names who needs it)."""
    try:
        import matplotlib.figure
        import matplotlib.ticker
    except ImportError:
        raise MissingDependencyError(f"{what} needs matplotlib: pip install matplotlib") from None
    return matplotlib.figure.Figure, matplotlib.ticker
