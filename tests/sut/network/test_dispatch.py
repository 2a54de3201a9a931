"""Node failures mid-run: a node killed, stopped (hung) or answering garbage.

Slow nodes (``slow_backend``: 20 ms per sample, one sample per call) make a
run last long enough to fail a node while it holds samples: each test waits
until the node has answered a few calls of the run before it strikes. A run
must then either finish on the other node with every sample answered once
(accuracy stays 100%: nothing lost, nothing doubled) or fail with one line
naming the node; never hang.
"""

from __future__ import annotations

import signal
import threading
from concurrent import futures

import grpc
import pytest

from sut.network import protocol
from tests.sut.network.nodes import NodeProcess, loadgen_node, wait_for_calls

SLOW = ["--backend", "tests.sut.network.slow_backend:SlowOnnxBackend", "--max-batchsize", "1"]
RUN_TIMEOUT_S = 240


@pytest.fixture
def slow_nodes(net_cache, tmp_path, demo_nodes):  # demo_nodes: the synthetic data is already in net_cache
    def start(k):
        calls = tmp_path / ("calls-%d" % k)
        node = NodeProcess(*SLOW, cache=net_cache, env={"NODE_CALLS_FILE": str(calls), "NODE_DELAY_S": "0.02"})
        node.calls = calls
        return node

    # both start at once (the cache is already written): each start-up is seconds of imports
    with futures.ThreadPoolExecutor(2) as pool:
        started = [pool.submit(start, k) for k in range(2)]
    nodes = [f.result() for f in started if f.exception() is None]
    try:
        for f in started:
            if f.exception() is not None:
                raise f.exception()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def strike(nodes, action, *args, tmp_path, cache):
    """Start a LoadGen node over ``nodes``, apply ``action`` to nodes[0] once it is busy with the run."""
    before = nodes[0].calls.stat().st_size
    run = loadgen_node("--nodes", ",".join(n.address for n in nodes), *SLOW, *args, tmp_path=tmp_path,
                       cache=cache, wait=False)
    try:
        # the LoadGen node's probe makes 20 calls before the test; then a few of the test's
        wait_for_calls(nodes[0].calls, before + 24)
        action(nodes[0])
        out, err = run.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if run.poll() is None:
            run.kill()
    return run.returncode, out, err


def kill(node):
    node.signal(signal.SIGKILL)


def stop(node):
    node.signal(signal.SIGSTOP)


@pytest.mark.parametrize("scenario", ["Offline", "Server", "SingleStream"])
def test_killed_node_samples_go_to_the_other(slow_nodes, net_cache, tmp_path, scenario):
    rc, out, err = strike(slow_nodes, kill, "--scenario", scenario, "--accuracy", tmp_path=tmp_path, cache=net_cache)
    assert rc == 0, err
    assert "accuracy  : accuracy=100.000%, good=60, total=60" in out
    assert "%s" % slow_nodes[0].address in out and "FAILED (connection lost" in out
    assert "re-sent to other nodes after a node failed" in out


@pytest.mark.parametrize("scenario", ["Offline", "SingleStream"])
def test_stopped_node_times_out_and_its_samples_go_to_the_other(slow_nodes, net_cache, tmp_path, scenario):
    rc, out, err = strike(slow_nodes, stop, "--scenario", scenario, "--accuracy", "--sample-timeout", "2",
                          tmp_path=tmp_path, cache=net_cache)
    assert rc == 0, err
    assert "accuracy  : accuracy=100.000%, good=60, total=60" in out
    assert "FAILED (no answer within 2 s (--sample-timeout))" in out


def test_fail_mode_names_the_node_in_one_line(slow_nodes, net_cache, tmp_path):
    rc, out, err = strike(slow_nodes, kill, "--scenario", "Offline", "--accuracy", "--on-node-failure", "fail",
                          tmp_path=tmp_path, cache=net_cache)
    assert rc == 6
    assert err.strip().splitlines()[-1].startswith("error: node %s failed: connection lost" % slow_nodes[0].address)
    assert "Traceback" not in err


def test_no_node_left_fails_the_run(slow_nodes, net_cache, tmp_path):
    def kill_both(node):
        for n in slow_nodes:
            n.signal(signal.SIGKILL)

    rc, out, err = strike(slow_nodes, kill_both, "--scenario", "SingleStream", "--accuracy", tmp_path=tmp_path,
                          cache=net_cache)
    assert rc == 6
    assert "failed: connection lost" in err and "no node is left to take its samples" in err


class GarbageProxy:
    """Forwards calls to a real node, then answers garbage from call ``after`` on."""

    def __init__(self, target: str, after: int):
        self.target, self.after, self.calls = target, after, 0
        self.lock = threading.Lock()
        self.channel = grpc.insecure_channel(target)
        handler = grpc.method_handlers_generic_handler(protocol.SERVICE, {
            "Describe": grpc.unary_unary_rpc_method_handler(self.describe),
            "Predict": grpc.unary_unary_rpc_method_handler(self.predict)})
        self.server = grpc.server(futures.ThreadPoolExecutor(4), handlers=(handler,))
        self.address = "127.0.0.1:%d" % self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def describe(self, request, context):
        return self.channel.unary_unary(protocol.DESCRIBE)(request, timeout=30)

    def predict(self, request, context):
        with self.lock:
            self.calls += 1
            garbage = self.calls > self.after
        if garbage:
            return b"MLER" + b"\xff" * 40
        return self.channel.unary_unary(protocol.PREDICT)(request, timeout=30)

    def close(self):
        self.server.stop(0)
        self.channel.close()


def test_node_answering_garbage_is_dropped(demo_nodes, net_cache, tmp_path):
    proxy = GarbageProxy(demo_nodes[0].address, after=25)  # the probe's 20 calls, then a few of the test's
    try:
        done = loadgen_node("--nodes", "%s,%s" % (proxy.address, demo_nodes[1].address), "--scenario",
                            "SingleStream", "--accuracy", tmp_path=tmp_path, cache=net_cache, timeout=RUN_TIMEOUT_S)
    finally:
        proxy.close()
    assert done.returncode == 0, done.stderr
    assert "accuracy  : accuracy=100.000%, good=60, total=60" in done.stdout
    assert "FAILED (invalid answer: answer is not a version-1 MLER message)" in done.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_the_loadgen_node_ends_the_run_cleanly(slow_nodes, net_cache, tmp_path, sig):
    before = slow_nodes[0].calls.stat().st_size
    run = loadgen_node("--nodes", ",".join(n.address for n in slow_nodes), *SLOW, "--scenario", "SingleStream",
                       "--accuracy", tmp_path=tmp_path, cache=net_cache, wait=False)
    try:
        wait_for_calls(slow_nodes[0].calls, before + 24)
        run.send_signal(sig)
        out, err = run.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 128 + sig, err
    assert err.strip().splitlines()[-1] == "error: interrupted by %s" % signal.Signals(sig).name
    assert [p.name.endswith(".interrupted") for p in (tmp_path / "results").iterdir()] == [True]
    assert all(node.alive() for node in slow_nodes)
