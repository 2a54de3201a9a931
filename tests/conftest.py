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


#: LiteRT's package and the older one with the same modules (what Python 3.8/3.9 and Coral boards have)
LITERT_PACKAGES = ("ai_edge_litert", "tflite_runtime")


def need_module(name: str, why: str = ""):
    """Import a runtime module or skip with the reason.

    ``ai_edge_litert[.x]`` is satisfied by ``tflite_runtime[.x]`` where only
    that is installed: the harness runs on either.
    """
    root, _, rest = name.partition(".")
    if root == LITERT_PACKAGES[0]:
        for package in LITERT_PACKAGES[1:]:
            alternative = package + ("." + rest if rest else "")
            try:
                __import__(alternative)
            except ImportError:
                continue
            return sys.modules[alternative]
    return pytest.importorskip(name, reason=f"{name} is not installed{': ' + why if why else ''}")


# --- CI compatibility jobs: a skip of what the job exists to run is a failure ----------
#: comma list of words (module names, "shared models"): a test skipped for a reason
#: naming one of them fails instead (set by .ci/compat/*.sh)
REQUIRED = [word.strip() for word in os.environ.get("MLPERF_EDGE_REQUIRE", "").split(",") if word.strip()]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (REQUIRED and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    named = [word for word in REQUIRED if word in reason]
    if named:
        report.outcome = "failed"
        report.longrepr = (f"skipped ({reason}), but this job requires '{named[0]}' "
                           f"(MLPERF_EDGE_REQUIRE={','.join(REQUIRED)})")


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"
