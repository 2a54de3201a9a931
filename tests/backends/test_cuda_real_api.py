"""Contract tests: backends/cuda_memory.py and our fake CUDA runtime against real cuda-python 12 and 13.

``cuda-bindings`` 12.x and 13.x are installed into a cache (see
real_bindings.py) and listed in a subprocess; they import without a GPU or a
driver. Our CUDA layer is run against the fake runtime claiming each version
(which records every name our code looks up); each name must exist in the
real module of that version, and the fake must have nothing the real one
lacks. Then our layer runs on each real module on this GPU-less machine and
must report the missing driver in one line.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from sut.errors import BackendFailure, BackendUnavailable
from tests.backends import fake_tensorrt, real_bindings
from tests.conftest import ROOT

#: label -> (the cuda-python version the fake claims, its cudaRuntimeGetVersion)
CLAIMS = {"12": ("12.9.10", 12090), "13": ("13.5.0", 13050)}


def real(label: str) -> dict:
    return real_bindings.surface_or_skip("cuda", label)


def _exercise(label: str, monkeypatch) -> fake_tensorrt.FakeCudaState:
    """Every operation of CudaPython, its error paths included, on the fake claiming ``label``."""
    from backends.cuda_memory import open_cuda

    version, runtime = CLAIMS[label]
    state = fake_tensorrt.FakeCudaState(devices=2, version=version, runtime=runtime, driver=runtime)
    fake_tensorrt.install(monkeypatch, cuda_state=state, with_tensorrt=False)
    cuda = open_cuda(1)
    assert cuda.device_count() == 2 and cuda.device_name() == "Fake GPU A100" and cuda.compute_capability() == (8, 0)
    host = cuda.host_empty((2, 3), np.float32)
    back = cuda.host_empty((2, 3), np.float32)
    host.array[:] = np.arange(6).reshape(2, 3)
    stream = cuda.stream_create()
    ptr = cuda.malloc(host.nbytes)

    def round_trip():
        with cuda.active():
            cuda.copy_to_device_async(ptr, host.array, stream)
            cuda.copy_to_host_async(back.array, ptr, stream)
            cuda.stream_sync(stream)

    worker = threading.Thread(target=round_trip)
    worker.start()
    worker.join()
    np.testing.assert_array_equal(back.array, host.array)
    assert not state.errors, state.errors
    cuda.stream_handle(stream)
    cuda.free(ptr)
    with pytest.raises(BackendFailure, match="cudaFree failed: cudaErrorInvalidValue"):
        cuda.free(ptr)
    cuda.host_free(host)
    cuda.host_free(back)
    cuda.stream_destroy(stream)
    state.driver = runtime - 1000  # one CUDA major older: refused with both versions named
    with pytest.raises(BackendUnavailable, match="driver supports CUDA"):
        open_cuda(0)
    state.driver = 0
    with pytest.raises(BackendUnavailable, match="no NVIDIA driver"):
        open_cuda(0)
    return state


@pytest.fixture(scope="module")
def exercised():
    with pytest.MonkeyPatch.context() as monkeypatch:
        return {label: _exercise(label, monkeypatch) for label in CLAIMS}


def _has(surface, owner, name):
    if owner == "":
        return name in surface["module"]
    if owner in surface["enums"]:
        return name in surface["enums"][owner]
    return name in surface["classes"].get(owner, {})


@pytest.mark.parametrize("label", list(CLAIMS))
def test_our_cuda_layer_uses_only_real_names(label, exercised):
    surface = real(label)
    reached = exercised[label].recorder.reached
    assert ("", "cudaMemcpyAsync") in reached and ("cudaMemcpyKind", "cudaMemcpyDeviceToHost") in reached
    missing = sorted(f"{o}.{a}" if o else a for o, a in reached if not _has(surface, o, a))
    assert not missing, f"cuda_memory.py uses names cuda-python {surface['version']} lacks: {missing}"


@pytest.mark.parametrize("label", list(CLAIMS))
def test_fake_cuda_runtime_has_nothing_real_lacks(label, exercised):
    surface = real(label)
    state = exercised[label]
    extra = []
    module = fake_tensorrt.make_cudart(fake_tensorrt.FakeCudaState())
    extra += [n for n in vars(module) if not n.startswith("_") and n not in surface["module"]]
    for cls in state.recorder.classes:
        api = cls._api_name
        members = cls.__dict__.get("__members__")
        if members is not None:
            real_members = surface["enums"].get(api, {})
            extra += [f"{api}.{k}={int(v)} (real: {real_members.get(k)})" for k, v in members.items()
                      if real_members.get(k) != int(v)]
        else:
            real_attrs = surface["classes"].get(api)
            if real_attrs is None:
                extra.append(f"class {api}")
            else:
                extra += [f"{api}.{n}" for n in dir(cls) if not n.startswith("_") and n not in real_attrs]
    for obj in state.recorder.objects:
        api = type(obj)._api_name
        extra += [f"{api}().{n}" for n in vars(obj)
                  if not n.startswith("_") and n not in surface["classes"].get(api, {})]
    assert not extra, f"the fake claiming cuda-python {label} has what {surface['version']} lacks: {sorted(set(extra))}"


@pytest.mark.parametrize("label", list(CLAIMS))
def test_real_bindings_without_a_driver_are_one_line(label):
    """Our layer on the real module: no driver here, so BackendUnavailable naming it, exit code 5."""
    surface = real(label)
    assert surface["runtime_version"] // 1000 == int(label)
    assert surface["driver_version"] == 0 and surface["device_count_error"] == "cudaErrorInsufficientDriver"
    target = real_bindings.install(real_bindings.CUDA[label], deps=True)
    code = (f"import sys; sys.path[:0] = [{str(target)!r}, {str(ROOT)!r}]\n"
            "from backends.cuda_memory import open_cuda\n"
            "from sut.errors import BackendUnavailable\n"
            "import cuda.bindings\n"
            "try:\n    open_cuda(0)\nexcept BackendUnavailable as exc:\n"
            "    print(cuda.bindings.__version__, exc.exit_code, exc, sep='|')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"})
    version, exit_code, message = proc.stdout.strip().split("|")
    assert version == surface["version"] and exit_code == "5", proc.stderr
    assert message == ("no usable CUDA GPU: cudaGetDeviceCount failed with cudaErrorInsufficientDriver "
                       "(no NVIDIA driver on this machine)")
