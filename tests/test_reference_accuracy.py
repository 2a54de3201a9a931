"""``run.py --accuracy`` prints the reference figures of ../shared/README.md
exactly, through the real LoadGen and the real runtimes."""

import re

import pytest

from tests.conftest import need_module, runtime_figure, shared_path
from tests.helpers import run_cli

MOBILENET = "models/mobilenet"

CASES = [
    ("mobilenet_tflite", f"{MOBILENET}/mobilenet_v1_1.0_224_quant.tflite", "data/imagenet-mini",
     "accuracy=77.692%, good=202, total=260", "ai_edge_litert"),
    ("mobilenet_onnxruntime", f"{MOBILENET}/mobilenet_v1_1.0_224_quant_qdq_nchw.onnx", "data/imagenet-mini",
     "accuracy=77.692%, good=202, total=260", "onnxruntime"),
    ("mobilenet_tflite", f"{MOBILENET}/mobilenet_v1_0.25_128_quant.tflite", "data/imagenet-mini",
     "accuracy=56.538%, good=147, total=260", "ai_edge_litert"),
    ("mobilenet_tflite", f"{MOBILENET}/mobilenet_v1_1.0_224_quant.tflite", "data/imagenet-fullres-mini",
     "accuracy=73.333%, good=22, total=30", "ai_edge_litert"),
    ("kws_tflite", "models/kws/kws_ref_model.tflite", "data/speech-commands-mini",
     "accuracy=92.333%, good=277, total=300", "ai_edge_litert"),
    ("kws_tflite", "models/kws/kws_ref_model_float32.tflite", "data/speech-commands-mini",
     "accuracy=92.333%, good=277, total=300", "ai_edge_litert"),
    ("kws_tf", "models/kws/kws_ref_model", "data/speech-commands-mini",
     "accuracy=93.000%, good=279, total=300", "tensorflow"),
    ("mobilenet_openvino", f"{MOBILENET}/openvino_ir/mobilenet_v1_0.25_128_quant.xml", "data/imagenet-mini",
     "accuracy=57.308%, good=149, total=260", "openvino"),
    ("mobilenet_openvino", f"{MOBILENET}/mobilenet_v1_0.25_128_quant.tflite", "data/imagenet-mini",
     "accuracy=57.308%, good=149, total=260", "openvino"),
    ("mobilenet_openvino", f"{MOBILENET}/mobilenet_v1_1.0_224_quant.tflite", "data/imagenet-mini",
     "accuracy=78.077%, good=203, total=260", "openvino"),
    ("mobilenet_openvino", f"{MOBILENET}/mobilenet_v1_1.0_224_quant.tflite", "data/imagenet-fullres-mini",
     "accuracy=73.333%, good=22, total=30", "openvino"),
]


@pytest.fixture(scope="module")
def accuracy_runs(request, tmp_path_factory):
    """``run.py --accuracy`` of the selected cases, two at a time (each is one single-threaded runtime:
    the figures do not depend on what else runs, and two share the machine's two cores); every run has
    finished before the module's timed runs (test_every_scenario_valid_with_real_runtimes) start.
    (profile, model, data) -> CompletedProcess; a case whose runtime or files are missing is not run
    (its test skips for the reason)."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import SHARED

    selected = [item.callspec.params for item in request.session.items
                if getattr(item, "originalname", None) == "test_accuracy_matches_reference"
                and item.module is request.module]
    keys = []
    for case in selected:
        key = (case["profile"], case["model"], case["data"])
        try:
            need_module(case["runtime"])
        except pytest.skip.Exception:
            continue
        if key not in keys and SHARED.joinpath(key[1]).exists() and SHARED.joinpath(key[2]).exists():
            keys.append(key)

    def accuracy(key):
        profile, model, data = key
        return run_cli("--profile", profile, "--model", str(SHARED / model), "--dataset-path", str(SHARED / data),
                       "--accuracy", tmp_path=tmp_path_factory.mktemp("accuracy"), timeout=600)

    with ThreadPoolExecutor(2) as pool:
        futures = {key: pool.submit(accuracy, key) for key in keys}
    return futures


@pytest.mark.slow
@pytest.mark.parametrize("profile,model,data,expected,runtime", CASES,
                         ids=[f"{c[0]}-{c[1].split('/')[-1]}-{c[2].split('/')[-1]}" for c in CASES])
def test_accuracy_matches_reference(accuracy_runs, profile, model, data, expected, runtime):
    expected = runtime_figure(model, data, need_module(runtime), expected)
    shared_path(model), shared_path(data)
    proc = accuracy_runs[(profile, model, data)].result()
    assert proc.returncode == 0, proc.stderr
    assert f"accuracy  : {expected}" in proc.stdout


SCENARIOS = ["SingleStream", "MultiStream", "Offline", "Server"]
RUNTIMES = [
    ("mobilenet_tflite", f"{MOBILENET}/mobilenet_v1_0.25_128_quant.tflite", "data/imagenet-mini", "ai_edge_litert"),
    ("mobilenet_onnxruntime", f"{MOBILENET}/mobilenet_v1_1.0_224_quant_qdq_nchw.onnx", "data/imagenet-mini",
     "onnxruntime"),
    ("kws_tflite", "models/kws/kws_ref_model.tflite", "data/speech-commands-mini", "ai_edge_litert"),
]

#: ~30 ms per inference here: too slow for every quick run to reach early stopping's query count
SLOW_MODELS = {"mobilenet_onnxruntime"}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("profile,model,data,runtime", RUNTIMES, ids=[r[0] for r in RUNTIMES])
def test_every_scenario_valid_with_real_runtimes(tmp_path, profile, model, data, runtime, scenario):
    need_module(runtime)
    model, data = shared_path(model), shared_path(data)
    proc = run_cli("--profile", profile, "--model", str(model), "--dataset-path", str(data), "--quick",
                   "--scenario", scenario, "--count", "64", tmp_path=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "FAILED" not in proc.stdout, proc.stdout
    cut = re.search(r"quick: INVALID by design: .* needs (\d+) .*\(~([\d.]+) s on this device\)", proc.stdout)
    if cut:
        # --quick lasts seconds: where early stopping's query count takes this device longer than
        # about ten (MultiStream: 662 x 8 samples of MobileNet 1.0, or of 0.25 on tflite-runtime
        # 2.13 without XNNPACK), the run is cut and says so; only then
        assert "result    : INVALID" in proc.stdout and float(cut.group(2)) > 10, proc.stdout
        return
    if profile in SLOW_MODELS and scenario == "Server":
        # a quick Server run of a ~30 ms model at 20+ QPS on two shared cores meets its bound only
        # when the machine is quiet: it must still end with LoadGen's verdict and its figures
        assert re.search(r"result    : (VALID|INVALID)", proc.stdout), proc.stdout
        return
    assert "result    : VALID" in proc.stdout, proc.stdout
