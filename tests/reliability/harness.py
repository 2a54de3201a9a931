"""Driving ``run.py`` subprocesses for the fault suite: start, wait for a line,
signal, collect; and what every failure must look like."""

from __future__ import annotations

import atexit
import concurrent.futures
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.helpers import NULL_AS_DEMO, ROOT

#: the null backend's options that shape it like the demo model (without --backend)
DEMO_SHAPE = NULL_AS_DEMO[2:]
#: how long any one run may take before the suite calls it hung (a safety net, not a timing test)
RUN_TIMEOUT_S = 150


_seed_lock = threading.Lock()
_seed: list[Path] = []


def demo_seed() -> Path:
    """A cache directory holding the demo's synthetic images and model, made
    once per test session and copied into each run's cache: making the model
    (ONNX) is most of a short run's start-up. Preprocessed samples are not in
    it: every run preprocesses into its own cache."""
    with _seed_lock:
        if not _seed:
            import tempfile

            import datasets

            root = Path(tempfile.mkdtemp(prefix="mlperf-edge-demo-seed-"))
            atexit.register(shutil.rmtree, root, True)
            demo = datasets.create("synthetic", None)
            demo.cache_root = root
            demo.scan()
            demo.default_model()
            _seed.append(root)
        return _seed[0]


def plugin(name: str) -> list[str]:
    """``--backend`` options for a backend of tests/reliability/plugins.py, shaped like the demo."""
    return ["--backend", f"tests.reliability.plugins:{name}", *DEMO_SHAPE]


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    output: Path          # the --output root
    cache: Path
    left: list[str]       # what was in --output when the run ended

    def dirs(self) -> list[str]:
        return self.left

    def the_dir(self) -> Path:
        names = self.dirs()
        assert len(names) == 1, f"expected one result directory, found {names}"
        return self.output / names[0]


class Run:
    """``run.py`` (or ``python -m MODULE``) in a subprocess, results and cache under ``tmp``."""

    def __init__(self, tmp: Path, *args: str, env: dict | None = None, module: str | None = None,
                 preexec_fn=None, output: Path | None = None, cache: Path | str | None = None,
                 progress: bool = False):
        self.output = Path(output or tmp / "results")
        self.cache = Path(cache or tmp / "cache")
        if cache is None and not self.cache.exists():
            shutil.copytree(demo_seed(), self.cache)
        entry = ["-m", module] if module else [str(ROOT / "run.py")]
        cmd = [sys.executable, *entry, *args, *([] if progress else ["--no-progress"]),
               "--output", str(self.output), "--cache-dir", str(cache or self.cache)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, **(env or {})}, preexec_fn=preexec_fn)
        self._out: list[str] = []
        self._err: list[str] = []
        self._seen = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self._out), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self._err), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, into: list[str]) -> None:
        # by character: the preprocessing progress line ends in '\r', not '\n'
        while True:
            chunk = stream.read(1)
            with self._seen:
                if chunk:
                    into.append(chunk)
                self._seen.notify_all()
            if not chunk:
                return

    def wait_for(self, text: str, stream: str = "stdout", timeout: float = RUN_TIMEOUT_S) -> None:
        """Block until ``text`` appears on ``stream`` (fails if the process ends first)."""
        into = self._out if stream == "stdout" else self._err
        deadline = time.monotonic() + timeout
        with self._seen:
            while text not in "".join(into):
                if self.proc.poll() is not None and not any(r.is_alive() for r in self._readers):
                    raise AssertionError(f"run ended (exit {self.proc.returncode}) before {text!r} on {stream}:\n"
                                         f"{''.join(self._out)}\n{''.join(self._err)}")
                left = deadline - time.monotonic()
                assert left > 0, f"no {text!r} on {stream} within {timeout} s"
                self._seen.wait(min(left, 0.2))

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = RUN_TIMEOUT_S) -> Result:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"run.py did not end within {timeout} s:\n{''.join(self._err)}")
        for reader in self._readers:
            reader.join(10)
        left = sorted(p.name for p in self.output.iterdir()) if self.output.is_dir() else []
        return Result(self.proc.returncode, "".join(self._out), "".join(self._err), self.output, self.cache, left)


def run(tmp: Path, *args: str, **kwargs) -> Result:
    return Run(tmp, *args, **kwargs).finish()


def in_parallel(cases: dict) -> dict:
    """Run ``cases`` (name -> function returning a Result) all at once: the
    suite's runs mostly wait (sleeping backends, signals), so two cores run many."""
    demo_seed()
    with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
        futures = {name: pool.submit(fn) for name, fn in cases.items()}
        results = {}
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except BaseException as exc:  # reported by the test of that case
                results[name] = exc
    return results


def get(results: dict, name: str) -> Result:
    result = results[name]
    if isinstance(result, BaseException):
        raise result
    return result


# --- what every failure must look like ------------------------------------------------------

NOISE = ("Traceback", "Exception ignored", "terminate called", "Segmentation fault", "Aborted",
         "ERROR sut.", "Fatal Python error")


def one_error_line(result: Result, *expected: str) -> str:
    """The run printed exactly one ``error:`` line, the last thing on stderr,
    holding every ``expected`` text; no traceback or other noise. Returns it."""
    lines = [line for line in re.split(r"[\r\n]+", result.stderr) if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1, f"expected one error line, got {len(errors)}:\n{result.stderr}"
    assert errors[0].startswith("error: "), f"the error is glued onto another line: {errors[0]!r}"
    assert lines[-1] == errors[0], f"the error line is not the last line on stderr:\n{result.stderr}"
    for noise in NOISE:
        assert noise not in result.stderr, f"{noise!r} on stderr:\n{result.stderr}"
    for text in expected:
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    return errors[0]
