"""The SUT node (run.py serve): what it answers, what it refuses, and that it keeps serving."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import grpc
import numpy as np
import pytest

from sut.network import auth, protocol
from tests.conftest import DATA
from tests.sut.network.nodes import ROOT, NodeProcess

TOKEN = b"0123456789abcdef0123456789abcdef"


def call(address, method, payload, token=None):
    with grpc.insecure_channel(address) as channel:
        return channel.unary_unary(method)(payload, timeout=30, metadata=auth.metadata(token))


def describe(address, token=None):
    return json.loads(call(address, protocol.DESCRIBE, b"", token).decode())


def predict(address, indices, token=None, boot=None):
    info = describe(address, token)
    data = call(address, protocol.PREDICT, protocol.encode_request(indices), token)
    return protocol.decode_response(data, len(indices), info["response_width"], bytes.fromhex(info["boot_id"]))


def test_node_describes_itself_and_answers_rows(demo_nodes):
    info = describe(demo_nodes[0].address)
    assert info["protocol"] == protocol.VERSION and info["boot_id"] == demo_nodes[0].boot_id
    assert info["dataset"]["count"] == 60 and len(info["dataset"]["fingerprint"]) == 64
    assert info["backend"]["runtime"].startswith("onnxruntime") and info["host"]["python"]
    rows = predict(demo_nodes[0].address, [0, 1, 2, 59])
    assert rows.shape == (4, 1) and rows.dtype == np.float32


@pytest.mark.parametrize("payload, code, message", [
    (b"nonsense", grpc.StatusCode.INVALID_ARGUMENT, "shorter than its 12-byte header"),
    (b"XXXX" + protocol.encode_request([1])[4:], grpc.StatusCode.INVALID_ARGUMENT, "magic"),
    (protocol.encode_request([1, 2])[:-2], grpc.StatusCode.INVALID_ARGUMENT, "should be 20"),
    (protocol.encode_request([60]), grpc.StatusCode.INVALID_ARGUMENT, "out of range"),
    (b"\0" * (protocol.MAX_REQUEST_BYTES + 1), grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
])
def test_malformed_requests_get_an_error_and_the_node_keeps_serving(demo_nodes, payload, code, message):
    node = demo_nodes[1]
    with pytest.raises(grpc.RpcError) as err:
        call(node.address, protocol.PREDICT, payload)
    assert err.value.code() == code and message in (err.value.details() or "")
    assert node.alive()
    assert predict(node.address, [3]).shape == (1, 1)


def test_describe_takes_no_payload(demo_nodes):
    with pytest.raises(grpc.RpcError) as err:
        call(demo_nodes[0].address, protocol.DESCRIBE, b"{}")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_method_is_refused(demo_nodes):
    with pytest.raises(grpc.RpcError) as err:
        call(demo_nodes[0].address, "/%s/Exec" % protocol.SERVICE, b"")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.fixture(scope="module")
def token_node(tmp_path_factory, net_cache, demo_nodes):
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_bytes(TOKEN + b"\n")
    os.chmod(path, 0o600)
    node = NodeProcess("--token-file", str(path), cache=net_cache)
    yield node, path
    node.stop()


def test_token_is_required(token_node):
    node, _ = token_node
    for token in (None, b"0123456789abcdef0123456789abcdeX"):
        with pytest.raises(grpc.RpcError) as err:
            describe(node.address, token)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:
            call(node.address, protocol.PREDICT, protocol.encode_request([0]), token)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert predict(node.address, [0], TOKEN).shape == (1, 1)


def run_serve(*args, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "run.py"), "serve", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_serve_refuses_a_token_file_others_can_read(tmp_path):
    path = tmp_path / "token"
    path.write_bytes(TOKEN)
    os.chmod(path, 0o644)
    done = run_serve("--backend", "null", "--token-file", str(path))
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --token-file %s may be read by group or others (mode 0o644): run chmod 600 %s" % (path, path)


def test_serve_refuses_other_hosts_without_a_token():
    done = run_serve("--backend", "null", "--listen", "0.0.0.0:0")
    assert done.returncode == 2 and "--listen 0.0.0.0:0 accepts other hosts: pass --token-file" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_never_imports_loadgen(tmp_path):
    """A node starts with mlperf_loadgen made unimportable (what a device host without LoadGen has)."""
    code = ("import runpy, sys; sys.modules['mlperf_loadgen'] = None; "
            "sys.argv = ['run.py'] + sys.argv[1:]; runpy.run_path('run.py', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--backend", "null", "--dataset", "imagenet",
                             "--dataset-path", str(DATA / "imagenet-mini"), "--count", "8", "--cache-dir",
                             str(tmp_path), "--listen", "127.0.0.1:0", "--no-progress"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("serving "):
                break
        assert lines and lines[-1].startswith("serving "), "".join(lines)
    finally:
        proc.terminate()
        proc.wait(10)


def python38():
    path = os.environ.get("MLPERF_EDGE_PY38") or (sys.executable if sys.version_info[:2] == (3, 8) else None) \
        or shutil.which("python3.8")
    if not path:
        pytest.skip("no Python 3.8 with NumPy, Pillow, tomli and grpcio (set MLPERF_EDGE_PY38)")
    probe = subprocess.run([path, "-c", "import sys, numpy, PIL, grpc; assert sys.version_info[:2] == (3, 8)"],
                           capture_output=True, text=True)
    if probe.returncode:
        pytest.skip("%s is not a Python 3.8 with NumPy, Pillow, tomli and grpcio: %s" % (path, probe.stderr[-200:]))
    return path


def test_a_python38_node_serves_the_loadgen_node(tmp_path):
    """The device host's side on the oldest Python the harness supports, with no LoadGen installed."""
    from tests.sut.network.nodes import loadgen_node

    args = ["--backend", "null", "--dataset", "imagenet", "--dataset-path", str(DATA / "imagenet-mini"),
            "--count", "16"]
    node = NodeProcess(*args, python=python38(), cache=tmp_path / "cache38")
    try:
        assert describe(node.address)["host"]["python"].startswith("3.8.")
        done = loadgen_node("--nodes", node.address, *args, "--accuracy", tmp_path=tmp_path, cache=tmp_path / "cache")
        assert done.returncode == 0, done.stderr
        assert "accuracy  : accuracy=" in done.stdout and "total=16" in done.stdout
    finally:
        node.stop()
