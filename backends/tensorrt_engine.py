"""Build TensorRT engines from ONNX and keep them in an on-disk cache.

An engine only runs on the TensorRT version and GPU model it was built for,
and depends on every build setting, so the cache key is the SHA-256 of: the
ONNX file's SHA-256, the :class:`BuildSettings`, the TensorRT version, and the
GPU name and compute capability. Each entry is ``<cache>/<key>.engine`` plus a
``<key>.json`` sidecar holding the same facts; both are written to a
temporary name and renamed. An entry whose sidecar does not match, or that
TensorRT cannot deserialize, is rebuilt and overwritten, never used.

Precision, by what the installed TensorRT has (:func:`strongly_typed`):

* 8.x-10.x: builder flags (``BuilderFlag.FP16``, ``INT8``) on a network made
  from the ONNX file as it is; INT8 comes from the model's Q/DQ nodes or from
  a calibration table (``IBuilderConfig.int8_calibrator``).
* 11.x: networks are always strongly typed and those flags, the calibrators
  and ``EXPLICIT_BATCH`` are gone: each layer runs in the type of its tensors,
  so the backend builds from an fp16 copy of the model for ``fp16`` and from
  a Q/DQ model for ``int8`` (:class:`BuildSettings` ``onnx``).

Written against the TensorRT 8.4 to 11.x Python API (``OnnxParser``,
``IBuilderConfig.set_memory_pool_limit``, ``build_serialized_network``); every
name used here is checked against the real bindings of 8.6, 10.3, 10.16 and
11.4 by tests/backends/test_tensorrt_real_api.py. UNTESTED ON A REAL GPU: the
tests drive it with a fake ``tensorrt`` module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from sut.errors import BackendFailure, BackendUnavailable, ConfigError, ModelError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
#: bump when this module changes what it builds for the same settings
CACHE_FORMAT = 2
#: what the network is built from: the ONNX file as given, its fp16 copy, or a calibrated Q/DQ copy
ONNX_SOURCES = ("model", "fp16", "qdq")


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    """Everything besides the model, TensorRT and the GPU that changes the engine.

    ``profiles``: one ``(min, opt, max)`` batch triple per optimisation profile
    (empty for a model whose batch dimension is fixed in the ONNX file).
    ``strongly_typed``: TensorRT 11's networks (precision from tensor types,
    no precision flags). ``onnx``: what the network was parsed from (one of
    :data:`ONNX_SOURCES`).
    """

    precision: str = "fp32"
    profiles: tuple[tuple[int, int, int], ...] = ()
    workspace_bytes: int | None = None
    dla_core: int | None = None
    gpu_fallback: bool = True
    calibrated: bool = False  # int8 from an entropy calibration table (TensorRT <= 10, float models)
    qdq: bool = False  # the network holds Q/DQ nodes: INT8 is on whatever the precision
    strongly_typed: bool = False
    onnx: str = "model"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision '{self.precision}' for tensorrt; choose one of: "
                              f"{', '.join(PRECISIONS)}")
        if self.onnx not in ONNX_SOURCES:
            raise ValueError(f"onnx must be one of {ONNX_SOURCES}, not {self.onnx!r}")

    def builder_flags(self) -> list[str]:
        """The precision/DLA ``BuilderFlag`` names :func:`build_serialized` sets."""
        flags = []
        if not self.strongly_typed:
            if self.precision in ("fp16", "int8"):
                # int8: layers TensorRT cannot run in INT8 fall back to FP16 rather than FP32
                flags.append("FP16")
            if self.precision == "int8" or self.qdq:
                # explicit quantisation (Q/DQ nodes) needs the INT8 flag at any precision
                flags.append("INT8")
        if self.dla_core is not None and self.gpu_fallback:
            flags.append("GPU_FALLBACK")
        return flags

    def describe(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "profiles": [list(p) for p in self.profiles],
                "builder_flags": self.builder_flags()}


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

def network_has_qdq(trt, network) -> bool:
    """Whether a parsed TensorRT network has QUANTIZE/DEQUANTIZE layers (a weight-only
    DequantizeLinear counts): what decides the ``INT8`` builder flag on 8.x-10.x.

    Whether a model is *quantised* (runs int8 as it is, needs no calibration) is
    another question, answered for every backend by
    :func:`backends.int8_calibration.is_quantized` (activations quantised).
    """
    kinds = {trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE}
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


# --- what the installed TensorRT has (one place) ---------------------------------------

def strongly_typed(trt) -> bool:
    """True on TensorRT 11+: no precision builder flags; layers run in their tensors' types."""
    return not hasattr(trt.BuilderFlag, "FP16")


def has_entropy_calibrator(trt) -> bool:
    """Whether implicit INT8 calibration exists (TensorRT <= 10; deprecated from 10.1, gone in 11)."""
    return hasattr(trt, "IInt8EntropyCalibrator2") and hasattr(trt.IBuilderConfig, "int8_calibrator")


def check_supported(trt) -> None:
    """BackendUnavailable (one line) for a TensorRT older than this backend's API (8.4)."""
    needed = [(trt, "OnnxParser"), (trt, "Builder"), (trt, "IBuilderConfig")]
    missing = [name for owner, name in needed if not hasattr(owner, name)]
    if not missing:
        missing = [name for owner, name in ((trt.Builder, "build_serialized_network"),
                                             (trt.IBuilderConfig, "set_memory_pool_limit"))
                   if not hasattr(owner, name)]
    if missing:
        raise BackendUnavailable(
            f"TensorRT {getattr(trt, '__version__', '?')} is too old for the tensorrt backend (it lacks "
            f"{', '.join(missing)}; TensorRT 8.4 or newer is needed): pip install -e '.[tensorrt-cu12]', "
            "or on Jetson use JetPack 5 or newer")


def network_flags(trt) -> int:
    """``create_network`` flags: explicit batch before TensorRT 10 (the only mode from 10 on)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if flag is not None and trt_major(trt) < 10 and not strongly_typed(trt):
        return 1 << int(flag)
    return 0  # 11: always strongly typed (STRONGLY_TYPED is deprecated and ignored)


def parse_onnx(trt, builder, logger, model_path: str | os.PathLike):
    """Parse an ONNX file into a new explicit-batch network; ModelError on parser errors."""
    network = builder.create_network(network_flags(trt))
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
    if settings.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(settings.dla_core)
    for name in settings.builder_flags():
        config.set_flag(getattr(trt.BuilderFlag, name))
    if calibrator is not None:
        config.int8_calibrator = calibrator
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
