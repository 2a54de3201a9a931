"""Real runs for the report and compare tests: the demo (a tiny ONNX model on
synthetic images, ONNX Runtime, real LoadGen) with quick settings."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import profiles


def run(root: Path, **overrides):
    """One ``session.execute`` of the demo profile under ``root``; returns its Outcome."""
    pytest.importorskip("onnxruntime", reason="the demo profile runs on ONNX Runtime")
    from sut import session

    # 200 queries: enough for LoadGen's early stopping, a fraction of a second
    values = {"output": str(root / "results"), "cache_dir": str(root / "cache"), "progress": False,
              "preprocess_workers": 1, "quick": True, "min_duration_ms": 0, "min_query_count": 200,
              "report": True}  # plots even though quick (a quick run's report has tables only by default)
    values.update(overrides)
    return session.execute(profiles.resolve("demo", values), echo=lambda *a, **k: None)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature and IHDR chunk."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def external_references(text: str) -> list[str]:
    """Anything in an HTML file that would load from outside it."""
    import re

    found = re.findall(r"(?i)(?:https?:|ftp:|file:|//[a-z0-9.-]+\.[a-z]{2,}/|<link\b|<script\b|<iframe\b|"
                       r"@import|url\()", text)
    found += [src for src in re.findall(r"(?i)\bsrc\s*=\s*['\"]([^'\"]*)", text) if not src.startswith("data:")]
    found += re.findall(r"(?i)\bhref\s*=\s*['\"]([^'\"#][^'\"]*)", text)
    return found
