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
