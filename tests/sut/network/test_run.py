"""The LoadGen node (run.py --nodes): results over real SUT node processes on loopback."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import DATA, MODELS, need_module, runtime_figure, shared_path
from tests.sut.network.nodes import NodeProcess, loadgen_node
from tests.helpers import run_cli


def results_config(stdout: str) -> dict:
    directory = next(line.split(":", 1)[1].strip() for line in stdout.splitlines() if line.startswith("results   :"))
    with open(os.path.join(directory, "config.json")) as f:
        return json.load(f)


def accuracy_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("accuracy  :"))


def test_accuracy_over_two_nodes_equals_a_local_run(demo_nodes, net_cache, tmp_path):
    nodes = ",".join(n.address for n in demo_nodes)
    remote = loadgen_node("--nodes", nodes, "--accuracy", tmp_path=tmp_path, cache=net_cache)
    assert remote.returncode == 0, remote.stderr
    local = run_cli("--accuracy", "--cache-dir", str(net_cache), tmp_path=tmp_path)
    assert local.returncode == 0, local.stderr
    assert accuracy_line(remote.stdout) == accuracy_line(local.stdout) == \
        "accuracy  : accuracy=100.000%, good=60, total=60"
    record = results_config(remote.stdout)
    assert record["number_of_nodes"] == 2
    assert [n["address"] for n in record["nodes"]] == [n.address for n in demo_nodes]
    assert all(n["host"]["name"] and n["boot_id"] for n in record["nodes"])
    assert sum(n["samples"] for n in record["nodes"]) >= 60
    assert record["results"][0]["dispatch"]["redispatched_samples"] == 0


@pytest.mark.parametrize("scenario", ["Offline", "Server", "SingleStream", "MultiStream"])
def test_performance_over_two_nodes(demo_nodes, net_cache, tmp_path, scenario):
    nodes = ",".join(n.address for n in demo_nodes)
    done = loadgen_node("--nodes", nodes, "--scenario", scenario, "--mode", "performance", "--quick",
                        tmp_path=tmp_path, cache=net_cache)
    assert done.returncode == 0, done.stderr
    assert "result    : VALID" in done.stdout or "result    : INVALID" in done.stdout
    record = results_config(done.stdout)
    assert record["results"][0]["metric"] is not None
    if scenario == "Offline":  # one query: spread over both nodes
        assert all(n["samples"] > 0 for n in record["nodes"])


def test_a_node_with_other_data_is_refused(demo_nodes, net_cache, tmp_path):
    done = loadgen_node("--nodes", demo_nodes[0].address, "--count", "30", "--accuracy", tmp_path=tmp_path,
                        cache=net_cache)
    assert done.returncode == 2
    assert done.stderr.startswith("error: node %s holds another dataset (60 samples" % demo_nodes[0].address)
    assert "Traceback" not in done.stderr


def test_a_node_with_another_model_is_refused(demo_nodes, net_cache, tmp_path):
    other = tmp_path / "other.onnx"
    other.write_bytes(b"not the served model")
    done = loadgen_node("--nodes", demo_nodes[0].address, "--model", str(other), "--accuracy", tmp_path=tmp_path,
                        cache=net_cache)
    assert done.returncode == 2 and "runs another model" in done.stderr and demo_nodes[0].address in done.stderr


def test_an_unreachable_node_is_named(net_cache, tmp_path):
    done = loadgen_node("--nodes", "127.0.0.1:1", "--accuracy", "--sample-timeout", "2", tmp_path=tmp_path,
                        cache=net_cache, timeout=120)
    assert done.returncode == 5
    assert "error: node 127.0.0.1:1 did not answer within 2 s" in done.stderr


def test_loadgen_node_without_the_token_is_refused(tmp_path, net_cache, demo_nodes):
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123456789abcdef")
    os.chmod(token, 0o600)
    node = NodeProcess("--token-file", str(token), cache=net_cache)
    try:
        done = loadgen_node("--nodes", node.address, "--accuracy", tmp_path=tmp_path, cache=net_cache)
        assert done.returncode == 2 and "refused this LoadGen node" in done.stderr
        good = loadgen_node("--nodes", node.address, "--token-file", str(token), "--accuracy", tmp_path=tmp_path,
                            cache=net_cache)
        assert good.returncode == 0, good.stderr
        assert node.alive()
    finally:
        node.stop()


def test_mobilenet_accuracy_over_two_nodes(tmp_path):
    """MobileNet 1.0 (LiteRT) over 2 loopback nodes scores the reference figure, as a local run does."""
    litert = need_module("ai_edge_litert.interpreter", "the MobileNet nodes run LiteRT")
    model = shared_path("models", "mobilenet", "mobilenet_v1_1.0_224_quant.tflite")
    data = shared_path("data", "imagenet-mini")
    args = ["--profile", "mobilenet_tflite", "--model", str(model), "--dataset-path", str(data)]
    cache = tmp_path / "cache"
    nodes = []
    try:
        for _ in range(2):
            nodes.append(NodeProcess(*args, cache=cache))
        done = loadgen_node("--nodes", ",".join(n.address for n in nodes), *args, "--accuracy",
                            tmp_path=tmp_path, cache=cache)
    finally:
        for node in nodes:
            node.stop()
    assert done.returncode == 0, done.stderr
    figure = runtime_figure(model, data, litert, "accuracy=77.692%, good=202, total=260")
    assert accuracy_line(done.stdout) == "accuracy  : " + figure
    record = results_config(done.stdout)
    assert all(n["samples"] > 0 for n in record["nodes"])
