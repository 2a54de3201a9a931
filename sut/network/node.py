"""The SUT node: ``run.py serve`` loads a backend and its dataset and answers sample indices.

It prepares exactly what a local run prepares, with ``sut.session``'s own
functions (the same dataset scan, backend options, model check and
preprocessing cache) but never imports LoadGen (only ``session.execute``
imports ``sut.runner``, which does), so a device host needs only NumPy, its
runtime and grpcio. Each ``Predict`` call takes one
free model instance, runs the indices through the backend in batches the model
accepts and the dataset's ``postprocess``, the same steps as
``sut.scenarios.Predictor``, and answers the response rows.
"""

from __future__ import annotations

import logging
import os
import platform
import queue
import secrets
import statistics
import sys
import threading
import time
from concurrent import futures

import numpy as np

from datasets import cache
from profiles import Config
from sut import session  # without LoadGen: only session.execute() imports sut.runner
from sut.errors import BackendFailure, ConfigError
from sut.network import auth, fingerprint, protocol

log = logging.getLogger(__name__)

#: gRPC worker threads beyond one per model instance (Describe, refusals)
SPARE_THREADS = 2


class Model:
    """A loaded backend with its dataset's preprocessed samples."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        dataset, model = session.open_dataset(cfg)  # the same scan, model and checks as a local run
        if cfg.precision == "int8":
            raise ConfigError("a SUT node cannot calibrate int8 yet: calibrate once in a local run "
                              "(the backend caches the result) or serve the model's own precision")
        root = session.cache_root(cfg)
        self.dataset, self.model_path = dataset, model
        self.backend = session.create_backend(cfg, session.backend_options(cfg))
        self.backend.__enter__()
        try:
            self.info = self.backend.load(model)
            dataset.check_model(self.info)
            self.store = cache.prepare(dataset.sources, dataset.preprocessor(self.info.input), self.info.input,
                                       dataset.cache_key(self.info.input), root, cfg.preprocess_workers,
                                       cfg.progress)
        except BaseException:
            self.close()
            raise
        #: the store's rows as a plain array (a memory map stays one: nothing is read here)
        self._data = np.asarray(self.store.data)
        self.instances = max(1, self.info.instances)
        self._free: queue.Queue = queue.Queue()
        for i in range(self.instances):
            self._free.put(i)

    def __len__(self) -> int:
        return len(self.store)

    def predict(self, indices: np.ndarray) -> np.ndarray:
        """Responses (n, width) float32 for dataset ``indices``, on the next free instance."""
        instance = self._free.get()
        try:
            return self._predict(indices, instance)
        finally:
            self._free.put(instance)

    def _predict(self, indices, instance) -> np.ndarray:
        n, info, data = len(indices), self.info, self._data
        if n == 1:
            first = int(indices[0])
            outputs = self._checked(self.backend.predict(data[first:first + 1], instance), 1)
        elif info.max_batch_size == 1:  # one sample per inference: single-row views, no copy
            outputs = self._checked(self.backend.predict_each([data[i:i + 1] for i in indices.tolist()], instance), n)
        else:
            sizes = [n] if info.accepts_batch(n) else info.split_batch(n)
            parts, start = [], 0
            for size in sizes:
                parts.append(self._checked(self.backend.predict(self._rows(indices[start:start + size]), instance), size))
                start += size
            outputs = parts[0] if len(parts) == 1 else np.concatenate(parts)
        responses = self.dataset.postprocess(outputs, info)
        return np.ascontiguousarray(responses, dtype=protocol.ROW_DTYPE).reshape(n, -1)

    def _rows(self, indices: np.ndarray) -> np.ndarray:
        """The samples' rows: a view of the store for consecutive indices (the
        LoadGen node orders Offline work that way), else a gathered copy."""
        first, n = int(indices[0]), len(indices)
        if n == 1 or (int(indices[-1]) - first == n - 1 and (np.diff(indices) == 1).all()):
            return self._data[first:first + n]
        return self.store.rows(indices)

    @staticmethod
    def _checked(outputs, n):
        if len(outputs) != n:
            raise BackendFailure("backend returned %d results for a batch of %d samples" % (len(outputs), n))
        return outputs

    def warm_up(self, min_time_s: float = 0.3) -> dict:
        """Time single samples and full batches (the LoadGen node sets its expectations from them)."""
        def timed(indices):
            times, start = [], time.perf_counter()
            while len(times) < 3 or (time.perf_counter() - start < min_time_s and len(times) < 50):
                t0 = time.perf_counter()
                out = self._predict(indices, 0)
                times.append(time.perf_counter() - t0)
            return out, times

        first, times = timed(np.array([0]))
        latency = statistics.median(times)
        batch = max(1, min(self.info.max_batch_size, len(self.store)))
        _, batch_times = timed(np.arange(batch))
        return {"latency_s": latency, "samples_per_s": self.instances * batch / min(batch_times),
                "response_width": int(first.shape[1])}

    def close(self) -> None:
        self.backend.__exit__(None, None, None)


class Node:
    """The gRPC service around a :class:`Model`."""

    def __init__(self, model: Model, token: bytes | None, describe: dict):
        self.model, self.token = model, token
        self.boot_id = secrets.token_bytes(protocol.BOOT_ID_BYTES)
        self.description = dict(describe, boot_id=self.boot_id.hex(), protocol=protocol.VERSION)
        self.served = 0
        self.refused = 0
        self._lock = threading.Lock()

    def handlers(self):
        import grpc

        return grpc.method_handlers_generic_handler(protocol.SERVICE, {
            "Describe": grpc.unary_unary_rpc_method_handler(self.describe),
            "Predict": grpc.unary_unary_rpc_method_handler(self.predict),
        })

    def _authorised(self, context) -> None:
        import grpc

        if not auth.allowed(context.invocation_metadata(), self.token):
            with self._lock:
                self.refused += 1
            log.warning("refused a call from %s: wrong or missing token", context.peer())
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong or missing token (--token-file)")

    def describe(self, request: bytes, context) -> bytes:
        import grpc
        import json

        self._authorised(context)
        if request:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Describe takes an empty request")
        return json.dumps(self.description, default=str).encode()

    def predict(self, request: bytes, context) -> bytes:
        import grpc

        self._authorised(context)
        try:
            indices = protocol.decode_request(request, len(self.model))
        except protocol.MessageError as exc:
            log.warning("malformed request from %s: %s", context.peer(), exc)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            rows = self.model.predict(indices)
        except Exception as exc:  # the node keeps serving; the LoadGen node decides what to do
            log.error("backend failed: %s: %s", type(exc).__name__, exc)
            context.abort(grpc.StatusCode.INTERNAL, "backend failed: %s: %s" % (type(exc).__name__, exc))
        with self._lock:
            self.served += len(indices)
        return protocol.encode_response(self.boot_id, rows)


def describe(cfg: Config, model: Model, speed: dict) -> dict:
    """What a node reports about itself (recorded by the LoadGen node with the results)."""
    return {
        "profile": cfg.profile, "backend": model.backend.describe(), "model": model.info.describe(),
        "model_path": str(model.model_path), "model_fingerprint": fingerprint.model_fingerprint(model.model_path),
        "dataset": {"name": cfg.dataset, "path": cfg.dataset_path, "count": len(model),
                    "fingerprint": fingerprint.dataset_fingerprint(model.dataset)},
        "device": cfg.device, "instances": model.instances, "max_batch_size": model.info.max_batch_size,
        "speed": speed, "response_width": speed["response_width"],
        "host": {"name": platform.node(), "machine": platform.machine(), "platform": platform.platform(),
                 "processor": platform.processor(), "cpus": os.cpu_count(),
                 "python": sys.version.split()[0]},
    }


def start(node: Node, host: str, port: int, threads: int):
    """A started gRPC server for ``node``; returns (server, bound port)."""
    import grpc

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="node"),
        handlers=(node.handlers(),),
        options=[("grpc.max_receive_message_length", protocol.MAX_REQUEST_BYTES),
                 ("grpc.max_send_message_length", protocol.MAX_RESPONSE_BYTES),
                 ("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=threads * 16)
    bound = server.add_insecure_port(auth.join_address(host, port))
    if not bound:
        raise ConfigError("cannot listen on %s (address in use or not on this host): choose another --listen"
                          % auth.join_address(host, port))
    server.start()
    return server, bound
