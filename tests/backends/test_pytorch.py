"""PyTorch backend, for real on the CPU: the keyword-spotting model converted inside the test
(SavedModel -> tf2onnx -> backends.onnx_to_torch -> TorchScript and torch.export; cached under the
session's temporary directory, never committed), scored through run.py against the reference figures."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

import backends
from backends.base import BackendOptions
from sut.errors import BackendUnavailable, ConfigError, ModelError
from tests.conftest import need_module, shared_path
from tests.helpers import run_cli, run_dirs

SPEECH = ("data", "speech-commands-mini")
#: run.py --accuracy on all 300 clips, by the file the model was converted from (torch 2.13.0 CPU;
#: ONNX Runtime 1.32 computes the same from the same ONNX files)
SAVEDMODEL_FIGURE = "accuracy=93.000%, good=279, total=300"
TFLITE_FIGURE = "accuracy=92.000%, good=276, total=300"


@pytest.fixture(scope="module")
def kws(kws_converted):
    """{"ts": TorchScript from the SavedModel, "pt2": torch.export of it, "tflite": TorchScript from
    kws_ref_model_float32.tflite}, converted once per session in a subprocess (TensorFlow stays out
    of the test process; tests/backends/conftest.py: kws_converted)."""
    need_module("torch", "pip install torch==2.13.0 (the CPU build)")
    for module in ("onnx", "tensorflow", "tf2onnx"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"converting the KWS model to PyTorch needs {module} (pip install -e '.[test,tensorflow]')")
    shared_path("models", "kws", "kws_ref_model")
    shared_path("models", "kws", "kws_ref_model_float32.tflite")
    assert all(name in kws_converted for name in ("ts", "pt2", "tflite")), kws_converted["stderr"][-3000:]
    return {name: kws_converted[name] for name in ("ts", "pt2", "tflite")}


def make(**options):
    return backends.create("pytorch", BackendOptions(**options))


def load(path, **options):
    backend = make(**options)
    backend.load(str(path) if path else None)
    return backend


def mfcc_batch(n=4, seed=0):
    return np.random.default_rng(seed).normal(0, 20, (n, 49, 10, 1)).astype(np.float32)


# --- accuracy, through run.py ----------------------------------------------------------------

def accuracy(model, tmp_path, *extra):
    proc = run_cli("--profile", "kws_pytorch", "--model", model, "--dataset-path", str(shared_path(*SPEECH)),
                   "--accuracy", "--threads", "1", *extra, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    record = json.loads((run_dirs(tmp_path)[-1] / "config.json").read_text())
    return proc.stdout, record["backend"]


def test_kws_from_the_savedmodel_scores_tensorflows_figure(kws, tmp_path):
    """TorchScript through run.py; the .pt2 program computes the same (test_torchscript_and_export_agree)."""
    import torch

    out, record = accuracy(kws["ts"], tmp_path)
    assert SAVEDMODEL_FIGURE in out
    assert record["runtime"] == f"torch {torch.__version__}" and record["device"] == "cpu"
    assert record["precision"] == "float32 (the model as saved)"


def test_kws_from_the_float_tflite_computes_in_float32(kws, tmp_path):
    """92.000%, not LiteRT's 92.333%: the .tflite keeps int8 convolution weights, which the conversion
    dequantises; LiteRT's XNNPACK also quantises those convolutions' activations (277/300)."""
    out, _ = accuracy(kws["tflite"], tmp_path, "--precision", "fp32")
    assert TFLITE_FIGURE in out


# --- the backend in-process ------------------------------------------------------------------

def test_model_info_from_the_file(kws):
    with load(kws["ts"], max_batch_size=8, threads=1) as backend:
        info = backend.info
        assert (info.input.shape, info.input.dtype, info.input.layout) == ((49, 10, 1), np.float32, None)
        assert (info.output.shape, info.output.dtype) == ((12,), np.float32)
        assert (info.max_batch_size, info.batch_sizes, info.instances) == (8, None, 1)
        record = backend.describe()
        assert record["threads"] == 1 and record["weights"] == "as saved in the model file"
        assert record["device_name"]


def test_torchscript_and_export_agree(kws):
    x = mfcc_batch()
    with load(kws["ts"], max_batch_size=4) as ts, load(kws["pt2"], max_batch_size=4) as pt2:
        assert pt2.info.input.shape == (49, 10, 1) and pt2.info.max_batch_size == 4
        np.testing.assert_array_equal(ts.predict(x), pt2.predict(x))


def test_instances_agree(kws):
    from tests.backends.concurrency import predict_per_instance

    batches = [mfcc_batch(1, seed) for seed in range(2)]
    with load(kws["ts"], threads=1) as single, load(kws["ts"], instances=2, threads=1) as multi:
        expected = [single.predict(b, 0) for b in batches]
        for got, want in zip(predict_per_instance(multi, batches, 2, repeats=3), expected):
            np.testing.assert_array_equal(got, want)


def cpu_can(dtype):
    import torch

    return (torch.ops.mkldnn._is_mkldnn_bf16_supported() if dtype == "bf16"
            else torch.ops.mkldnn._is_mkldnn_fp16_supported())


@pytest.mark.parametrize("precision", ["bf16", "amp"])
def test_lower_precisions_say_what_ran(kws, precision):
    if not cpu_can("bf16"):
        with pytest.raises(ConfigError, match=f"cannot apply precision {precision}.*no bf16 support"):
            load(kws["ts"], precision=precision)
        return
    x = mfcc_batch(8)
    with load(kws["ts"]) as fp32, load(kws["ts"], precision=precision) as low:
        assert low.info.output.dtype == np.float32
        want, got = fp32.predict(x), low.predict(x)
        assert got.dtype == np.float32
        assert not np.array_equal(got, want)          # bfloat16 did run
        np.testing.assert_allclose(got, want, atol=0.05)
        applied = low.describe()["precision"]
    assert applied.startswith({"bf16": "bf16 (model weights and inputs bfloat16",
                               "amp": "amp (torch.autocast cpu bf16"}[precision])


def test_fp16_on_a_cpu_only_where_onednn_computes_it(kws):
    if cpu_can("fp16"):
        with load(kws["ts"], precision="fp16") as backend:
            assert backend.describe()["precision"].startswith("fp16")
    else:
        with pytest.raises(ConfigError, match="cannot apply precision fp16 on cpu: .*no fp16 support"):
            make(precision="fp16").check_precision("fp16", kws["ts"])


def test_int8_and_unknown_precisions_refused():
    need_module("torch")
    with pytest.raises(ConfigError, match="cannot apply precision int8.*fp32, fp16, bf16, amp"):
        make().check_precision("int8")
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        make().check_precision("fp8")


# --- a factory plus a state dict -------------------------------------------------------------

def tiny_net(classes: int = 12):
    """A module factory for the tests: MFCC block -> linear classifier."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(490, classes))


def test_factory_with_a_state_dict(tmp_path):
    torch = need_module("torch")
    net = tiny_net()
    with torch.no_grad():
        net[1].weight.fill_(0.01)
    path = tmp_path / "weights.pth"
    torch.save(net.state_dict(), path)
    opts = {"factory": "tests.backends.test_pytorch:tiny_net", "input_shape": [49, 10, 1]}
    x = mfcc_batch(2)
    with load(path, extra=opts, max_batch_size=2) as backend:
        with torch.inference_mode():
            want = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(backend.predict(x), want, rtol=1e-6)
        assert backend.describe()["weights"] == f"{path} into tests.backends.test_pytorch:tiny_net"
    with load(None, extra=opts) as backend:
        assert "no state dict given" in backend.describe()["weights"]
    with pytest.raises(ModelError, match="cannot load .* as a state dict"):
        load(path, extra={**opts, "factory_kwargs": {"classes": 3}})


# --- errors ------------------------------------------------------------------------------------

def test_missing_torch_is_backend_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(BackendUnavailable, match=r"'torch'.*pip install -e '\.\[pytorch\]'"):
        backends.create("pytorch")


def test_cuda_on_a_cpu_only_torch():
    torch = need_module("torch")
    if torch.version.cuda:
        pytest.skip(f"torch {torch.__version__} is a CUDA build")
    with pytest.raises(BackendUnavailable, match="needs a CUDA build of torch.*CPU-only"):
        make(device="cuda:0").check_precision("bf16")
    with pytest.raises(ConfigError, match="not one of cpu, cuda, cuda:N"):
        load(None, device="tpu")


def test_files_torch_cannot_load(tmp_path):
    need_module("torch")
    bad = tmp_path / "notes.pt"
    bad.write_text("not a model\n")
    with pytest.raises(ModelError, match=r"cannot load .*notes\.pt as TorchScript"):
        load(bad)
    (tmp_path / "notes.pt2").write_text("not a model\n")
    with pytest.raises(ModelError, match=r"notes\.pt2 as a torch.export program"):
        load(tmp_path / "notes.pt2")
    with pytest.raises(ModelError, match="not found"):
        load(tmp_path / "absent.pt")
    with pytest.raises(ModelError, match=r"expected \.pt, \.ts, \.pt2"):
        load(shared_path("models", "kws", "kws_ref_model.tflite"))


def test_input_that_does_not_fit(kws, tmp_path):
    with pytest.raises(ModelError, match=r"says input_shape=\[49, 10, 1\].*options say \[3, 224, 224\]"):
        load(kws["ts"], extra={"input_shape": [3, 224, 224]})
    torch = need_module("torch")
    plain = tmp_path / "plain.pt"  # TorchScript without the description inside
    torch.jit.save(torch.jit.trace(tiny_net(), torch.zeros(1, 49, 10, 1)), str(plain))
    with pytest.raises(ModelError, match="cannot tell the input shape"):
        load(plain)
    with pytest.raises(ModelError, match=r"does not run on the input float32\[1, 3, 8, 8\]"):
        load(plain, extra={"input_shape": [3, 8, 8]})
    # the dataset refuses a model of another input, through the CLI: one line, exit 3
    proc = run_cli("--profile", "kws_pytorch", "--model", str(plain), "--backend-option", "input_shape=[7, 70]",
                   "--dataset-path", str(shared_path(*SPEECH)), "--accuracy", "--count", "4", tmp_path=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")


def test_options_checked(kws):
    with pytest.raises(ConfigError, match="no option fast"):
        load(kws["ts"], extra={"fast": True})
    with pytest.raises(ConfigError, match="cudnn_benchmark needs a CUDA device"):
        load(kws["ts"], extra={"cudnn_benchmark": True})
    with pytest.raises(ConfigError, match="compile takes Python modules"):
        load(kws["ts"], extra={"compile": True})


# --- LoadGen scenarios, quick --------------------------------------------------------------

@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Server", "Offline"])
def test_scenarios_valid_quick(kws, tmp_path, scenario):
    # Server: a low target with a loose bound and enough queries for LoadGen's early stopping, so a loaded
    # 2-core machine stays VALID (this tests the backend under LoadGen, not the machine's speed)
    extra = (["--target-qps", "100", "--min-query-count", "500", "--target-latency-ms", "2000"]
             if scenario == "Server" else [])
    proc = run_cli("--profile", "kws_pytorch", "--model", kws["ts"], "--dataset-path", str(shared_path(*SPEECH)),
                   "--scenario", scenario, "--mode", "performance", "--quick", "--count", "16", "--threads", "1",
                   *extra, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "result    : VALID" in proc.stdout, proc.stdout[-2000:]


def test_precision_sweep_says_what_ran(kws, tmp_path):
    if not cpu_can("bf16"):
        pytest.skip("this CPU has no bf16 support in oneDNN: bf16 and amp are refused (tested above)")
    proc = run_cli("--profile", "kws_pytorch", "--model", kws["ts"], "--dataset-path", str(shared_path(*SPEECH)),
                   "--precision", "fp32,bf16,amp", "--accuracy", "--count", "24", "--threads", "1",
                   tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "fp32: ran fp32;" in proc.stdout
    assert "bf16: ran bf16 (model weights and inputs bfloat16, outputs float32);" in proc.stdout
    assert "amp: ran amp (torch.autocast cpu bf16:" in proc.stdout
