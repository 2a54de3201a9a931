"""Result directories that never overwrite an earlier run and never look
complete unless they are.

A run writes into ``<output>/<run_id>.partial/``. When it ends the directory
is renamed, once everything in it has been written whole and flushed to disk:

``<run_id>``              the run completed: every file whole, LoadGen's logs hold a verdict
``<run_id>.failed``       it failed (backend, results that could not be written, ...)
``<run_id>.interrupted``  Ctrl-C or SIGTERM ended it
``<run_id>.abandoned``    its process died without renaming it (killed, power lost);
                          the next run in the same ``--output`` renames it

A ``.partial`` directory holds :data:`OWNER` (the owning process's id, host
and start time) so the next run can tell a live run from a dead one. Inside,
each test uses the per-scenario part of the MLPerf submission tree::

    <run_id>/config.json  summary.txt
    <run_id>/<system>/<model>/<Scenario>/performance/run_1/mlperf_log_*.txt
    <run_id>/<system>/<model>/<Scenario>/accuracy/{accuracy.txt,mlperf_log_*}
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from sut.errors import ResultsError, one_line

log = logging.getLogger(__name__)

PARTIAL, FAILED, INTERRUPTED, ABANDONED = ".partial", ".failed", ".interrupted", ".abandoned"
#: the end state of a run -> the suffix of its directory
SUFFIXES = {"complete": "", "failed": FAILED, "interrupted": INTERRUPTED}
#: who owns a ``.partial`` directory (JSON: pid, host, start); removed when the run ends
OWNER = ".owner"
#: MLLOG lines of ``mlperf_log_detail.txt``
MLLOG = ":::MLLOG "


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def probe(output: str | Path) -> None:
    """Raise ResultsError unless files can be written into ``output`` (created
    if missing): checked before any work, so a read-only or full disk is found
    before preprocessing and the tests rather than after them."""
    root = Path(output)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsError(f"cannot create output directory {root}: {_reason(exc)}; "
                           "choose another --output") from exc
    test = root / f".write-test.{os.getpid()}"
    try:
        with open(test, "wb") as f:
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise ResultsError(f"cannot write results into {root}: {_reason(exc)}; free space there or choose "
                           "another --output") from exc
    finally:
        try:
            test.unlink()
        except OSError:
            pass


class RunDirectory:
    def __init__(self, output: str | Path, run_name: str):
        self.root = Path(output)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-{safe_name(run_name)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(f"cannot create output directory {self.root}: {_reason(exc)}; "
                               "choose another --output") from exc
        abandon_stale(self.root)
        taken = (PARTIAL, FAILED, INTERRUPTED, ABANDONED, "")
        for n in range(1, 1000):
            run_id = base if n == 1 else f"{base}-{n}"
            if any((self.root / (run_id + s)).exists() for s in taken):
                continue
            try:
                (self.root / (run_id + PARTIAL)).mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise ResultsError(f"cannot write results into {self.root}: {_reason(exc)}; "
                                   "choose another --output") from exc
            self.run_id = run_id
            break
        else:
            raise ResultsError(f"too many runs named {base} in {self.root}")
        self.path = self.root / (self.run_id + PARTIAL)
        self.state: str | None = None  # set by finish()
        try:
            self.write_json(OWNER, owner_record())
        except ResultsError:
            os.rmdir(self.path)  # nothing else in it yet: leave no mess behind
            raise

    def test_dir(self, system: str, model: str, scenario: str, mode: str) -> Path:
        sub = ("performance", "run_1") if mode == "performance" else ("accuracy",)
        path = self.path.joinpath(safe_name(system), safe_name(model), scenario, *sub)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(f"cannot create {path}: {_reason(exc)}") from exc
        return path

    def final_path(self, state: str = "complete") -> Path:
        """What the directory is called once :meth:`finish` ends it in ``state``."""
        return self.root / (self.run_id + SUFFIXES[state])

    def final_name(self, path: Path) -> Path:
        """``path`` inside this (partial) directory, as it will be named once complete."""
        try:
            return self.final_path() / Path(path).relative_to(self.path)
        except ValueError:
            return Path(path)

    def write_json(self, name: str, data: Any) -> None:
        self.write_text(name, json.dumps(data, indent=2, default=str) + "\n")

    def write_text(self, name: str, text: str) -> None:
        """Write a file whole or not at all: a temporary file, flushed to disk,
        renamed over ``name``. ResultsError (disk full, read-only, ...) otherwise."""
        write_whole(self.path / name, text)

    def finish(self, ok: bool = True, state: str | None = None) -> Path:
        """Flush the run's files to disk and rename the directory for ``state``
        (``complete``, ``failed``, ``interrupted``; default from ``ok``).

        A complete run whose files cannot be flushed or renamed raises
        ResultsError, after renaming the directory ``.failed`` where it can; a
        run that failed or was interrupted is renamed as well as can be (it is
        failing already: the original error is the one to report).
        """
        if self.state is not None:
            return self.path
        state = state or ("complete" if ok else "failed")
        problem = None
        if state == "complete":
            try:
                sync_tree(self.path)
            except OSError as exc:
                problem = f"cannot flush the results in {self.path} to disk: {_reason(exc)}"
                state = "failed"
        final = self.final_path(state)
        try:
            os.replace(self.path, final)
        except OSError as exc:
            log.warning("could not rename %s to %s: %s", self.path, final.name, exc)
            if state == "complete":
                raise ResultsError(f"cannot rename {self.path} to {final.name}: {_reason(exc)}") from exc
            return self.path  # keeps its owner record: the next run renames it .abandoned
        self.path, self.state = final, state
        try:
            (final / OWNER).unlink()
        except OSError:
            pass
        _sync_dir(self.root)
        if problem:
            raise ResultsError(problem)
        return final


# --- writing whole files -------------------------------------------------------------

def write_whole(path: Path, text: str) -> None:
    """``text`` into ``path`` via a flushed temporary file and a rename, so the
    file is either absent or whole; ResultsError naming the file otherwise."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise ResultsError(f"cannot write {path}: {_reason(exc)}; free space there or choose another "
                           "--output") from exc


def sync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (LoadGen's logs included)."""
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _sync_dir(Path(directory))


def _sync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # not every platform opens directories
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the files themselves are synced
    finally:
        os.close(fd)


def inside(path, root) -> bool:
    """Whether ``path`` (str, bytes or Path; may not exist) lies under ``root``."""
    if not path or not root:
        return False
    try:
        Path(os.path.abspath(os.fsdecode(path))).relative_to(os.path.abspath(root))
        return True
    except (TypeError, ValueError):
        return False


def _reason(exc: OSError) -> str:
    return one_line(exc.strerror or exc) if isinstance(exc, OSError) else one_line(exc)


# --- LoadGen's logs hold a verdict ---------------------------------------------------------

#: keys LoadGen logs last in every test (``power_end``), and in a performance
#: test after the verdict (``num_errors``): a log without them was cut short
END_KEYS = {"accuracy": ("power_end",), "performance": ("power_end", "result_validity", "num_errors")}


def check_loadgen_logs(outdir: Path, mode: str) -> str | None:
    """What is wrong with the logs LoadGen wrote into ``outdir`` for a finished
    test, or None when they are whole: ``mlperf_log_detail.txt`` present, ending
    in a newline, every MLLOG line valid JSON, holding the keys of
    :data:`END_KEYS`; ``mlperf_log_summary.txt`` present and not empty;
    accuracy mode: ``mlperf_log_accuracy.json`` valid JSON."""
    outdir = Path(outdir)
    detail = outdir / "mlperf_log_detail.txt"
    try:
        data = detail.read_bytes()
    except OSError as exc:
        return f"LoadGen's log {detail} cannot be read: {_reason(exc)}"
    if not data.endswith(b"\n"):
        return f"LoadGen's log {detail} is cut short ({len(data)} bytes, the last line unfinished)"
    keys = set()
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.startswith(MLLOG):
            continue
        try:
            keys.add(json.loads(line[len(MLLOG):])["key"])
        except (ValueError, KeyError, TypeError):
            return f"LoadGen's log {detail} is damaged at line {number}"
    missing = [k for k in END_KEYS[mode] if k not in keys]
    if missing:
        return (f"LoadGen's log {detail} ends before the test did (no {', '.join(missing)}): "
                "it was cut short, e.g. by a full disk")
    summary = outdir / "mlperf_log_summary.txt"
    try:
        if not summary.read_bytes().strip():
            return f"LoadGen's summary {summary} is empty"
    except OSError as exc:
        return f"LoadGen's summary {summary} cannot be read: {_reason(exc)}"
    if mode == "accuracy":
        accuracy = outdir / "mlperf_log_accuracy.json"
        try:
            with open(accuracy, encoding="utf-8") as f:
                json.load(f)
        except OSError as exc:
            return f"LoadGen's accuracy log {accuracy} cannot be read: {_reason(exc)}"
        except ValueError:
            return f"LoadGen's accuracy log {accuracy} is cut short or damaged (not valid JSON)"
    return None


# --- runs whose process died --------------------------------------------------------------

def owner_record() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": process_start(os.getpid())}


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a
    reused process id from the owner; None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19])  # field 22 of stat(5); fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return None


def owner_alive(owner: dict) -> bool:
    """Whether the process recorded in a ``.partial`` directory still runs
    (True when it cannot be told: another host, an unreadable record)."""
    try:
        pid, host, start = int(owner["pid"]), owner.get("host"), owner.get("start")
    except (KeyError, TypeError, ValueError):
        return True
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except OSError:
        return True
    return start is None or process_start(pid) in (None, start)


def abandon_stale(root: Path) -> list[Path]:
    """Rename every ``.partial`` directory in ``root`` whose owning process is
    gone to ``.abandoned``; returns the new paths. Directories without an
    owner record (older harness versions) are left alone."""
    renamed = []
    try:
        entries = list(Path(root).iterdir())
    except OSError:
        return renamed
    for entry in entries:
        if not entry.name.endswith(PARTIAL) or not entry.is_dir():
            continue
        try:
            owner = json.loads((entry / OWNER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if owner_alive(owner):
            continue
        base = entry.name[:-len(PARTIAL)]
        target = entry.with_name(base + ABANDONED)
        try:
            if target.exists():
                continue
            os.replace(entry, target)
        except OSError:
            continue  # another run renamed it first, or the disk refuses: not ours to fail on
        try:
            (target / OWNER).unlink()
        except OSError:
            pass
        log.info("%s: its process (%s on %s) is gone; renamed %s", entry.name, owner.get("pid"),
                 owner.get("host"), target.name)
        renamed.append(target)
    return renamed
