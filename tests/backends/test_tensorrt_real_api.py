"""Contract tests: our TensorRT code and our fake against the real ``tensorrt`` bindings.

For each TensorRT version in :data:`tests.backends.real_bindings.TENSORRT`
(8.6, 10.3, the newest 10.x and the newest 11.x) the real bindings wheel is
installed into a cache and imported in a subprocess over NULL-returning
stand-in libraries (see real_bindings.py), and its classes and enums are
listed. Then:

* our backend is run through every build path (fp32/fp16/int8, Q/DQ and float
  models, both calibrators, DLA, several instances, dynamic and fixed batch,
  engine cache hits, ``--device 1`` from a worker thread) against the fake
  claiming that version, which records every attribute our code looks up or
  sets on it; each must exist in that version's real bindings;
* the fake claiming that version has no name, member or enum value that the
  real bindings lack;
* the version decisions in backends/tensorrt_engine.py (strongly typed or not,
  calibrators, explicit batch) give the expected answer on the real surface.

Skips with the reason when PyPI, gcc or binutils are not available.
"""

from __future__ import annotations

import threading
import types

import numpy as np
import pytest

from backends.base import BackendOptions
from sut.errors import ConfigError
from tests.backends import fake_tensorrt, real_bindings
from tests.conftest import need_module

need_module("onnx", "the fake TensorRT parser reads ONNX with it")
need_module("onnxruntime", "the fake TensorRT engine runs models with it")

from tests.backends.test_tensorrt import weight_only_model, write_model  # noqa: E402

#: the version the fake claims -> the real bindings it is checked against
#: (no 8.4/8.5 bindings are on PyPI: the fake's 8.4, bindings API only, is checked against 8.6)
CLAIMS = {"8.4.3": "8.6", "8.6.1": "8.6", "10.3.0": "10.3", "10.16.1.11": "10.16", "11.4.0.106": "11.4"}


def real(label: str) -> dict:
    return real_bindings.surface_or_skip("tensorrt", label)


def real_has(surface: dict, owner: str, name: str) -> bool:
    if owner == "":
        return name in surface["module"]
    if owner in surface["enums"]:
        return name in surface["enums"][owner]
    return name in surface["classes"].get(owner, {})


# --- running our code on the fake --------------------------------------------------------------

def _fp16_stand_in(model_path, model_sha256, cache_root):
    """Where onnxconverter-common is absent: an unconverted copy (only the TensorRT calls matter here)."""
    import shutil
    from pathlib import Path

    out = Path(cache_root) / f"{model_sha256[:24]}-stand-in-fp16.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, out)
    return out


def _runs(models, batches, has_calibrator):
    """(name, backend options, model, expected error) for every path through the backend."""
    entropy = None if has_calibrator else ConfigError
    return [
        ("fp32 dynamic, 2 instances", dict(precision="fp32", instances=2), models["plain"], None),
        ("fp32 cache hit", dict(precision="fp32", instances=2), models["plain"], None),
        ("fp16 dynamic", dict(precision="fp16", workspace_mb=64, opt_batch=2), models["plain"], None),
        ("fp16 fixed batch", dict(precision="fp16", max_batch_size=4), models["fixed"], None),
        ("fp16 no dynamic batch", dict(precision="fp16", dynamic_batch=False), models["plain"], None),
        ("int8 Q/DQ model", dict(precision="int8"), models["qdq"], None),
        ("Q/DQ model, precision unset", dict(), models["qdq"], None),
        ("fp16 Q/DQ model (refused: its Q/DQ layers run INT8)", dict(precision="fp16"), models["qdq"], ConfigError),
        ("fp16 weight-only int8 model", dict(precision="fp16"), models["weight_only"], None),
        ("int8 weight-only int8 model (calibrated)", dict(precision="int8", calibration_batches=batches),
         models["weight_only"], None),
        ("int8 float model (qdq calibrator)", dict(precision="int8", calibration_batches=batches),
         models["plain"], None),
        ("int8 float model (entropy calibrator)",
         dict(precision="int8", calibrator="entropy", calibration_batches=batches), models["plain"], entropy),
        ("int8 entropy, table reused",
         dict(precision="int8", calibrator="entropy", rebuild=True), models["plain"], entropy),
        ("fp16 on DLA", dict(precision="fp16", dla_core=0), models["plain"], None),
        ("int8 on DLA", dict(precision="int8", dla_core=1, gpu_fallback=False), models["qdq"], None),
        ("fp32 on device 1 from a worker thread", dict(precision="fp32", device="1"), models["plain"], None),
    ]


def _exercise(claim: str, tmp_path, monkeypatch) -> list[tuple[str, fake_tensorrt.FakeTrtState, object]]:
    """Run every path on a fresh fake per run; [(run name, TensorRT state, CUDA state)]."""
    from backends import onnx_fp16
    from backends.tensorrt import TensorRTBackend

    try:
        import onnxconverter_common  # noqa: F401
    except ImportError:
        monkeypatch.setattr(onnx_fp16, "fp16_model", _fp16_stand_in)
    models = {"plain": write_model(tmp_path / "plain.onnx"), "qdq": write_model(tmp_path / "qdq.onnx", qdq=True),
              "fixed": write_model(tmp_path / "fixed.onnx", batch=4),
              "weight_only": weight_only_model(tmp_path / "weight_only.onnx")}
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((4, 4)).astype(np.float32) for _ in range(2)]
    has_calibrator = fake_tensorrt.version_tuple(claim) < (11, 0)
    results = []
    for name, extra, model, error in _runs(models, batches, has_calibrator):
        trt_state = fake_tensorrt.FakeTrtState(version=claim)
        cuda_state = fake_tensorrt.FakeCudaState(devices=2)
        fake_tensorrt.install(monkeypatch, trt_state, cuda_state)
        common = {k: extra.pop(k) for k in ("precision", "instances", "device", "max_batch_size") if k in extra}
        common.setdefault("max_batch_size", 4)
        options = BackendOptions(extra={"engine_cache": str(tmp_path / "engines"), **extra},
                                 cache_dir=str(tmp_path / "cache"), **common)
        backend = TensorRTBackend(options)
        if error is not None:
            with pytest.raises(error):
                backend.load(model)
            results.append((name, trt_state, cuda_state))
            continue
        info = backend.load(model)
        x = np.ones((1, 4), np.float32)
        outputs = []
        for i in range(info.instances):
            worker = threading.Thread(target=lambda i=i: outputs.append(backend.predict(x, instance=i)),
                                      name=f"worker-{i}")
            worker.start()
            worker.join()
        assert len(outputs) == info.instances, f"{name}: a worker thread failed: {cuda_state.errors}"
        backend.describe()
        backend.close()
        results.append((name, trt_state, cuda_state))
    return results


@pytest.fixture(scope="module")
def exercised(tmp_path_factory):
    """claim -> the runs of :func:`_exercise` (made once per module)."""
    done = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for claim in CLAIMS:
            done[claim] = _exercise(claim, tmp_path_factory.mktemp(f"trt{claim}"), monkeypatch)
    return done


# --- the contract ------------------------------------------------------------------------------

@pytest.mark.parametrize("claim", list(CLAIMS))
def test_our_code_uses_only_names_the_real_version_has(claim, exercised):
    surface = real(CLAIMS[claim])
    problems = []
    for name, trt_state, _ in exercised[claim]:
        missing = sorted(f"{owner}.{attr}" if owner else attr for owner, attr in trt_state.recorder.reached
                         if not real_has(surface, owner, attr))
        if missing:
            problems.append(f"{name}: {', '.join(missing)}")
    assert not problems, (f"our code uses TensorRT names that real {surface['version']} lacks:\n"
                          + "\n".join(problems))


def test_the_recorder_sees_our_calls(exercised):
    """The contract above is only as good as the recording: it must see lookups on modules, classes,
    instances and enums, and attribute sets."""
    reached = set().union(*(state.recorder.reached for _, state, _ in exercised["10.3.0"]))
    assert {("", "Builder"), ("Logger", "WARNING"), ("BuilderFlag", "FP16"), ("BuilderFlag", "INT8"),
            ("IBuilderConfig", "set_flag"), ("IBuilderConfig", "int8_calibrator"), ("IBuilderConfig", "DLA_core"),
            ("Runtime", "DLA_core"), ("ICudaEngine", "num_io_tensors"), ("IExecutionContext", "execute_async_v3"),
            ("IOptimizationProfile", "set_shape"), ("", "IInt8EntropyCalibrator2")} <= reached
    old = set().union(*(state.recorder.reached for _, state, _ in exercised["8.4.3"]))
    assert {("ICudaEngine", "num_bindings"), ("IExecutionContext", "execute_async_v2")} <= old
    cuda = set().union(*(c.recorder.reached for _, _, c in exercised["10.3.0"]))
    assert {("", "cudaSetDevice"), ("", "cudaMemcpyAsync"), ("cudaMemcpyKind", "cudaMemcpyHostToDevice"),
            ("cudaDeviceProp", "name")} <= cuda


def test_tensorrt_11_builds_every_precision_strongly_typed(exercised):
    """With 11's bindings, each precision builds, typed by the network, from the right ONNX."""
    real("11.4")
    builds = {name: state.builds for name, state, _ in exercised["11.4.0.106"]}
    for name in ("fp32 dynamic, 2 instances", "fp16 dynamic", "int8 Q/DQ model", "int8 float model (qdq calibrator)",
                 "fp16 on DLA"):
        assert builds[name], f"{name}: nothing built"
        build = builds[name][-1]
        assert build["strongly_typed"] and build["flags"] <= {"GPU_FALLBACK"}, (name, build)
    assert builds["int8 float model (qdq calibrator)"][-1]["qdq"]
    assert builds["int8 Q/DQ model"][-1]["qdq"]
    try:
        import onnxconverter_common  # noqa: F401
    except ImportError:
        return
    assert builds["fp16 dynamic"][-1]["weights"] == {"HALF"}
    assert builds["fp32 dynamic, 2 instances"][-1]["weights"] == {"FLOAT"}


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_fake_has_nothing_the_real_version_lacks(claim, exercised):
    surface = real(CLAIMS[claim])
    extra = []
    for _, trt_state, _ in exercised[claim]:
        for cls in trt_state.recorder.classes:
            api = cls._api_name
            members = cls.__dict__.get("__members__")
            if members is not None:
                real_members = surface["enums"].get(api)
                if real_members is None:
                    extra.append(f"enum {api}")
                    continue
                extra += [f"{api}.{k} = {int(v)} (real: {real_members.get(k)})" for k, v in members.items()
                          if real_members.get(k) != int(v)]
                continue
            real_attrs = surface["classes"].get(api)
            if real_attrs is None:
                extra.append(f"class {api}")
                continue
            extra += [f"{api}.{n}" for n in dir(cls) if not n.startswith("_") and n not in real_attrs]
        for obj in trt_state.recorder.objects:
            api = type(obj)._api_name
            real_attrs = surface["classes"].get(api, {})
            extra += [f"{api}().{n}" for n in vars(obj) if not n.startswith("_") and n not in real_attrs]
    assert not sorted(set(extra)), f"the fake claiming {claim} has what real {surface['version']} lacks: " \
                                   f"{', '.join(sorted(set(extra)))}"


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_fake_module_names_exist_in_real(claim):
    surface = real(CLAIMS[claim])
    fake = fake_tensorrt.make_tensorrt(fake_tensorrt.FakeTrtState(version=claim), fake_tensorrt.FakeCudaState())
    names = [n for n in vars(fake) if not n.startswith("_")]
    assert "Builder" in names
    assert not [n for n in names if n not in surface["module"]]
    assert ("IInt8EntropyCalibrator2" in names) == ("IInt8EntropyCalibrator2" in surface["module"])


@pytest.mark.parametrize("claim", [c for c in CLAIMS if fake_tensorrt.version_tuple(c) < (11, 0)])
def test_calibrator_implements_the_real_interface(claim, tmp_path):
    """Our IInt8EntropyCalibrator2 subclass overrides real methods only, and all that TensorRT calls."""
    from backends.tensorrt_calibrator import make_calibrator

    surface = real(CLAIMS[claim])
    real_methods = set(surface["classes"]["IInt8EntropyCalibrator2"]) - {"__init__"}
    cuda_state = fake_tensorrt.FakeCudaState()
    trt = fake_tensorrt.make_tensorrt(fake_tensorrt.FakeTrtState(version=claim), cuda_state)
    from backends.cuda_memory import CudaPython

    calibrator = make_calibrator(trt, CudaPython(fake_tensorrt.make_cudart(cuda_state), 0), [], "x", np.float32,
                                 (4,), 2, tmp_path / "t.calib")
    ours = {n for n, v in type(calibrator).__dict__.items() if callable(v) and not n.startswith("_")} - {"release"}
    assert ours <= real_methods, ours - real_methods
    assert {"get_batch", "get_batch_size", "read_calibration_cache", "write_calibration_cache"} <= ours
    calibrator.release()


# --- our version decisions on the real surfaces ---------------------------------------------------

def _as_module(surface: dict) -> types.SimpleNamespace:
    """A stand-in with exactly the real surface's names (classes/enums as namespaces, members as ints)."""
    module = types.SimpleNamespace()
    for name, kind in surface["module"].items():
        if kind == "enum":
            setattr(module, name, types.SimpleNamespace(**surface["enums"][name]))
        elif kind == "class":
            setattr(module, name, types.SimpleNamespace(**{a: object() for a in surface["classes"][name]}))
        else:
            setattr(module, name, object())
    module.__version__ = surface["version"]
    return module


@pytest.mark.parametrize("label", list(real_bindings.TENSORRT))
def test_version_decisions_on_the_real_surface(label):
    from backends import tensorrt_engine as te

    trt = _as_module(real(label))
    eleven = label.startswith("11.")
    assert te.strongly_typed(trt) is eleven
    assert te.has_entropy_calibrator(trt) is not eleven
    te.check_supported(trt)  # not "too old"
    assert te.network_flags(trt) == (1 if label.startswith("8.") else 0)
    for precision in te.PRECISIONS:
        for qdq in (False, True):
            settings = te.BuildSettings(precision=precision, qdq=qdq, strongly_typed=eleven, dla_core=0)
            for flag in settings.builder_flags():
                assert hasattr(trt.BuilderFlag, flag), (label, precision, flag)
