"""SUT node subprocesses (``run.py serve``) on loopback, for the network tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
READY = re.compile(r"^serving .* on (\S+); boot id ([0-9a-f]+)$")
START_TIMEOUT_S = 300


class NodeProcess:
    """``run.py serve ARGS --listen 127.0.0.1:0``; ``address`` once it serves."""

    def __init__(self, *args: str, python: str = sys.executable, env: dict | None = None, cache: Path | None = None,
                 prefix: tuple = (), listen: str = "127.0.0.1:0"):
        cmd = [*prefix, python, str(ROOT / "run.py"), "serve", "--listen", listen, "--no-progress", *args]
        if cache is not None and "--cache-dir" not in args:
            cmd += ["--cache-dir", str(cache)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self.address = self.boot_id = None
        ready = threading.Event()

        def read():
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                match = READY.match(line.strip())
                if match:
                    self.address, self.boot_id = match.groups()
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(START_TIMEOUT_S)
        if self.address is None:
            self.stop()
            raise RuntimeError("node did not start:\n" + "\n".join(self.lines))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def signal(self, sig) -> None:
        os.kill(self.proc.pid, sig)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
                self.proc.terminate()
                self.proc.wait(10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.proc.kill()
                self.proc.wait(10)


def loadgen_node(*args: str, tmp_path: Path, cache: Path, timeout: float = 300, wait: bool = True):
    """``run.py --nodes ...`` (the LoadGen node); a CompletedProcess, or the Popen with ``wait=False``."""
    cmd = [sys.executable, str(ROOT / "run.py"), *args, "--no-progress", "--output", str(tmp_path / "results"),
           "--cache-dir", str(cache)]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def wait_for_calls(path: Path, count: int, timeout_s: float = 120) -> None:
    """Until the slow backend has logged ``count`` predict calls in ``path``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= count:
            return
        time.sleep(0.01)
    raise AssertionError("the node made fewer than %d predict calls in %g s" % (count, timeout_s))
