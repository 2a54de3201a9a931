"""Accuracy-log truncation as the official ``truncate_accuracy_log.py`` does it.

The tree keeps the first and last 4096 characters of ``mlperf_log_accuracy.json``
joined by ``"\\n\\n...\\n\\n"`` and ``accuracy.txt`` gets a line
``hash=<sha256 of the full log>``; the full log is kept outside the tree.
A log too small to shrink is copied whole (the official tool leaves files
under 4096 bytes alone).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

from submission.rules import HASH_PATTERN

VIEWABLE_BYTES = 4096
GAP = b"\n\n...\n\n"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def truncate_copy(full_log: Path, truncated: Path) -> str:
    """Write the truncated copy of ``full_log`` to ``truncated``; return the full log's sha256."""
    digest = sha256_of(full_log)
    size = full_log.stat().st_size
    truncated.parent.mkdir(parents=True, exist_ok=True)
    if size <= 2 * VIEWABLE_BYTES + len(GAP):
        shutil.copyfile(full_log, truncated)
        return digest
    with open(full_log, "rb") as src:
        head = src.read(VIEWABLE_BYTES)
        src.seek(size - VIEWABLE_BYTES)
        tail = src.read(VIEWABLE_BYTES)
    truncated.write_bytes(head + GAP + tail)
    return digest


def write_hash_line(accuracy_txt: Path, digest: str) -> None:
    """Append ``hash=<digest>`` to accuracy.txt, replacing an earlier hash line."""
    lines = accuracy_txt.read_text().splitlines() if accuracy_txt.exists() else []
    lines = [line for line in lines if not re.match(HASH_PATTERN, line)]
    while lines and not lines[-1].strip():
        lines.pop()
    accuracy_txt.write_text("\n".join([*lines, f"hash={digest}"]) + "\n")


def read_hash_line(accuracy_txt: Path) -> str | None:
    for line in accuracy_txt.read_text(errors="replace").splitlines():
        match = re.match(HASH_PATTERN, line)
        if match:
            return match.group(1)
    return None
