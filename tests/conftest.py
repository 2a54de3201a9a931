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


# --- accuracy figures per runtime version -----------------------------------------------
# Runtimes compute quantised (and some float) models slightly differently, so a figure holds for
# the runtime and version it was measured with. Tests hold the figures of ai-edge-litert 2.3 and
# onnxruntime 1.32; these, of older runtimes, were measured with independent scripts on the same
# preprocessed inputs (benchmarks/litert_reference_accuracy.py; tflite-runtime gives them with
# every op resolver, and ai-edge-litert's own reference kernels give its MobileNet 1.0 figure).
# (model file, data folder) -> {(package, version prefix): figure}
OLDER_RUNTIMES = {
    ("mobilenet_v1_1.0_224_quant.tflite", "imagenet-mini"): {
        ("tflite_runtime", "2.7."): "accuracy=78.077%, good=203, total=260",
        ("tflite_runtime", "2.13."): "accuracy=78.077%, good=203, total=260"},
    ("mobilenet_v1_0.25_128_quant.tflite", "imagenet-mini"): {
        ("tflite_runtime", "2.7."): "accuracy=55.769%, good=145, total=260",
        ("tflite_runtime", "2.13."): "accuracy=55.769%, good=145, total=260"},
    ("kws_ref_model.tflite", "speech-commands-mini"): {
        ("tflite_runtime", "2.7."): "accuracy=92.000%, good=276, total=300"},
    ("kws_ref_model_float32.tflite", "speech-commands-mini"): {
        ("tflite_runtime", "2.7."): "accuracy=93.000%, good=279, total=300",
        ("tflite_runtime", "2.13."): "accuracy=93.000%, good=279, total=300"},
    ("mobilenet_v1_1.0_224_quant_qdq_nchw.onnx", "imagenet-mini"): {
        ("onnxruntime", "1.19."): "accuracy=78.462%, good=204, total=260"},
}


def cpu_flags() -> set:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere). Some runtimes pick
    other int8 kernels by ISA, and compute another figure with them (OpenVINO 2021.4.2:
    AVX512-VNNI)."""
    try:
        with open("/proc/cpuinfo") as f:
            return {flag for line in f if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return set()


def runtime_figure(model: str, data: str, runtime_module, default: str) -> str:
    """The accuracy line for the runtime actually imported (tflite_runtime where ai_edge_litert is absent)."""
    package = runtime_module.__name__.split(".")[0]
    version = str(getattr(sys.modules.get(package), "__version__", ""))
    figures = OLDER_RUNTIMES.get((str(model).split("/")[-1], str(data).split("/")[-1]), {})
    return next((figure for (name, prefix), figure in figures.items()
                 if name == package and version.startswith(prefix)), default)


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
