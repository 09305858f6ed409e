"""What ``Model.fit`` shows while it trains: a progress bar and one summary line per epoch.

The bar goes to stderr and is redrawn in place (``\\r``) at most ``1 / min_interval`` times a
second, so drawing never slows training; it shows the batches done of the epoch's total,
samples per second, the running metric and loss, and the time left. It is drawn only on a
terminal: when stderr is a file or a pipe (a CI log, ``nohup``), a line rewritten with
``\\r`` would leave hundreds of fragments, so only the summary lines, on stdout, are
written. Both streams and the clock are arguments, so tests drive them by hand.

>>> import io
>>> out = io.StringIO()
>>> display = TrainingDisplay(num_epoch=2, stdout=out, stderr=io.StringIO())
>>> display.start_epoch(0, total_batches=10)
>>> display.end_epoch(0, [("accuracy", 0.5)], 1.25, [], None, seconds=2.0, samples=1000)
>>> out.getvalue()
'Epoch 1/2  train acc=0.5000 loss=1.25  2.0 s  (500 samples/s)\\n'
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

NameValues = Sequence[tuple[str, float]]

SHORT_NAMES = {"accuracy": "acc", "cross-entropy": "ce", "perplexity": "ppl"}
"""Metric names as the summary line and the bar print them; history keys keep the full name."""

BAR_WIDTH = 20


def is_terminal(stream: TextIO) -> bool:
    """True when ``stream`` has an ``isatty`` that says it is a terminal.

    >>> import io
    >>> is_terminal(io.StringIO())
    False
    """
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def format_duration(seconds: float) -> str:
    """``4.2 s`` under a minute, then ``m:ss``, then ``h:mm:ss``.

    >>> format_duration(4.24), format_duration(75), format_duration(3725)
    ('4.2 s', '1:15', '1:02:05')
    """
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def format_values(values: NameValues, loss: float | None = None) -> str:
    """``acc=0.8123 loss=0.512``: metrics to four decimals, the loss to four digits.

    >>> format_values([("accuracy", 0.81234)], 0.51234)
    'acc=0.8123 loss=0.5123'
    """
    parts = [f"{SHORT_NAMES.get(name, name)}={value:.4f}" for name, value in values]
    if loss is not None:
        parts.append(f"loss={loss:.4g}")
    return " ".join(parts)


def format_summary(
    epoch: int,
    num_epoch: int,
    train_values: NameValues,
    train_loss: float | None,
    val_values: NameValues,
    val_loss: float | None,
    seconds: float,
    samples: int,
) -> str:
    """The summary line of epoch ``epoch`` (counted from 0, printed from 1).

    >>> format_summary(2, 10, [("accuracy", 0.8123)], 0.512, [("accuracy", 0.8011)], None,
    ...                12.3, 59901)
    'Epoch 3/10  train acc=0.8123 loss=0.512  val acc=0.8011  12.3 s  (4,870 samples/s)'
    """
    parts = [f"Epoch {epoch + 1}/{num_epoch}", f"train {format_values(train_values, train_loss)}"]
    if val_values or val_loss is not None:
        parts.append(f"val {format_values(val_values, val_loss)}")
    rate = samples / seconds if seconds > 0 else float("inf")
    rate_text = f"{rate:,.0f}" if math.isfinite(rate) else "-"
    parts.append(f"{format_duration(seconds)}  ({rate_text} samples/s)")
    return "  ".join(parts)


class ProgressBar:
    """One line on ``stream``, redrawn with ``\\r``: batches done, rate, values and ETA.

    Parameters
    ----------
    total : int or None
        Batches in the epoch; None (an iterator without ``len``) shows no bar and no ETA.
    stream : text stream
        Where to draw; the caller decides whether it is a terminal.
    prefix : str
        Printed first, e.g. ``Epoch 3/10``.
    clock : callable
        Seconds as a float (default ``time.perf_counter``); tests pass a fake.
    min_interval : float
        Least seconds between two redraws; the last batch always draws.

    >>> import io
    >>> ticks = iter([0.0, 0.5, 1.0])
    >>> bar = ProgressBar(4, io.StringIO(), prefix="Epoch 1/1", clock=lambda: next(ticks))
    >>> bar.update(2, 100, [("accuracy", 0.5)], 1.0)
    True
    >>> bar.last_line
    'Epoch 1/1  [##########..........] 2/4  200 samples/s  acc=0.5000 loss=1  ETA 0.5 s'
    """

    def __init__(
        self,
        total: int | None,
        stream: TextIO,
        prefix: str = "",
        clock: Callable[[], float] = time.perf_counter,
        min_interval: float = 0.1,
    ) -> None:
        self.total = total
        self.stream = stream
        self.prefix = prefix
        self.clock = clock
        self.min_interval = min_interval
        self.started = clock()
        self.last_draw: float | None = None
        self.last_line = ""
        self.draws = 0

    def update(
        self, done: int, samples: int, values: NameValues = (), loss: float | None = None
    ) -> bool:
        """Redraw if ``min_interval`` has passed since the last draw, or at the last batch.

        Returns whether it drew."""
        now = self.clock()
        finished = self.total is not None and done >= self.total
        due = self.last_draw is None or now - self.last_draw >= self.min_interval
        if not (due or finished):
            return False
        line = self.render(done, samples, values, loss, now - self.started)
        padding = " " * max(0, len(self.last_line) - len(line))
        self.stream.write(f"\r{line}{padding}")
        self.stream.flush()
        self.last_line = line
        self.last_draw = now
        self.draws += 1
        return True

    def render(
        self, done: int, samples: int, values: NameValues, loss: float | None, elapsed: float
    ) -> str:
        """The text of the bar after ``done`` batches and ``elapsed`` seconds."""
        parts = [self.prefix] if self.prefix else []
        if self.total:
            filled = min(BAR_WIDTH, BAR_WIDTH * done // self.total)
            parts.append(f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{self.total}")
        else:
            parts.append(f"{done} batches")
        parts.append(f"{samples / elapsed:,.0f} samples/s" if elapsed > 0 else "- samples/s")
        text = format_values(values, loss)
        if text:
            parts.append(text)
        if self.total and 0 < done < self.total and elapsed > 0:
            parts.append(f"ETA {format_duration(elapsed / done * (self.total - done))}")
        return "  ".join(parts)

    def clear(self) -> None:
        """Blank the line so that what is printed next starts clean."""
        if self.last_line:
            self.stream.write("\r" + " " * len(self.last_line) + "\r")
            self.stream.flush()
            self.last_line = ""


class TrainingDisplay:
    """Decides what ``fit`` shows, and shows it.

    Parameters
    ----------
    num_epoch, begin_epoch : int
        The epochs of the ``fit`` call (``range(begin_epoch, num_epoch)``).
    log_every : int
        Print the summary of every ``log_every``-th epoch (counted from 1); the first and the
        last epoch of the call are always printed.
    quiet : bool or None
        None: a progress bar when ``stderr`` is a terminal. True: never a bar. False: a bar
        even when it is not. Summary lines are printed in every case.
    verbose : bool
        False prints nothing at all.
    stdout, stderr : text streams, optional
        Default ``sys.stdout`` and ``sys.stderr`` as they are when the display is made.
    clock : callable
        For the bar's rate limit and rates.
    """

    def __init__(
        self,
        num_epoch: int,
        begin_epoch: int = 0,
        log_every: int = 1,
        quiet: bool | None = None,
        verbose: bool = True,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
            raise ValueError(f"log_every must be a positive integer, got {log_every!r}")
        if quiet not in (None, True, False):
            raise ValueError(f"quiet must be None, True or False, got {quiet!r}")
        self.num_epoch = num_epoch
        self.begin_epoch = begin_epoch
        self.log_every = log_every
        self.verbose = bool(verbose)
        self.stdout = sys.stdout if stdout is None else stdout
        self.stderr = sys.stderr if stderr is None else stderr
        self.clock = clock
        wants_bar = is_terminal(self.stderr) if quiet is None else not quiet
        self.shows_bar = self.verbose and wants_bar
        self.bar: ProgressBar | None = None

    def start_epoch(self, epoch: int, total_batches: int | None) -> None:
        if self.shows_bar:
            prefix = f"Epoch {epoch + 1}/{self.num_epoch}"
            self.bar = ProgressBar(total_batches, self.stderr, prefix=prefix, clock=self.clock)

    def batch(self, done: int, samples: int, values: NameValues, loss: float | None) -> None:
        if self.bar is not None:
            self.bar.update(done, samples, values, loss)

    def logs(self, epoch: int) -> bool:
        """Whether the summary line of ``epoch`` is printed.

        >>> display = TrainingDisplay(num_epoch=10, log_every=4)
        >>> [epoch for epoch in range(10) if display.logs(epoch)]
        [0, 3, 7, 9]
        """
        first, last = epoch == self.begin_epoch, epoch == self.num_epoch - 1
        return first or last or (epoch + 1) % self.log_every == 0

    def logged(self, first: int, stop: int) -> list[int]:
        """The epochs of ``range(first, stop)`` whose line is printed (``logs``), found
        without testing each one.

        >>> TrainingDisplay(num_epoch=10, log_every=4).logged(2, 10)
        [3, 7, 9]
        """
        epochs = {
            epoch for epoch in (self.begin_epoch, self.num_epoch - 1) if first <= epoch < stop
        }
        start = first + (-(first + 1)) % self.log_every  # the first epoch + 1 in its multiples
        epochs.update(range(start, stop, self.log_every))
        return sorted(epochs)

    def end_epoch(
        self,
        epoch: int,
        train_values: NameValues,
        train_loss: float | None,
        val_values: NameValues,
        val_loss: float | None,
        seconds: float,
        samples: int,
    ) -> None:
        if self.bar is not None:
            self.bar.clear()
            self.bar = None
        if self.verbose and self.logs(epoch):
            line = format_summary(
                epoch,
                self.num_epoch,
                train_values,
                train_loss,
                val_values,
                val_loss,
                seconds,
                samples,
            )
            self.stdout.write(line + "\n")
            self.stdout.flush()

    def close(self) -> None:
        """Clear a bar left drawn (training stopped by an error)."""
        if self.bar is not None:
            self.bar.clear()
            self.bar = None
