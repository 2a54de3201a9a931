"""sut.summary on results of real LoadGen runs (null backend, in-memory samples)."""

from __future__ import annotations

import json

import pytest

from backends.base import BackendOptions
from backends.null import NullBackend
from benchmarks.harness_overhead import ArrayDataset, random_store
from datasets.base import Accuracy
from profiles import Config
from sut import runner, session, summary
from sut.settings import Estimate

SAMPLES = 32
WARM_UP = {"latency_s": 1e-4, "query_latency_s": 8e-4, "samples_per_s": 4000.0}

RUNS = {
    "single_stream": Config(scenario="SingleStream", progress=False, min_duration_ms=0, min_query_count=100),
    "multi_stream": Config(scenario="MultiStream", progress=False, min_duration_ms=0, min_query_count=662),
    "offline_invalid": Config(scenario="Offline", progress=False, min_duration_ms=300, min_query_count=1,
                              target_qps=20.0),
    "server": Config(scenario="Server", progress=False, min_duration_ms=0, min_query_count=500,
                     target_latency_ms=100.0),
    "server_invalid": Config(scenario="Server", progress=False, min_duration_ms=0, min_query_count=500,
                             target_qps=1000.0, target_latency_ms=0.0001),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """name -> (cfg, TestResult) of a real LoadGen performance test (each runs once)."""
    backend = NullBackend(BackendOptions(extra={"input_shape": [4], "input_dtype": "float32", "classes": 10}))
    info = backend.load(None)
    estimate = Estimate(**WARM_UP)
    done = {}
    for name, cfg in RUNS.items():
        outdir = tmp_path_factory.mktemp(name)
        result = runner.run_test(cfg, "performance", backend, info, ArrayDataset(SAMPLES),
                                 random_store(info.input, SAMPLES), estimate, outdir)
        assert result.error is None, result.error
        done[name] = (cfg, result)
    return done


def figure(text: str, name: str) -> str:
    """The value printed for figure ``name`` (the text between ' : ' and the meaning)."""
    line = next(line for line in text.splitlines() if line.strip().startswith(name + " "))
    return line.split(" : ", 1)[1].split("   ")[0].strip()


def text_of(results, name, tmp_path, **cfg_changes) -> str:
    import dataclasses

    cfg, result = results[name]
    return summary.summarize(dataclasses.replace(cfg, **cfg_changes), [result], tmp_path, None, warm_up=WARM_UP)


def test_headline_prints_only_what_is_set():
    line = summary.headline(Config(profile="demo", backend="null", dataset="synthetic"))
    assert "None" not in line and "model=" not in line and "path=" not in line
    assert line == "profile demo: backend=null dataset=synthetic scenario=SingleStream mode=performance"
    line = summary.headline(Config(profile="p", model="m.tflite", dataset_path="/d", quick=True))
    assert "model=m.tflite" in line and "path=/d" in line and line.endswith(" quick")


def test_session_uses_this_summary():
    assert session.summarize is summary.summarize


def test_first_lines_name_only_what_is_set(results, tmp_path):
    text = text_of(results, "single_stream", tmp_path)
    assert "None" not in text
    assert text.splitlines()[0] == "run       : backend null"
    assert "dataset   : imagenet (all samples)" in text
    text = text_of(results, "single_stream", tmp_path, profile="demo", model="m.onnx", count=8)
    assert text.splitlines()[0] == "run       : profile demo   backend null   model m.onnx"
    assert "(first 8 samples)" in text


def test_server_figures_are_loadgen_s_with_what_they_mean(results, tmp_path):
    cfg, result = results["server"]
    detail = result.detail
    text = text_of(results, "server", tmp_path)
    assert "result    : VALID" in text
    assert figure(text, "Completed samples per second") == f"{detail['result_completed_samples_per_sec']:.2f}"
    assert figure(text, "Scheduled samples per second") == f"{detail['result_scheduled_samples_per_sec']:.2f}"
    assert figure(text, "target_qps") == f"{detail['effective_target_qps']:.2f}"
    assert figure(text, "target_latency") == "100 ms"
    assert figure(text, "99.00 percentile latency") == f"{detail['result_99.00_percentile_latency_ns'] / 1e6:.3f} ms"
    assert figure(text, "overlatency queries") == f"0 of {detail['result_query_count']}"
    assert "the Server result the MLPerf checker reports" in text
    assert "not the machine's capacity" in text
    # the target is the harness's choice from the warm-up, and says how it relates to it
    ratio = detail["effective_target_qps"] / WARM_UP["samples_per_s"]
    assert f"chosen by the harness, {ratio:.2f}x the 4000.0 samples/s measured in warm-up" in text
    assert "--find-peak-performance" in text
    assert "set by --target-latency-ms; mlperf.conf's bound for resnet50 is 15 ms" in text
    assert "within the 100 ms bound" in text
    assert "early stopping (LoadGen): * Run successful." in text
    assert f"{detail['result_query_count']} queries" in text


def test_where_the_server_settings_came_from(results, tmp_path):
    user_conf = tmp_path / "user.conf"
    user_conf.write_text("resnet50.Server.target_qps = 300\n# *.Server.target_latency = 7\n")
    text = text_of(results, "server", tmp_path, target_latency_ms=None, user_conf=str(user_conf))
    assert f"set by user.conf ({user_conf})" in figure_line(text, "target_qps")
    assert "set by user.conf" not in figure_line(text, "target_latency")  # a comment is not a setting
    text = text_of(results, "server", tmp_path, target_qps=500.0)
    assert "a setting: set by --target-qps" in text
    text = text_of(results, "server", tmp_path, target_latency_ms=None, quick=True)
    assert "raised by --quick" in figure_line(text, "target_latency") and "15 ms" in text


def figure_line(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith(name + " "))


def test_an_invalid_server_run_says_what_failed_and_the_fix(results, tmp_path):
    detail = results["server_invalid"][1].detail
    text = text_of(results, "server_invalid", tmp_path)
    assert "result    : INVALID" in text
    assert "OVER the 0.0001 ms bound" in text
    why = [line for line in text.splitlines() if "why INVALID:" in line]
    assert any("latency constraint not met" in line and "lower --target-qps" in line for line in why), why
    late = detail["result_overlatency_query_count"]
    assert f"({late} of {detail['result_query_count']} queries over the 0.0001 ms bound)" in text
    assert "* Run unsuccessful." in text


def test_single_stream_names_the_early_stopping_estimate_as_the_result(results, tmp_path):
    detail = results["single_stream"][1].detail
    text = text_of(results, "single_stream", tmp_path)
    assert figure(text, "90.0th percentile latency") == f"{detail['result_90.00_percentile_latency_ns'] / 1e6:.3f} ms"
    assert figure(text, "Early stopping 90.0th percentile estimate") == \
        f"{detail['early_stopping_latency_ss'] / 1e6:.3f} ms"
    assert "the SingleStream result the MLPerf checker reports" in text
    assert "expected latency" in text and "Completed samples per second" not in text


def test_multi_stream_figures(results, tmp_path):
    detail = results["multi_stream"][1].detail
    text = text_of(results, "multi_stream", tmp_path)
    assert figure(text, "99.0th percentile latency") == \
        f"{detail['result_99.00_percentile_per_query_latency_ns'] / 1e6:.3f} ms"
    assert figure(text, "Early stopping 99.0th percentile estimate") == \
        f"{detail['early_stopping_latency_ms'] / 1e6:.3f} ms"
    assert "(8 samples each)" in text


def test_offline_target_is_a_setting_and_an_invalid_run_names_the_fix(results, tmp_path):
    detail = results["offline_invalid"][1].detail
    text = text_of(results, "offline_invalid", tmp_path)
    assert figure(text, "Samples per second") == f"{detail['result_samples_per_second']:.2f}"
    assert figure(text, "target_qps") == "20.00"
    assert f"LoadGen sends {detail['generated_samples_per_query']} samples" in text
    assert "set by --target-qps" in figure_line(text, "target_qps")
    assert "why INVALID: min duration not met" in text and "raise --target-qps" in text
    assert "samples in one query" in text


def test_failed_and_accuracy_tests_keep_their_lines(results, tmp_path):
    cfg, perf = results["single_stream"]
    accuracy = runner.TestResult("SingleStream", "accuracy", tmp_path, accuracy=Accuracy(202, 260))
    failed = runner.TestResult("SingleStream", "performance", tmp_path, error="backend failed: boom")
    text = summary.summarize(cfg, [accuracy, failed], tmp_path)
    assert "accuracy  : accuracy=77.692%, good=202, total=260" in text
    assert "performance: FAILED - backend failed: boom" in text
    assert text.rstrip().endswith(f"results   : {tmp_path}")


def test_warm_up_is_read_from_config_json_when_not_given(results, tmp_path):
    cfg, result = results["server"]
    (tmp_path / "config.json").write_text(json.dumps({"warm_up": WARM_UP}))
    text = summary.summarize(cfg, [result], tmp_path)
    assert "measured in warm-up" in text


def test_runtime_line_is_kept(results, tmp_path):
    cfg, result = results["single_stream"]
    text = summary.summarize(cfg, [result], tmp_path, {"runtime": "litert 2.3.0", "precision": "int8"})
    assert "runtime   : litert 2.3.0   precision: int8" in text
