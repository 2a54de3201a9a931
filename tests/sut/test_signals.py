"""sut/signals.py: the first Ctrl-C/SIGTERM raises at once outside a LoadGen
test and is a request inside one; a second one exits at once."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap


from sut import signals
from tests.helpers import ROOT


def in_child(body: str) -> None:
    """Run ``body`` (asserts) in a fresh interpreter with the handlers installed.

    Real signals are sent to the child, never to the pytest process: by the time this file
    runs, that process holds the threads of every runtime the other tests loaded (torch,
    TensorFlow, LoadGen), and a signal delivered there has crashed it (SIGSEGV)."""
    code = textwrap.dedent("""
        import os, signal, sys, time
        sys.path.insert(0, %r)
        from sut import signals
        from sut.errors import Interrupted

        def deliver(signum):
            os.kill(os.getpid(), signum)
            time.sleep(0.05)  # the handler runs in the main thread at the next bytecode

        with signals.installed():
    """) % str(ROOT) + textwrap.indent(textwrap.dedent(body), "    ") + "\nprint('ok')\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr


def test_outside_a_test_the_first_signal_raises_at_once():
    in_child("""
        try:
            try:
                deliver(signal.SIGTERM)
            except Exception:
                raise SystemExit("an 'except Exception' caught the stop")
            raise SystemExit("no stop raised")
        except KeyboardInterrupt as exc:  # not an Exception: no 'except Exception' swallows it
            err = exc
        assert isinstance(err, signals.Stop) and err.signum == signal.SIGTERM
        interrupted = signals.as_interrupted(err)
        assert interrupted.exit_code == 143 and str(interrupted) == "interrupted by SIGTERM"
        assert signals.requested() == signal.SIGTERM and signals.event().is_set()
        assert signals.as_interrupted(KeyboardInterrupt()).exit_code == 143  # the recorded signal
    """)


def test_inside_deferred_the_first_signal_is_a_request():
    in_child("""
        with signals.deferred():
            deliver(signal.SIGINT)
            assert signals.requested() == signal.SIGINT
        try:
            signals.check()
            raise SystemExit("check() did not raise")
        except Interrupted as err:
            assert err.exit_code == 130
    """)


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
