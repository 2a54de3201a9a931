"""Fixtures for the network tests: grpcio required, demo nodes shared by a session."""

from __future__ import annotations

import pytest

from tests.sut.network.nodes import NodeProcess

pytest.importorskip("grpc", reason="grpcio is not installed (pip install -e '.[network]')")


@pytest.fixture(scope="session")
def net_cache(tmp_path_factory):
    """One preprocessing cache (and synthetic dataset) for every node and LoadGen node of the session."""
    return tmp_path_factory.mktemp("net-cache")


@pytest.fixture(scope="session")
def demo_nodes(net_cache):
    """Two SUT nodes serving the demo (ONNX Runtime, synthetic data), started one after the other
    (the first writes the synthetic dataset and model into the shared cache)."""
    pytest.importorskip("onnxruntime", reason="the demo nodes run ONNX Runtime")
    pytest.importorskip("onnx", reason="the demo builds its model with onnx")
    nodes = []
    try:
        for _ in range(2):
            nodes.append(NodeProcess(cache=net_cache))
        yield nodes
    finally:
        for node in nodes:
            node.stop()
