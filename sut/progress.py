"""The progress line of a LoadGen test.

On a terminal (stderr is a TTY) one line on stderr is rewritten in place a
few times a second; otherwise (a log file, CI) a plain line goes to stdout
every :data:`PLAIN_INTERVAL_S` seconds, beside the run's other output, and
stderr keeps only errors. Either way the line is always ended (a newline)
when the test ends, fails or is interrupted, so that nothing printed next is
glued onto it.

It shows elapsed time against the expected duration (``sut.settings.plan``),
queries (Offline: samples) done against the expected count, the current rate
(and for SingleStream/MultiStream the time per query) and an ETA. It reads
one counter of the :class:`~sut.completion.Completer` from the runner's wait
loop: nothing is added to the path of a query.
"""

from __future__ import annotations

import collections
import shutil
import sys
import time
from typing import TextIO

#: a terminal line is rewritten at most this often
TTY_INTERVAL_S = 0.2
#: without a terminal, a plain line this often
PLAIN_INTERVAL_S = 10.0
#: the current rate is measured over about this much time
RATE_WINDOW_S = 3.0


class Line:
    """One status line: rewritten in place on a terminal, else plain lines at
    most every ``interval`` seconds. ``end`` always leaves the cursor on a new line."""

    def __init__(self, enabled: bool = True, tty: bool | None = None, tty_stream: TextIO | None = None,
                 plain_stream: TextIO | None = None, interval: float | None = None):
        self.tty_stream = tty_stream or sys.stderr
        self.plain_stream = plain_stream or sys.stdout
        if tty is None:
            isatty = getattr(self.tty_stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.enabled = enabled
        self.interval = interval if interval is not None else (TTY_INTERVAL_S if tty else PLAIN_INTERVAL_S)
        self._shown_at: float | None = None
        self._width = 0          # characters on the terminal line now (0: the line is clear)
        self.printed = 0         # plain lines printed

    def due(self, now: float) -> bool:
        """Whether a new text would be shown at ``now`` (so the caller may skip formatting it)."""
        if not self.enabled:
            return False
        if self._shown_at is None:  # the first plain line after one interval, on a terminal at once
            self._shown_at = now - (self.interval if self.tty else 0.0)
        return now - self._shown_at >= self.interval

    def show(self, text: str, now: float) -> None:
        self._shown_at = now
        if not self.enabled:
            return
        if self.tty:
            text = _fit(text)
            pad = " " * max(0, self._width - len(text))
            self._write(self.tty_stream, "\r" + text + pad)
            self._width = len(text)
        else:
            self._write(self.plain_stream, text + "\n")
            self.printed += 1

    def end(self, text: str | None = None) -> None:
        """Finish the line: on a terminal ``text`` replaces it and a newline
        follows; without one ``text`` is printed if a line was printed before
        (a short test stays quiet)."""
        if not self.enabled:
            return
        if self.tty:
            if text is not None:
                self.show(text, self._shown_at or 0.0)
            if self._width:
                self._write(self.tty_stream, "\n")
                self._width = 0
        elif text is not None and self.printed:
            self._write(self.plain_stream, text + "\n")

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # a closed or full stream never fails a run
            pass


def _fit(text: str) -> str:
    """``text`` cut to the terminal's width (a wrapped line cannot be rewritten)."""
    width = shutil.get_terminal_size((100, 24)).columns - 1
    return text if len(text) <= width else text[:max(10, width - 1)] + "…"


class LoadGenProgress:
    """Progress of one LoadGen test, fed the Completer's sample count."""

    def __init__(self, scenario: str, mode: str, plan, line: Line, start: float | None = None):
        self.scenario, self.mode, self.plan, self.line = scenario, mode, plan, line
        self.start = time.monotonic() if start is None else start
        self._history: collections.deque = collections.deque()
        self._last = (self.start, 0)

    def update(self, now: float, samples_done: int) -> None:
        """Called often (every wait of the runner's loop); shows at most every interval."""
        if not self.line.due(now):
            return
        self.line.show(self.text(now, samples_done), now)

    def text(self, now: float, samples_done: int, state: str | None = None) -> str:
        plan = self.plan
        elapsed = max(0.0, now - self.start)
        units = samples_done // max(1, plan.samples_per_unit)
        rate = self._rate(now, units)
        parts = [f"{self.scenario} {self.mode}"]
        expected = f" / ~{_seconds(plan.seconds)}" if plan.seconds > 0 and state is None else ""
        parts.append(f"{_seconds(elapsed)}{expected}")
        parts.append(f"{units}/{plan.count} {plan.unit}" if plan.count and state is None else f"{units} {plan.unit}")
        if state is None:
            if rate > 0:
                parts.append(_rate_text(rate, plan.unit, self.scenario))
            eta = self._eta(elapsed, units, rate)
            if eta is not None:
                parts.append(f"ETA {_seconds(eta)}")
        else:
            if units and elapsed > 0 and state == "done":
                parts.append(_rate_text(units / elapsed, plan.unit, self.scenario))
            parts.append(state)
        return "  ".join(parts)

    def finish(self, now: float, samples_done: int, state: str = "done") -> None:
        """End the line with the final count and ``state`` (done, failed, interrupted)."""
        self.line.end(self.text(now, samples_done, state))

    def _rate(self, now: float, units: int) -> float:
        """Units per second over about the last RATE_WINDOW_S."""
        history = self._history
        history.append((now, units))
        while len(history) > 2 and now - history[1][0] >= RATE_WINDOW_S:
            history.popleft()
        t0, u0 = history[0]
        if now > t0:
            return (units - u0) / (now - t0)
        return units / (now - self.start) if now > self.start else 0.0

    def _eta(self, elapsed: float, units: int, rate: float) -> float | None:
        plan = self.plan
        remaining = max(0, plan.count - units)
        eta = None
        if remaining and rate > 0:
            eta = remaining / rate
        floor = getattr(plan, "min_seconds", 0.0) - elapsed
        if floor > 0:
            eta = max(eta or 0.0, floor)
        if eta is not None and plan.max_seconds:
            eta = min(eta, max(0.0, plan.max_seconds - elapsed))
        return eta


def _seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    minutes, seconds = divmod(int(round(s)), 60)
    return f"{minutes}:{seconds:02d} min" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d} h"


def _rate_text(rate: float, unit: str, scenario: str) -> str:
    text = f"{rate:.3g} {unit}/s" if rate < 1000 else f"{rate:,.0f} {unit}/s"
    if unit == "queries" and scenario in ("SingleStream", "MultiStream") and rate > 0:
        text += f" ({1000 / rate:.3g} ms/query)"
    return text
