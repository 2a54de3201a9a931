"""Shared test fixtures: the repository root first on sys.path, ../shared paths."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("MLPERF_EDGE_SHARED", ROOT.parent / "shared"))
MODELS = SHARED / "models"
DATA = SHARED / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared models and data beside the repository)")
    return path


def need_module(name: str, why: str = ""):
    """Import a runtime module or skip with the reason."""
    return pytest.importorskip(name, reason=f"{name} is not installed{': ' + why if why else ''}")


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"
