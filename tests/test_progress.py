"""graphc.training.progress: the progress bar's redraw limit, rate and ETA, and which summary lines
the training display prints where."""

from __future__ import annotations

import io

import pytest

from graphc.training.progress import (
    ProgressBar,
    TrainingDisplay,
    format_duration,
    format_summary,
    is_terminal,
)

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_redraws_at_most_every_interval_and_always_at_the_end():
    clock, stream = FakeClock(), io.StringIO()
    bar = ProgressBar(100, stream, clock=clock, min_interval=0.1)
    drawn = []
    for done in range(1, 101):
        clock.now = done * 0.01  # 100 batches per second
        drawn.append(bar.update(done, done * 32))
    # First batch, then one per 0.1 s (every 10th batch), and the last.
    assert drawn.count(True) == 11
    assert drawn[0] and drawn[-1]
    assert bar.draws == 11
    assert stream.getvalue().count("\r") == 11


def test_bar_shows_count_rate_values_and_eta():
    clock = FakeClock()
    bar = ProgressBar(40, io.StringIO(), prefix="Epoch 2/5", clock=clock)
    clock.now = 2.0
    bar.update(10, 1000, [("accuracy", 0.75)], 0.5)
    assert bar.last_line.startswith("Epoch 2/5  [#####...............] 10/40")
    assert "500 samples/s" in bar.last_line
    assert "acc=0.7500 loss=0.5" in bar.last_line
    assert bar.last_line.endswith("ETA 6.0 s")  # 2 s per 10 batches, 30 to go


def test_bar_without_total_counts_batches_and_has_no_eta():
    clock = FakeClock()
    bar = ProgressBar(None, io.StringIO(), clock=clock)
    clock.now = 1.0
    bar.update(3, 300)
    assert bar.last_line == "3 batches  300 samples/s"


def test_shorter_line_overwrites_the_longer_one_and_clear_blanks_it():
    clock, stream = FakeClock(), io.StringIO()
    bar = ProgressBar(None, stream, clock=clock, min_interval=0.0)
    clock.now = 1.0
    bar.update(1, 100_000)
    long_line = bar.last_line
    clock.now = 2.0
    bar.update(2, 2)
    short_line = bar.last_line
    written = stream.getvalue().split("\r")[-1]
    assert len(short_line) < len(written) == len(long_line)
    bar.clear()
    assert stream.getvalue().endswith("\r" + " " * len(short_line) + "\r")
    assert bar.last_line == ""


def test_format_summary_and_duration():
    line = format_summary(0, 3, [("accuracy", 0.5)], 1.5, [("accuracy", 0.25)], 2.0, 2.0, 1000)
    assert (
        line
        == "Epoch 1/3  train acc=0.5000 loss=1.5  val acc=0.2500 loss=2  2.0 s  (500 samples/s)"
    )
    assert format_duration(59.94) == "59.9 s"
    assert format_duration(600) == "10:00"
    assert format_duration(float("nan")) == "?"


def test_is_terminal():
    assert is_terminal(TerminalStream())
    assert not is_terminal(io.StringIO())
    assert not is_terminal(object())


def run_display(display: TrainingDisplay, epochs: range, clock: FakeClock) -> None:
    for epoch in epochs:
        display.start_epoch(epoch, total_batches=3)
        for done in range(1, 4):
            clock.now += 1.0
            display.batch(done, done * 10, [("accuracy", 0.5)], 1.0)
        display.end_epoch(epoch, [("accuracy", 0.5)], 1.0, [], None, 3.0, 30)


def test_terminal_gets_a_bar_and_summaries_go_to_stdout():
    clock, out, err = FakeClock(), io.StringIO(), TerminalStream()
    display = TrainingDisplay(num_epoch=2, stdout=out, stderr=err, clock=clock)
    run_display(display, range(2), clock)
    assert display.shows_bar
    assert "3/3" in err.getvalue() and "samples/s" in err.getvalue()
    assert out.getvalue().splitlines() == [
        "Epoch 1/2  train acc=0.5000 loss=1  3.0 s  (10 samples/s)",
        "Epoch 2/2  train acc=0.5000 loss=1  3.0 s  (10 samples/s)",
    ]


def test_not_a_terminal_prints_only_summary_lines():
    clock, out, err = FakeClock(), io.StringIO(), io.StringIO()
    display = TrainingDisplay(num_epoch=2, stdout=out, stderr=err, clock=clock)
    run_display(display, range(2), clock)
    assert not display.shows_bar
    assert err.getvalue() == ""
    assert len(out.getvalue().splitlines()) == 2


@pytest.mark.parametrize(
    ("quiet", "verbose", "bar", "lines"),
    [(True, True, False, 2), (False, True, True, 2), (None, False, False, 0)],
)
def test_quiet_and_verbose(quiet, verbose, bar, lines):
    clock, out, err = FakeClock(), io.StringIO(), TerminalStream()
    display = TrainingDisplay(2, quiet=quiet, verbose=verbose, stdout=out, stderr=err, clock=clock)
    run_display(display, range(2), clock)
    assert display.shows_bar is bar
    assert ("\r" in err.getvalue()) is bar
    assert len(out.getvalue().splitlines()) == lines


def test_log_every_keeps_first_and_last():
    clock, out = FakeClock(), io.StringIO()
    display = TrainingDisplay(
        num_epoch=8, begin_epoch=1, log_every=3, stdout=out, stderr=io.StringIO(), clock=clock
    )
    run_display(display, range(1, 8), clock)
    printed = [line.split()[1] for line in out.getvalue().splitlines()]
    assert printed == ["2/8", "3/8", "6/8", "8/8"]


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="log_every"):
        TrainingDisplay(2, log_every=0)
    with pytest.raises(ValueError, match="quiet"):
        TrainingDisplay(2, quiet="all")


def test_logged_lists_exactly_the_epochs_logs_prints():
    for num_epoch in range(1, 30):
        for log_every in range(1, 9):
            for begin in range(0, num_epoch, 3):
                display = TrainingDisplay(
                    num_epoch=num_epoch, begin_epoch=begin, log_every=log_every
                )
                for first in range(begin, num_epoch):
                    for stop in range(first, num_epoch + 1):
                        expected = [e for e in range(first, stop) if display.logs(e)]
                        assert display.logged(first, stop) == expected
