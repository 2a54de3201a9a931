"""The LoadGen node's side: connect to SUT nodes and spread LoadGen's samples over them.

Work items ``(token, ids, indices)`` wait in one queue; every node has a few
sender threads (two per model instance it reports), each taking the next item
when it is free, so nodes are loaded by their free capacity. A sender that
finds more items waiting, fewer samples than the node's batch, sends them
together: one round trip per batch. Every item is registered with the
run's :class:`~sut.completion.Completer` before it is queued, so it is
completed exactly once: by the first valid answer, or empty when the run fails.

A node that fails a call (connection lost, no answer within the sample
timeout, an error status, an answer that does not validate, or an answer from
another boot of the node) is dropped for the rest of the run: its items go
back to the queue for the other nodes (``redispatch``) or the run fails
naming it (``fail``, and always when no node is left).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

import numpy as np

from sut.completion import Completer
from sut.errors import BackendFailure, BackendUnavailable, ConfigError
from sut.network import auth, protocol

log = logging.getLogger(__name__)

#: senders per model instance a node reports (one waits on the network while another computes)
SENDERS_PER_INSTANCE = 2
#: the most samples one request carries
MAX_ITEM = 1024
CONNECT_TIMEOUT_S = 10.0


class RemoteNode:
    """One connected SUT node (a persistent gRPC channel) and what it said about itself."""

    def __init__(self, address: str, token: bytes | None, connect_timeout_s: float = CONNECT_TIMEOUT_S):
        import grpc

        auth.parse_address(address)
        self.address = address
        self.metadata = auth.metadata(token)
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", protocol.MAX_RESPONSE_BYTES),
            ("grpc.max_send_message_length", protocol.MAX_REQUEST_BYTES),
            ("grpc.enable_retries", 0)])
        self._describe = self.channel.unary_unary(protocol.DESCRIBE)
        self._predict = self.channel.unary_unary(protocol.PREDICT)
        self.dead = False
        self.reason: str | None = None
        self.samples = 0
        self.requests = 0
        try:
            grpc.channel_ready_future(self.channel).result(timeout=connect_timeout_s)
            answer = self._describe(b"", timeout=connect_timeout_s, metadata=self.metadata)
        except grpc.FutureTimeoutError:
            self.close()
            raise BackendUnavailable("node %s did not answer within %g s: is run.py serve running there "
                                     "and the port open?" % (address, connect_timeout_s)) from None
        except grpc.RpcError as exc:
            self.close()
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise ConfigError("node %s refused this LoadGen node: %s; pass the node's --token-file"
                                  % (address, exc.details())) from None
            raise BackendUnavailable("node %s: %s: %s" % (address, exc.code().name, exc.details())) from None
        try:
            self.info = json.loads(answer.decode())
            self.boot_id = bytes.fromhex(self.info["boot_id"])
            self.width = int(self.info["response_width"])
            self.instances = max(1, int(self.info["instances"]))
            self.max_batch = max(1, int(self.info["max_batch_size"]))
            self.count = int(self.info["dataset"]["count"])
            float(self.info["speed"]["samples_per_s"])
            for key, kind in (("host", dict), ("dataset", dict), ("backend", dict), ("model_fingerprint", str)):
                if not isinstance(self.info.get(key), kind):
                    raise ValueError("no valid '%s'" % key)
            self.info["host"].setdefault("name", "?")
            if self.info.get("protocol") != protocol.VERSION or len(self.boot_id) != protocol.BOOT_ID_BYTES \
                    or not 1 <= self.width <= protocol.MAX_WIDTH:
                raise ValueError("protocol %r" % self.info.get("protocol"))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            self.close()
            raise BackendUnavailable("node %s is not a SUT node of this version (%s)" % (address, exc)) from None

    def predict(self, indices, timeout_s: float) -> np.ndarray:
        """(n, width) rows for ``indices``; grpc.RpcError or protocol.MessageError on failure."""
        data = self._predict(protocol.encode_request(indices), timeout=timeout_s, metadata=self.metadata)
        return protocol.decode_response(data, len(indices), self.width, self.boot_id)

    def record(self) -> dict:
        """What the results say about this node."""
        return {"address": self.address, "samples": self.samples, "requests": self.requests,
                "failed": self.reason, **{k: self.info.get(k) for k in (
                    "boot_id", "host", "backend", "model_fingerprint", "dataset", "device", "instances",
                    "max_batch_size", "speed", "model_path")}}

    def close(self) -> None:
        self.channel.close()


class Dispatcher:
    """Feeds queued work items to the nodes' sender threads (see the module docstring)."""

    def __init__(self, nodes: list, completer: Completer, on_failure: str, timeout_s: float):
        if on_failure not in ("redispatch", "fail"):
            raise ConfigError("--on-node-failure must be redispatch or fail, got '%s'" % on_failure)
        self.nodes, self.completer = nodes, completer
        self.on_failure, self.timeout_s = on_failure, timeout_s
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.redispatched = 0
        self.events: list = []
        self._lock = threading.Lock()
        self._threads = []
        for node in nodes:
            for k in range(node.instances * SENDERS_PER_INSTANCE):
                t = threading.Thread(target=self._send_loop, args=(node,), daemon=True,
                                     name="send-%s-%d" % (node.address, k))
                t.start()
                self._threads.append(t)

    @property
    def slots(self) -> int:
        return len(self._threads)

    def item_size(self, n: int) -> int:
        """Samples per queue item for a query of ``n``: several items per sender, whole batches, at most MAX_ITEM."""
        batch = max(node.max_batch for node in self.nodes)
        per_sender = max(1, n // (self.slots * 4))
        return max(1, min(MAX_ITEM, max(batch, per_sender // batch * batch)))

    def submit(self, ids: list, indices: list) -> None:
        token = self.completer.start(ids)
        if token is not None:
            self.queue.put((token, ids, indices))

    def _send_loop(self, node: RemoteNode) -> None:
        get, completer = self.queue.get, self.completer
        while True:
            item = get()
            if item is None:
                return
            if node.dead:
                self.queue.put(item)  # for a live node's sender
                return
            items = [item]
            samples = len(item[2])
            while samples < node.max_batch:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.queue.put(None)
                    break
                items.append(more)
                samples += len(more[2])
            if completer.failed.is_set():
                for token, _, _ in items:
                    completer.discard(token)
                continue
            indices = items[0][2] if len(items) == 1 else [i for _, _, part in items for i in part]
            try:
                rows = node.predict(indices, self.timeout_s)
            except Exception as exc:
                self._node_failed(node, exc, items)
                return
            node.requests += 1
            node.samples += len(indices)
            start = 0
            for token, ids, _ in items:
                completer.finish(token, rows[start:start + len(ids)])
                start += len(ids)

    def _node_failed(self, node: RemoteNode, exc: BaseException, items: list) -> None:
        reason = describe_failure(exc, self.timeout_s)
        with self._lock:
            first = not node.dead
            if first:
                node.dead, node.reason = True, reason
                self.events.append("%.3f node %s failed: %s" % (time.time(), node.address, reason))
            alive = [n.address for n in self.nodes if not n.dead]
        if first:
            log.error("node %s failed: %s", node.address, reason)
        if self.on_failure == "fail" or not alive:
            why = "" if self.on_failure == "fail" else "; no node is left to take its samples"
            self.completer.fail(BackendFailure("node %s failed: %s%s" % (node.address, node.reason, why)))
            for token, _, _ in items:
                self.completer.discard(token)
            return
        with self._lock:
            self.redispatched += sum(len(ids) for _, ids, _ in items)
        log.warning("re-sending %d sample(s) of node %s to %s", sum(len(ids) for _, ids, _ in items),
                    node.address, ", ".join(alive))
        for item in items:
            self.queue.put(item)

    def close(self, timeout_s: float = 2.0) -> None:
        for _ in self._threads:
            self.queue.put(None)
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))


def describe_failure(exc: BaseException, timeout_s: float) -> str:
    """One line for what went wrong with a call."""
    import grpc

    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        code = exc.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return "no answer within %g s (--sample-timeout)" % timeout_s
        if code == grpc.StatusCode.UNAVAILABLE:
            return "connection lost (%s)" % (exc.details() or "unavailable")
        return "%s: %s" % (code.name, exc.details())
    if isinstance(exc, protocol.MessageError):
        return "invalid answer: %s" % exc
    return "%s: %s" % (type(exc).__name__, exc)
