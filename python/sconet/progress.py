"""Progress reporting shared by the commands: a rich bar on a terminal, plain lines elsewhere.

:class:`Progress` shows a bar with the count, rate and ETA (rich, which typer brings) when
``live`` (default: stderr is a terminal), and otherwise writes a plain line
``label: done/total (pct %)  rate unit/s  eta  info`` at the first update, then at most every
``every_s`` seconds, and once at the end, so logs of background runs and CI show progress too.
``live=False`` (the commands' ``--no-progress``) forces plain lines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["Progress", "is_live", "format_seconds"]

DEFAULT_EVERY_S = 10.0


def is_live(flag: bool | None, stream: TextIO | None = None) -> bool:
    """``flag`` when given, else whether ``stream`` (stderr) is a terminal."""
    if flag is not None:
        return bool(flag)
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def format_seconds(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03`` / ``?``."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """``with Progress("train", total, "it") as p: p.update(done, info=...)``."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "it",
        *,
        live: bool | None = None,
        every_s: float = DEFAULT_EVERY_S,
        log: Callable[[str], None] | None = None,
        stream: TextIO | None = None,
        enabled: bool = True,
    ):
        self.label, self.total, self.unit = label, total, unit
        self.enabled = enabled
        self.every_s = float(every_s)
        self.stream = stream or sys.stderr
        self.log = log or (lambda msg: print(msg, file=self.stream, flush=True))
        self.live = enabled and is_live(live, self.stream)
        self.done = 0
        self.info = ""
        self._t0: float | None = None
        self._n0 = 0
        self._last_line: float | None = None
        self._printed_done: int | None = None
        self._bar: Any = None
        self._task: Any = None
        if self.live:
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn(f"[bold]{self.label}"),
            BarColumn(bar_width=28),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(file=self.stream),
            transient=False,
        )
        self._task = self._bar.add_task(self.label, total=self.total, rate="", info="")
        self._bar.start()

    # -- reporting ---------------------------------------------------------------------------------
    @property
    def rate(self) -> float:
        if self._t0 is None:
            return 0.0
        dt = time.perf_counter() - self._t0
        return (self.done - self._n0) / dt if dt > 0 else 0.0

    def eta(self) -> float | None:
        rate = self.rate
        if self.total is None or rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def plain_line(self) -> str:
        parts = [f"{self.label}: {self.done:,}" + (f"/{self.total:,}" if self.total else "")]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f} %)"
        if self._t0 is not None and self.done > self._n0:
            parts.append(f"{self.rate:,.2f} {self.unit}/s")
            if self.total:
                parts.append(f"eta {format_seconds(self.eta())}")
        if self.info:
            parts.append(self.info)
        return "  ".join(parts)

    def update(self, done: int, total: int | None = None, info: str | None = None) -> None:
        """Progress is at ``done`` (of ``total``, when it changes); ``info``: text shown beside it."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if total is not None:
            self.total = total
        if info is not None:
            self.info = info
        if self._t0 is None:  # a resumed job starts part-way: the rate counts from here
            self._t0, self._n0 = now, done
        self.done = done
        if self._bar is not None:
            rate = f"{self.rate:,.2f} {self.unit}/s" if done > self._n0 else ""
            self._bar.update(self._task, completed=done, total=self.total, rate=rate, info=self.info)
            return
        if self._last_line is None or now - self._last_line >= self.every_s:
            self._emit(now)

    def _emit(self, now: float) -> None:
        self._last_line = now
        self._printed_done = self.done
        self.log(self.plain_line())

    def message(self, text: str) -> None:
        """A line of its own (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            self.log(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.enabled and self._t0 is not None and self._printed_done != self.done:
            self._emit(time.perf_counter())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
