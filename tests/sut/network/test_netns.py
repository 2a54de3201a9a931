"""Nodes in their own network namespaces, reached over veth pairs (root only), with tc netem where the kernel has it.

Each node runs under ``ip netns exec`` in a namespace of its own, listening on
its veth address (not loopback, so with ``--token-file``); the LoadGen node
stays in the test's namespace. Skipped, with the reason, where namespaces
cannot be made (not root, no ``ip``, a container without the capability);
the netem test also where the kernel has no ``sch_netem``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from concurrent import futures

import pytest

from tests.sut.network.nodes import NodeProcess, loadgen_node, wait_for_calls
from tests.sut.network.test_dispatch import SLOW

SUBNET = "10.213.%d.%d"


def sh(*cmd, check=True):
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


class Namespace:
    """``ip netns`` NAME with a veth pair: host side SUBNET.k.1, namespace side SUBNET.k.2."""

    def __init__(self, k: int):
        tag = "%d%d" % (os.getpid() % 10000, k)
        self.name, self.host_if, self.ns_if = "mlpe%s" % tag, "mlpeh%s" % tag, "mlpen%s" % tag
        self.host_ip, self.ns_ip = SUBNET % (k, 1), SUBNET % (k, 2)
        sh("ip", "netns", "add", self.name)
        try:
            sh("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            sh("ip", "link", "set", self.ns_if, "netns", self.name)
            sh("ip", "addr", "add", self.host_ip + "/24", "dev", self.host_if)
            sh("ip", "link", "set", self.host_if, "up")
            for cmd in (["ip", "addr", "add", self.ns_ip + "/24", "dev", self.ns_if],
                        ["ip", "link", "set", self.ns_if, "up"], ["ip", "link", "set", "lo", "up"]):
                sh("ip", "netns", "exec", self.name, *cmd)
        except subprocess.CalledProcessError:
            self.close()
            raise

    @property
    def prefix(self):
        return ("ip", "netns", "exec", self.name)

    def netem(self, *args) -> None:
        """netem on both ends of the pair (both directions)."""
        sh("tc", "qdisc", "add", "dev", self.host_if, "root", "netem", *args)
        sh("ip", "netns", "exec", self.name, "tc", "qdisc", "add", "dev", self.ns_if, "root", "netem", *args)

    def close(self) -> None:
        sh("ip", "link", "del", self.host_if, check=False)
        sh("ip", "netns", "del", self.name, check=False)


@pytest.fixture
def namespaces():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and iproute2's ip")
    made = []
    try:
        for k in (1, 2):
            made.append(Namespace(k))
    except subprocess.CalledProcessError as exc:
        for ns in made:
            ns.close()
        pytest.skip("cannot make network namespaces here: %s" % (exc.stderr or exc).strip())
    yield made
    for ns in made:
        ns.close()


@pytest.fixture
def token(tmp_path):
    path = tmp_path / "token"
    path.write_text("0123456789abcdef0123456789abcdef")
    os.chmod(path, 0o600)
    return str(path)


def start(namespaces, token, cache, *args, env=None, envs=None):
    """A node in each namespace, started at once (each start-up is seconds of imports; the callers'
    demo_nodes fixture has already written the shared cache); ``envs``: one environment per node."""
    envs = envs or [env] * len(namespaces)
    with futures.ThreadPoolExecutor(len(namespaces)) as pool:
        started = [pool.submit(NodeProcess, *args, "--token-file", token, cache=cache, prefix=ns.prefix,
                               listen=ns.ns_ip + ":0", env=node_env) for ns, node_env in zip(namespaces, envs)]
    nodes = [f.result() for f in started if f.exception() is None]
    failed = [f.exception() for f in started if f.exception() is not None]
    if failed:
        for node in nodes:
            node.stop()
        raise failed[0]
    return nodes


def test_accuracy_over_nodes_in_namespaces(namespaces, token, net_cache, tmp_path, demo_nodes):
    nodes = start(namespaces, token, net_cache)
    try:
        assert [n.address.split(":")[0] for n in nodes] == [ns.ns_ip for ns in namespaces]
        done = loadgen_node("--nodes", ",".join(n.address for n in nodes), "--token-file", token, "--accuracy",
                            tmp_path=tmp_path, cache=net_cache)
    finally:
        for node in nodes:
            node.stop()
    assert done.returncode == 0, done.stderr
    assert "accuracy  : accuracy=100.000%, good=60, total=60" in done.stdout


def test_netem_delay_and_loss(namespaces, token, net_cache, tmp_path, demo_nodes):
    try:
        for ns in namespaces:
            ns.netem("delay", "5ms", "loss", "2%")
    except subprocess.CalledProcessError as exc:
        pytest.skip("tc netem is not available on this kernel (%s)" % exc.stderr.strip())
    nodes = start(namespaces, token, net_cache)
    try:
        done = loadgen_node("--nodes", ",".join(n.address for n in nodes), "--token-file", token, "--mode", "both",
                            "--sample-timeout", "20", tmp_path=tmp_path, cache=net_cache)
    finally:
        for node in nodes:
            node.stop()
    assert done.returncode == 0, done.stderr
    assert "accuracy  : accuracy=100.000%, good=60, total=60" in done.stdout
    # netem's delay is a floor on every round trip: 5 ms each way
    trips = [float(line.split("round trip ")[1].split(" us")[0]) for line in done.stdout.splitlines()
             if "round trip" in line]
    assert len(trips) == 2 and min(trips) >= 10000


def test_a_partitioned_node_times_out_and_its_samples_go_to_the_other(namespaces, token, net_cache, tmp_path,
                                                                      demo_nodes):
    calls = tmp_path / "calls"
    nodes = start(namespaces, token, net_cache, *SLOW, envs=[{"NODE_CALLS_FILE": str(calls)}, None])
    try:
        before = calls.stat().st_size
        run = loadgen_node("--nodes", ",".join(n.address for n in nodes), "--token-file", token, *SLOW,
                           "--accuracy", "--scenario", "Offline", "--sample-timeout", "2",
                           tmp_path=tmp_path, cache=net_cache, wait=False)
        try:
            wait_for_calls(calls, before + 24)
            sh("ip", "link", "set", namespaces[0].host_if, "down")  # the wire is cut; the node lives on
            out, err = run.communicate(timeout=240)
        finally:
            if run.poll() is None:
                run.send_signal(signal.SIGKILL)
    finally:
        for node in nodes:
            node.stop()
    assert run.returncode == 0, err
    assert "accuracy  : accuracy=100.000%, good=60, total=60" in out
    assert "FAILED (no answer within 2 s (--sample-timeout))" in out
