"""sut/signals.py: the first Ctrl-C/SIGTERM raises at once outside a LoadGen
test and is a request inside one; a second one exits at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sut import signals
from sut.errors import Interrupted
from tests.helpers import ROOT


@pytest.fixture
def installed():
    with signals.installed():
        yield
    signals.reset()


def deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # the handler runs in this (main) thread at the next bytecode


def test_outside_a_test_the_first_signal_raises_at_once(installed):
    with pytest.raises(KeyboardInterrupt) as err:  # not an Exception: no 'except Exception' swallows it
        try:
            deliver(signal.SIGTERM)
        except Exception:
            pytest.fail("an 'except Exception' caught the stop")
    assert isinstance(err.value, signals.Stop) and err.value.signum == signal.SIGTERM
    interrupted = signals.as_interrupted(err.value)
    assert interrupted.exit_code == 143 and str(interrupted) == "interrupted by SIGTERM"
    assert signals.requested() == signal.SIGTERM and signals.event().is_set()
    assert signals.as_interrupted(KeyboardInterrupt()).exit_code == 143  # the recorded signal


def test_inside_deferred_the_first_signal_is_a_request(installed):
    with signals.deferred():
        deliver(signal.SIGINT)
        assert signals.requested() == signal.SIGINT
    with pytest.raises(Interrupted) as err:
        signals.check()
    assert err.value.exit_code == 130


def test_installed_puts_the_old_handlers_back():
    before = signal.getsignal(signal.SIGINT)
    with signals.installed():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


def test_a_second_signal_exits_at_once_after_the_callbacks(tmp_path):
    marker = tmp_path / "renamed"
    code = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from sut import signals
        signals.install()

        def rename():
            open({str(marker)!r}, "w").close()
            return "partial results in somewhere.interrupted"

        with signals.on_hard_exit(rename), signals.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        print("not reached")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130 and proc.stdout == ""
    assert proc.stderr == ("error: interrupted again by SIGINT: exited at once; "
                           "partial results in somewhere.interrupted\n")
    assert marker.exists()


def test_busy_threads_names_loadgen_and_warm_up():
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="loadgen", daemon=True)
    thread.start()
    try:
        assert signals.busy_threads() == [thread]
    finally:
        stop.set()
        thread.join()
    assert signals.busy_threads() == []
