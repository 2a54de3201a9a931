"""Ctrl-C and SIGTERM end a run cleanly, at any point.

After :func:`install`, the first SIGINT or SIGTERM:

* outside a :func:`deferred` block (loading, preprocessing, writing results)
  raises :class:`Stop` in the main thread at once: a KeyboardInterrupt (so no
  ``except Exception`` on the way swallows it) that knows its signal; the
  code on the way out renames the result directory ``.interrupted`` and
  turns it into :class:`~sut.errors.Interrupted` (:func:`as_interrupted`);
* inside one (while LoadGen runs a test on its own thread, or a warm-up thread
  runs the backend: neither may outlive the process) is only recorded:
  :func:`requested` returns its number and :func:`event` is set, the code
  waiting on LoadGen ends the test (every outstanding sample completed, so
  LoadGen returns) and :func:`check` raises afterwards.

A second signal exits at once with ``os._exit(128 + signum)``, after the
callbacks registered with :func:`on_hard_exit` (they rename the result
directory): no Python or C++ clean-up runs, so no C++ abort while LoadGen's
threads are alive.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Callable

from sut import console
from sut.errors import Interrupted, signal_name

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_requested: int | None = None
_event = threading.Event()
_deferred = 0
_hard_exit: list[Callable[[], str | None]] = []


class Stop(KeyboardInterrupt):
    """What the first signal raises outside :func:`deferred` (see the module docstring)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def as_interrupted(exc: BaseException) -> Interrupted:
    """``exc`` as an Interrupted error: a :class:`Stop` or a plain
    KeyboardInterrupt (handlers not installed: SIGINT) becomes one."""
    if isinstance(exc, Interrupted):
        return exc
    return Interrupted(getattr(exc, "signum", None) or _requested or signal.SIGINT)


def requested() -> int | None:
    """The signal number of the first SIGINT/SIGTERM received, or None."""
    return _requested


def event() -> threading.Event:
    """Set when a stop was requested (for waits that should wake up at once)."""
    return _event


def check() -> None:
    """Raise Interrupted when a stop was requested."""
    if _requested is not None:
        raise Interrupted(_requested)


@contextlib.contextmanager
def deferred():
    """While inside, the first signal is only recorded (see the module docstring);
    :func:`check` afterwards."""
    global _deferred
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1


@contextlib.contextmanager
def on_hard_exit(callback: Callable[[], str | None]):
    """Run ``callback`` before a second signal exits the process at once; the
    text it returns (e.g. where the results are) ends the error line."""
    _hard_exit.append(callback)
    try:
        yield
    finally:
        _hard_exit.remove(callback)


def _handle(signum, frame) -> None:
    global _requested
    if _requested is not None:
        notes = []
        for callback in reversed(_hard_exit):
            try:
                notes.append(callback())
            except BaseException:  # exiting anyway: a failed clean-up must not stop it
                pass
        tail = "; ".join(n for n in notes if n)
        message = f"error: interrupted again by {signal_name(signum)}: exited at once" + (f"; {tail}" if tail else "")
        console.error_line(message)
        os._exit(128 + signum)
    _requested = signum
    _event.set()
    if not _deferred:
        raise Stop(signum)


#: threads that run inside the backend for LoadGen or the warm-up (sut/runner.py)
BUSY_THREAD_NAMES = ("loadgen", "warm-up")


def busy_threads() -> list[threading.Thread]:
    """LoadGen and warm-up threads still running: while one is, the backend
    must stay open and the process may end only through ``os._exit`` (a
    normal interpreter exit aborts in LoadGen's C++ threads, exit 134/139)."""
    return [t for t in threading.enumerate() if t.name in BUSY_THREAD_NAMES and t.is_alive()]


@contextlib.contextmanager
def installed():
    """:func:`install` for the block (in the main thread; elsewhere a no-op), then :func:`restore`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = install()
    try:
        yield
    finally:
        restore(previous)


def install() -> dict:
    """Take over SIGINT and SIGTERM (main thread only); returns the previous
    handlers for :func:`restore`. Forgets an earlier request."""
    reset()
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum in SIGNALS:
        signal.signal(signum, _handle)
    return previous


def restore(previous: dict) -> None:
    """Put back the handlers :func:`install` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def reset() -> None:
    """Forget a recorded request (tests)."""
    global _requested
    _requested = None
    _event.clear()
