"""Ctrl-C and SIGTERM as a request to stop, not an exception in a random place.

:func:`install` replaces the default handlers: the first signal only records
itself (:func:`requested` returns its number) and the code that waits on
LoadGen ends the test cleanly; the second exits at once with ``os._exit``
(no C++ static destructors racing LoadGen's threads, so no abort).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

_requested: int | None = None
_event = threading.Event()


def requested() -> int | None:
    """The signal number of the first SIGINT/SIGTERM received, or None."""
    return _requested


def event() -> threading.Event:
    """Set when a stop was requested (for waits that should wake up at once)."""
    return _event


def _handle(signum, frame) -> None:
    global _requested
    if _requested is not None:
        sys.stderr.write("\nerror: interrupted again: exiting at once\n")
        sys.stderr.flush()
        os._exit(128 + signum)
    _requested = signum
    _event.set()


def install() -> None:
    """Take over SIGINT and SIGTERM (main thread only)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _handle)


def reset() -> None:
    """Forget a recorded request (tests)."""
    global _requested
    _requested = None
    _event.clear()
