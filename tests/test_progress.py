"""Progress reporting (training steps, evaluation passes): log lines every ~10 % when not on a TTY, a bar on one."""

from __future__ import annotations

import io
import logging

import pytest

from vlmo_pipeline import progress as progress_module
from vlmo_pipeline.progress import PROGRESS_ENV, Progress, format_seconds, progress_mode, track


def _lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "vlmo_pipeline.progress"]


def test_log_mode_writes_a_line_every_tenth_and_one_at_the_end(caplog, monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "log")
    caplog.set_level(logging.INFO, logger="vlmo_pipeline.progress")
    with Progress(200, "stage2", unit="step", samples_per_unit=32) as progress:
        for step in range(1, 201):
            progress.set(step, loss=5.0 - step / 100)
    lines = _lines(caplog)
    assert len(lines) == 10  # 10 %, 20 %, ..., 90 %, then the closing 100 % line
    assert lines[0].startswith("stage2: step 20/200 (10 %), loss 4.8, ")
    assert "steps/s" in lines[0] and "samples/s" in lines[0] and "ETA " in lines[0]
    assert lines[-1].startswith("stage2: step 200/200 (100 %), loss 3") and "took " in lines[-1]
    assert "ETA" not in lines[-1]


def test_resumed_run_counts_from_its_start_and_short_loops_log_once(caplog, monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "log")
    caplog.set_level(logging.INFO, logger="vlmo_pipeline.progress")
    with Progress(100, "stage3", unit="step", initial=50) as progress:
        progress.set(55)  # 55 %: the 60 % line is the next one
        progress.set(61)
    assert [line.split(",")[0] for line in _lines(caplog)] == ["stage3: step 61/100 (61 %)"] * 2
    caplog.clear()
    # Evaluation passes: intermediate lines only when the previous one is min_interval_s old.
    items = list(track(range(7), "vqa test", total=70, unit="question", count=lambda _: 10, min_interval_s=3600))
    assert items == list(range(7))
    assert _lines(caplog) == [_lines(caplog)[0]] and _lines(caplog)[0].startswith("vqa test: question 70/70 (100 %)")
    assert "questions/s" in _lines(caplog)[0]


def test_modes(monkeypatch, caplog):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    assert progress_mode() == "log"  # pytest captures stderr: not a TTY
    monkeypatch.setattr(progress_module.sys, "stderr", type("Tty", (io.StringIO,), {"isatty": lambda self: True})())
    assert progress_mode() == "bar"
    monkeypatch.setenv(PROGRESS_ENV, "off")
    assert progress_mode() == "off"
    caplog.set_level(logging.INFO, logger="vlmo_pipeline.progress")
    list(track(range(3), "quiet"))
    assert _lines(caplog) == []
    monkeypatch.setenv(PROGRESS_ENV, "bar")
    list(track(range(3), "bar", unit="batch"))
    assert _lines(caplog) == []  # the bar goes to stderr, not to the log
    assert "bar: 100%" in progress_module.sys.stderr.getvalue()
    monkeypatch.setenv(PROGRESS_ENV, "sometimes")
    with pytest.raises(ValueError, match="progress mode"):
        progress_mode()


def test_format_seconds():
    assert format_seconds(5) == "0:05" and format_seconds(125) == "2:05" and format_seconds(3725) == "1:02:05"
    assert format_seconds(float("inf")) == "?"
