"""Build TensorRT engines from ONNX and keep them in an on-disk cache.

An engine only runs on the TensorRT version and GPU model it was built for,
and depends on every build setting, so the cache key is the SHA-256 of: the
ONNX file's SHA-256, the :class:`BuildSettings`, the TensorRT version, and the
GPU name and compute capability. Each entry is ``<cache>/<key>.engine`` plus a
``<key>.json`` sidecar holding the same facts; both are written to a
temporary name and renamed. An entry whose sidecar does not match, or that
TensorRT cannot deserialize, is rebuilt and overwritten, never used.

Written against the TensorRT 8.6 to 10.x Python API (``OnnxParser``,
``IBuilderConfig.set_memory_pool_limit``, ``build_serialized_network``).
UNTESTED ON A REAL GPU: the tests drive it with a fake ``tensorrt`` module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from sut.errors import BackendFailure, ConfigError, ModelError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
#: bump when this module changes what it builds for the same settings
CACHE_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    """Everything besides the model, TensorRT and the GPU that changes the engine.

    ``profiles``: one ``(min, opt, max)`` batch triple per optimisation profile
    (empty for a model whose batch dimension is fixed in the ONNX file).
    """

    precision: str = "fp32"
    profiles: tuple[tuple[int, int, int], ...] = ()
    workspace_bytes: int | None = None
    dla_core: int | None = None
    gpu_fallback: bool = True
    calibrated: bool = False  # int8 from a calibration table (False for QDQ models)
    qdq: bool = False  # the model holds Q/DQ nodes: INT8 is on whatever the precision

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision '{self.precision}' for tensorrt; choose one of: "
                              f"{', '.join(PRECISIONS)}")

    def describe(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "profiles": [list(p) for p in self.profiles]}


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def engine_identity(model_sha256: str, settings: BuildSettings, trt_version: str,
                    gpu_name: str, compute_capability: tuple[int, int]) -> dict[str, Any]:
    """The facts an engine is tied to (stored in the sidecar, hashed into the key)."""
    return {
        "format": CACHE_FORMAT,
        "model_sha256": model_sha256,
        "settings": settings.describe(),
        "tensorrt": trt_version,
        "gpu": gpu_name,
        "compute_capability": f"{compute_capability[0]}.{compute_capability[1]}",
    }


def engine_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


class EngineCache:
    """``<root>/<key>.engine`` + ``<key>.json``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.engine", self.root / f"{key}.json"

    def read(self, key: str, identity: dict[str, Any]) -> bytes | None:
        """The serialized engine, or None when absent or its sidecar disagrees."""
        engine_path, sidecar_path = self.paths(key)
        if not engine_path.exists():
            return None
        try:
            sidecar = json.loads(sidecar_path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("tensorrt: engine %s has no readable sidecar (%s): rebuilding", engine_path, exc)
            return None
        if sidecar.get("identity") != identity:
            log.warning("tensorrt: engine %s was built for %s, not %s: rebuilding",
                        engine_path, sidecar.get("identity"), identity)
            return None
        data = engine_path.read_bytes()
        if len(data) != sidecar.get("size"):
            log.warning("tensorrt: engine %s is truncated: rebuilding", engine_path)
            return None
        return data

    def write(self, key: str, identity: dict[str, Any], data: bytes) -> Path:
        engine_path, sidecar_path = self.paths(key)
        self.root.mkdir(parents=True, exist_ok=True)
        suffix = f".tmp.{os.getpid()}"
        tmp_engine = engine_path.with_name(engine_path.name + suffix)
        tmp_sidecar = sidecar_path.with_name(sidecar_path.name + suffix)
        tmp_engine.write_bytes(data)
        tmp_sidecar.write_text(json.dumps({"identity": identity, "size": len(data)}, indent=1))
        # sidecar last: a reader that finds the new sidecar also finds the new engine
        os.replace(tmp_engine, engine_path)
        os.replace(tmp_sidecar, sidecar_path)
        return engine_path


# --- model inspection ---------------------------------------------------------------

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


def onnx_has_qdq(path: str | os.PathLike) -> bool | None:
    """True if the ONNX graph holds Q/DQ nodes; None when the ``onnx`` package is absent."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(path), load_external_data=False)
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            if node.op_type in QDQ_OPS:
                return True
            graphs.extend(attr.g for attr in node.attribute if attr.HasField("g"))
    return False


def network_has_qdq(trt, network) -> bool:
    """Whether a parsed TensorRT network has QUANTIZE/DEQUANTIZE layers."""
    kinds = {trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE}
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def parse_onnx(trt, builder, logger, model_path: str | os.PathLike):
    """Parse an ONNX file into a new explicit-batch network; ModelError on parser errors."""
    flags = 0
    if trt_major(trt) < 10:  # explicit batch is the only mode (and the default) from 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(model_path, "rb") as f:
        ok = parser.parse(f.read())
    if not ok:
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ModelError(f"TensorRT cannot parse {model_path}: {'; '.join(errors) or 'unknown error'}")
    return network, parser


def build_serialized(trt, builder, network, settings: BuildSettings, calibrator=None) -> bytes:
    """Configure and build; returns the serialized engine bytes."""
    config = builder.create_builder_config()
    if settings.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_bytes))
    if settings.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif settings.precision == "int8":
        # layers TensorRT cannot run in INT8 fall back to FP16 rather than FP32
        config.set_flag(trt.BuilderFlag.FP16)
        if calibrator is not None:
            config.int8_calibrator = calibrator
    if settings.precision == "int8" or settings.qdq:
        # explicit quantisation (Q/DQ nodes) needs the INT8 flag at any precision
        config.set_flag(trt.BuilderFlag.INT8)
    if settings.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(settings.dla_core)
        if settings.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if settings.profiles:
        inputs = [network.get_input(i) for i in range(network.num_inputs)]
        for index, (lo, opt, hi) in enumerate(settings.profiles):
            profile = builder.create_optimization_profile()
            for tensor in inputs:
                rest = tuple(tensor.shape)[1:]
                profile.set_shape(tensor.name, (lo, *rest), (opt, *rest), (hi, *rest))
            config.add_optimization_profile(profile)
            if index == 0 and calibrator is not None and hasattr(config, "set_calibration_profile"):
                config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendFailure(
            f"TensorRT failed to build the engine ({settings.describe()}); "
            "its log above says why"
        )
    return bytes(serialized)
