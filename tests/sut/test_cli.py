import errno
import io
import logging
import signal
from pathlib import Path

import pytest

from sut import cli, console
from sut.errors import BackendUnavailable, Interrupted, ModelError, ResultsError


def test_installed_loadgen_version_is_read():
    version = cli.loadgen_version()
    assert version is None or (len(version) == 3 and version >= (6, 0, 0))


@pytest.mark.parametrize("installed", [(6, 0, 16), (6, 0, 17), (7, 0, 0), None])
def test_current_loadgen_passes_for_runs_and_submissions(monkeypatch, installed):
    monkeypatch.setattr(cli, "loadgen_version", lambda: installed)
    cli.require_loadgen()
    cli.require_loadgen(submission=True)


def test_old_loadgen_warns_for_a_run_and_refuses_a_submission(monkeypatch, caplog):
    monkeypatch.setattr(cli, "loadgen_version", lambda: (6, 0, 12))
    with caplog.at_level(logging.WARNING, logger="sut.cli"):
        cli.require_loadgen()
    assert "6.0.12 is older than 6.0.16" in caplog.text and "not to submit" in caplog.text
    with pytest.raises(BackendUnavailable) as err:
        cli.require_loadgen(submission=True)
    message = str(err.value)
    assert "6.0.12" in message and "6.0.16" in message and "pip install" in message and "\n" not in message
    assert err.value.exit_code == 5


# --- every error: one line and its exit code -----------------------------------------------

def raised(exc):
    try:
        raise exc
    except BaseException as caught:
        return caught


@pytest.mark.parametrize("exc,code,text", [
    (ModelError("model file not found: m.onnx"), 3, "model file not found: m.onnx"),
    (Interrupted(signal.SIGTERM), 143, "interrupted by SIGTERM"),
    (KeyboardInterrupt(), 130, "interrupted by SIGINT"),
    (ResultsError("two\nlines"), 7, "two lines"),
    (OSError(errno.ENOTDIR, "Not a directory", "/out/run/x"), 7,
     "cannot write /out/run/x: Not a directory; free space there or choose another --output"),
    (OSError(errno.EROFS, "Read-only file system", "/cache/k/data.npy"), 4,
     "cannot write /cache/k/data.npy: Read-only file system; pass --cache-dir DIR on a writable disk with room "
     "(or --cache-dir none to keep the samples in memory)"),
    (OSError(errno.ENOSPC, "No space left on device", "/elsewhere/f"), 7,
     "cannot write /elsewhere/f: No space left on device; free space there or choose another --output"),
    (OSError(errno.ENOENT, "No such file or directory", "/elsewhere/f"), 1,
     "internal error: FileNotFoundError: [Errno 2] No such file or directory: '/elsewhere/f'"),
    (ValueError("bad\nvalue"), 1, "internal error: ValueError: bad value"),
    (MemoryError(), 1, "out of memory (MemoryError); use fewer samples (--count) or a smaller run"),
])
def test_classify_gives_every_exception_its_code_and_one_line(exc, code, text):
    got_code, got_text = cli.classify(exc, {"--output": "/out", "--cache-dir": "/cache"})
    assert (got_code, got_text) == (code, text)


def test_interrupted_names_where_the_results_are():
    exc = Interrupted(signal.SIGINT)
    exc.run_directory = Path("results/r.interrupted")
    assert cli.classify(exc) == (130, "interrupted by SIGINT; results so far in results/r.interrupted")


def test_internal_error_traceback_goes_to_a_file_not_the_terminal(capsys):
    exc = raised(ValueError("boom"))
    assert cli.fail(exc) == 1
    err = capsys.readouterr().err
    (line,) = err.splitlines()
    assert line.startswith("error: internal error: ValueError: boom (traceback: ") and "Traceback" not in err
    log = Path(line.split("(traceback: ")[1].rstrip(")"))
    try:
        assert "Traceback (most recent call last)" in log.read_text() and "boom" in log.read_text()
    finally:
        log.unlink()
    exc.error_log = Path("run.failed/error.log")  # the run directory's log, when there is one
    assert cli.fail(exc) == 1
    assert capsys.readouterr().err == "error: internal error: ValueError: boom (traceback: run.failed/error.log)\n"


def test_verbose_prints_the_traceback_then_the_line(capsys):
    assert cli.fail(raised(ModelError("no model")), verbose=True) == 3
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)") and err.endswith("\nerror: no model\n")


def test_the_error_line_starts_a_fresh_line_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    out.write("\rtest: 40% (4 s of 10 s)")  # an open progress line
    console.error_line("error: stop", out)
    assert out.getvalue().endswith("(4 s of 10 s)\r\x1b[Kerror: stop\n")
    plain = io.StringIO()
    console.error_line("error: stop", plain)
    assert plain.getvalue() == "error: stop\n"


def test_main_turns_any_exception_into_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(cli, "list_everything", lambda: (_ for _ in ()).throw(RuntimeError("plugin listing broke")))
    assert cli.main(["--list-profiles"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: internal error: RuntimeError: plugin listing broke (traceback: ")
    Path(line.split("(traceback: ")[1].rstrip(")")).unlink()
