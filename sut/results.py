"""Result directories that never overwrite an earlier run.

A run writes into ``<output>/<run_id>.partial/`` and the directory is renamed
to ``<run_id>`` when the run succeeds, or ``<run_id>.failed`` when it does
not, so a partial result never looks complete. Inside, each test uses the
per-scenario part of the MLPerf submission tree::

    <run_id>/config.json  summary.txt
    <run_id>/<system>/<model>/<Scenario>/performance/run_1/mlperf_log_*.txt
    <run_id>/<system>/<model>/<Scenario>/accuracy/{accuracy.txt,mlperf_log_*}
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from sut.errors import ResultsError

PARTIAL, FAILED = ".partial", ".failed"


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


class RunDirectory:
    def __init__(self, output: str | Path, run_name: str):
        self.root = Path(output)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-{safe_name(run_name)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(f"cannot create output directory {self.root}: {exc}") from exc
        for n in range(1, 1000):
            run_id = base if n == 1 else f"{base}-{n}"
            if any((self.root / (run_id + s)).exists() for s in ("", PARTIAL, FAILED)):
                continue
            try:
                (self.root / (run_id + PARTIAL)).mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise ResultsError(f"cannot write results into {self.root}: {exc}") from exc
            self.run_id = run_id
            break
        else:
            raise ResultsError(f"too many runs named {base} in {self.root}")
        self.path = self.root / (self.run_id + PARTIAL)

    def test_dir(self, system: str, model: str, scenario: str, mode: str) -> Path:
        sub = ("performance", "run_1") if mode == "performance" else ("accuracy",)
        path = self.path.joinpath(safe_name(system), safe_name(model), scenario, *sub)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_json(self, name: str, data: Any) -> None:
        with open(self.path / name, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")

    def write_text(self, name: str, text: str) -> None:
        (self.path / name).write_text(text)

    def finish(self, ok: bool) -> Path:
        """Rename to the final name (or ``.failed``) and return it."""
        final = self.root / (self.run_id + ("" if ok else FAILED))
        os.replace(self.path, final)
        self.path = final
        return final
