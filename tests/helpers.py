"""Running ``run.py`` in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the null backend shaped like the synthetic demo model
NULL_AS_DEMO = ["--backend", "null", "--backend-option", "input_shape=[3,32,32]",
                "--backend-option", "layout=\"NCHW\"", "--backend-option", "input_dtype=\"float32\"",
                "--backend-option", "classes=10"]


def run_cli(*args: str, tmp_path: Path, timeout: float = 300, env: dict | None = None):
    """Run ``run.py`` with results and caches under ``tmp_path``; without
    report.html and its plots (seconds a run) unless ``args`` hold ``--report``."""
    cmd = [sys.executable, str(ROOT / "run.py"), *args, "--no-progress"]
    if "--report" not in args:
        cmd.append("--no-report")
    if "--output" not in args:
        cmd += ["--output", str(tmp_path / "results")]
    if "--cache-dir" not in args:
        cmd += ["--cache-dir", str(tmp_path / "cache")]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env)


def run_dirs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "results"
    return sorted(root.iterdir()) if root.exists() else []
