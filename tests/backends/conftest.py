"""Fixtures shared by the backend tests."""

import pytest


@pytest.fixture
def runtime():
    """LiteRT's interpreter module (tflite_runtime's where only that is installed)."""
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        interpreter = pytest.importorskip(
            "tflite_runtime.interpreter", reason="neither ai_edge_litert nor tflite_runtime is installed")
    return interpreter


#: run in a subprocess by ``kws_converted``: the float ONNX model first, then (with torch and onnx) the
#: PyTorch files made from it; one line "NAME PATH" each
_CONVERT_KWS = """
import importlib.util, sys, traceback
from pathlib import Path
from benchmarks import kws_onnx
cache = Path(sys.argv[1])
print("onnx", kws_onnx.convert("savedmodel", cache=cache / "onnx"), flush=True)
if all(importlib.util.find_spec(m) is not None for m in ("torch", "onnx")):
    try:
        from benchmarks import kws_pytorch as k
        print("ts", k.convert("savedmodel", "ts", cache=cache), flush=True)
        print("pt2", k.convert("savedmodel", "pt2", cache=cache), flush=True)
        if (kws_onnx.SHARED / "models" / "kws" / "kws_ref_model_float32.tflite").exists():
            print("tflite", k.convert("tflite", "ts", cache=cache), flush=True)
    except Exception:
        traceback.print_exc()
        sys.exit(3)
"""


@pytest.fixture(scope="session")
def kws_converted(tmp_path_factory):
    """The KWS SavedModel converted once a session, in one subprocess (TensorFlow stays out of the test
    process; importing it alone takes ~10 s): {"onnx": the float ONNX model (tf2onnx), and where torch
    is installed "ts"/"pt2" (TorchScript / torch.export from that ONNX) and "tflite" (TorchScript from
    kws_ref_model_float32.tflite)}, plus "stderr" (the subprocess's, for a failed torch conversion).
    Cached under the session's temporary directory, never committed. Used by test_int8_calibration and
    test_pytorch, which skip first for what they need."""
    import importlib.util
    import subprocess
    import sys

    from tests.conftest import ROOT, shared_path

    for module in ("tensorflow", "tf2onnx"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"converting the KWS model needs {module} (pip install -e '.[test,tensorflow]')")
    shared_path("models", "kws", "kws_ref_model")
    cache = tmp_path_factory.mktemp("kws-convert-cache")
    proc = subprocess.run([sys.executable, "-c", _CONVERT_KWS, str(cache)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    made = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.split(" ", 1)[0] in
                ("onnx", "ts", "pt2", "tflite"))
    assert "onnx" in made, proc.stderr[-3000:]
    return {**made, "stderr": proc.stderr}
