"""Progress of long loops (training steps, evaluation passes) that reads well on a terminal and in a log file.

On a terminal (stderr is a TTY) a tqdm bar shows count / total, rate and ETA. Anywhere else (``dvc repro`` and CI
logs, pytest) a carriage-return bar is unreadable, so one log line is written (logger
``vlmo_pipeline.progress``) at every ~10 % of the total — skipping an intermediate line when the previous one is
less than ``min_interval_s`` old — and always one when the loop ends::

    stage2: step 20/40 (50 %), loss 5.43, 12.9 steps/s, 412.8 samples/s, elapsed 0:02, ETA 0:02

``VLMO_PROGRESS`` overrides the choice: ``bar``, ``log`` or ``off``.

:func:`track` wraps an evaluation loop over a DataLoader; :class:`vlmo_pipeline.training.callbacks.StepProgress`
drives a :class:`Progress` from the Lightning training loop. This module does not import Lightning or torch.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["Progress", "progress_mode", "track", "batch_size_of", "format_seconds", "PROGRESS_ENV"]

logger = logging.getLogger("vlmo_pipeline.progress")

PROGRESS_ENV = "VLMO_PROGRESS"
_MODES = ("bar", "log", "off")
T = TypeVar("T")


def progress_mode(mode: str = "auto") -> str:
    """``bar`` on a terminal, ``log`` elsewhere; ``$VLMO_PROGRESS`` (bar/log/off) wins over ``mode='auto'``."""
    if mode == "auto":
        mode = os.environ.get(PROGRESS_ENV, "auto").strip().lower() or "auto"
    if mode == "auto":
        stream = sys.stderr
        mode = "bar" if getattr(stream, "isatty", lambda: False)() else "log"
    if mode not in _MODES:
        raise ValueError(f"progress mode must be auto, {', '.join(_MODES)}; got {mode!r}")
    return mode


def format_seconds(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) of a duration; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Count towards ``total``: a tqdm bar or log lines every ``every`` of the total (see module docstring).

    ``unit``: what is counted ("step", "image", "caption", ...). ``samples_per_unit``: with it, the throughput is
    also given in samples/s. ``initial``: the count already done (a resumed run); rates and ETA use only what
    this run does.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        initial: int = 0,
        mode: str = "auto",
        every: float = 0.1,
        min_interval_s: float = 0.0,
        samples_per_unit: float | None = None,
    ) -> None:
        self.total = int(total) if total is not None and total > 0 and math.isfinite(total) else None
        self.desc, self.unit, self.initial = desc, unit, int(initial)
        self.count = self.initial
        self.mode = progress_mode(mode)
        self.every, self.min_interval_s = every, min_interval_s
        self.samples_per_unit = samples_per_unit
        self.postfix: dict[str, Any] = {}
        self.started = time.perf_counter()
        self._last_line = self.started
        self._next_fraction = self._fraction_after(self.initial)
        self._closed = False
        self._bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total,
                initial=self.initial,
                desc=desc,
                unit=unit,
                dynamic_ncols=True,
                leave=True,
                file=sys.stderr,
            )

    # ------------------------------------------------------------------------------------------- update
    def _fraction_after(self, count: int) -> float:
        """The next multiple of ``every`` strictly above ``count / total``."""
        if not self.total:
            return math.inf
        return (math.floor(count / self.total / self.every + 1e-9) + 1) * self.every

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.set(self.count + n, **postfix)

    def set(self, count: int, **postfix: Any) -> None:
        """Advance to ``count`` (absolute), with ``postfix`` values (e.g. ``loss=...``) shown next to it."""
        if self._closed:
            return
        delta, self.count = count - self.count, count
        self.postfix.update({key: value for key, value in postfix.items() if value is not None})
        if self._bar is not None:
            shown = {key: _short(value) for key, value in self.postfix.items()}
            rate, _ = self.rates()
            if self.samples_per_unit and math.isfinite(rate):
                shown["samples/s"] = _rate(rate * self.samples_per_unit)
            if shown:
                self._bar.set_postfix(shown, refresh=False)
            self._bar.update(delta)
        elif (
            self.mode == "log"
            and self.total
            and count < self.total
            and count / self.total >= self._next_fraction - 1e-9
        ):
            self._next_fraction = self._fraction_after(count)
            now = time.perf_counter()
            if now - self._last_line >= self.min_interval_s:
                self._last_line = now
                logger.info("%s", self.line())

    def close(self) -> None:
        """The bar's last refresh, or the closing log line (count, rate, elapsed time)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "log" and self.count > self.initial:
            logger.info("%s", self.line(final=True))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- text
    def rates(self) -> tuple[float, float]:
        """(units/s, seconds elapsed) of this run."""
        elapsed = time.perf_counter() - self.started
        done = self.count - self.initial
        return (done / elapsed if elapsed > 0 else math.inf), elapsed

    def line(self, final: bool = False) -> str:
        rate, elapsed = self.rates()
        if self.total:
            percent = 100.0 * self.count / self.total
            parts = [f"{self.desc}: {self.unit} {self.count:,}/{self.total:,} ({percent:.0f} %)"]
        else:
            parts = [f"{self.desc}: {self.count:,} {_plural(self.unit)}"]
        parts += [f"{key} {_short(value)}" for key, value in self.postfix.items()]
        if math.isfinite(rate):
            parts.append(f"{_rate(rate)} {_plural(self.unit)}/s")
            if self.samples_per_unit:
                parts.append(f"{_rate(rate * self.samples_per_unit)} samples/s")
        parts.append(f"{'took' if final else 'elapsed'} {format_seconds(elapsed)}")
        if not final and self.total and rate > 0 and math.isfinite(rate):
            parts.append(f"ETA {format_seconds((self.total - self.count) / rate)}")
        return ", ".join(parts)


def _rate(rate: float) -> str:
    return f"{rate:.1f}" if rate >= 10 else f"{rate:.2g}"


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def track(
    iterable: Iterable[T],
    desc: str,
    total: int | None = None,
    unit: str = "batch",
    count: Callable[[T], int] | None = None,
    mode: str = "auto",
    min_interval_s: float = 2.0,
) -> Iterator[T]:
    """Iterate ``iterable`` with a :class:`Progress`; ``count(item)``: how many units an item is (default 1), e.g.
    the number of images in a batch with ``total`` the dataset's length."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc, unit=unit, mode=mode, min_interval_s=min_interval_s) as progress:
        for item in iterable:
            yield item
            progress.update(count(item) if count is not None else 1)


def batch_size_of(key: str) -> Callable[[Any], int]:
    """``count`` for :func:`track` over collated batches: the length of ``batch[key]``."""
    return lambda batch: len(batch[key])
