"""Writing the one ``error:`` line the harness promises."""

from __future__ import annotations

import sys

#: on a terminal: back to the start of the line and clear it (an open ``\r``
#: progress line or the echoed ``^C`` would otherwise prefix the error)
FRESH_LINE = "\r\x1b[K"


def error_line(text: str, stream=None) -> None:
    """Write ``text`` as one line on stderr, after flushing stdout (so it comes
    after everything printed before it). Never raises: a closed or broken
    stream loses the line, not the exit code."""
    stream = stream or sys.stderr
    try:
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):
        pass
    start = FRESH_LINE if _isatty(stream) else ""
    try:
        stream.write(f"{start}{text}\n")
        stream.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False
