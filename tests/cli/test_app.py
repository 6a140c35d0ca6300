"""What every command shares: progress lines for logs."""

from __future__ import annotations

from bintally.cli.app import LogLines, format_duration, format_rate


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_come_every_interval_with_rate_and_time_left(capsys):
    """Updates every second; a line only once 30 s have passed since the last one, with done/total, the rate since
    the pass began and the time left. A new pass (done going down) restarts the rate."""
    clock = Clock()
    lines = LogLines("train", 30, clock)
    for second in range(1, 31):
        clock.now = second
        lines(second * 2, 100, "epoch 1/2")
    out = capsys.readouterr().err.splitlines()
    assert out == ["train: 60/100 (2.0/s, 0m20s left) epoch 1/2"]
    clock.now = 31
    lines(1, 100, "epoch 2/2")  # a new epoch: the rate counts from here
    clock.now = 61
    lines(31, 100, "epoch 2/2")
    assert capsys.readouterr().err.splitlines() == ["train: 31/100 (1.0/s, 1m09s left) epoch 2/2"]


def test_without_a_total_there_is_no_time_left(capsys):
    clock = Clock()
    lines = LogLines("fetching", 0, clock)
    clock.now = 4
    lines(8, None)
    assert capsys.readouterr().err.strip() == "fetching: 8 (2.0/s)"
    assert format_duration(3725) == "1h02m" and format_duration(59) == "0m59s"


def test_slow_work_shows_seconds_each_instead_of_a_rate_that_rounds_to_zero():
    assert format_rate(2.0) == "2.0/s" and format_rate(0.0) == "0.0/s"
    assert format_rate(0.1) == "10.0 s each" and format_rate(0.04) == "25.0 s each"
