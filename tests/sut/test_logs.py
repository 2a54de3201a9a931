"""sut.logs on detail logs written by the real LoadGen.

Three short performance tests run in-process (``sut.runner.run_test``, null
backend, in-memory samples): a VALID SingleStream run, an Offline run that
is INVALID because the expected QPS was far too low (LoadGen generates too
few samples to fill ``min_duration``) and a Server run that is INVALID
because its latency bound (100 ns) cannot be met.
"""

from __future__ import annotations

import json

import pytest

from backends.base import BackendOptions
from backends.null import NullBackend
from benchmarks.harness_overhead import ArrayDataset, random_store
from profiles import Config
from sut import logs, runner

SAMPLES = 32
DETAIL = "mlperf_log_detail.txt"

RUNS = {
    "valid_single_stream": ("SingleStream", dict(min_duration_ms=0, min_query_count=100)),
    "invalid_offline": ("Offline", dict(min_duration_ms=500, min_query_count=1, target_qps=20.0)),
    "invalid_server": ("Server", dict(min_duration_ms=0, min_query_count=500, target_qps=1000.0,
                                      target_latency_ms=0.0001)),
}


def run_loadgen(outdir, scenario: str, **values) -> None:
    backend = NullBackend(BackendOptions(extra={"input_shape": [4], "input_dtype": "float32", "classes": 10}))
    info = backend.load(None)
    cfg = Config(scenario=scenario, progress=False, **values)
    result = runner.run_test(cfg, "performance", backend, info, ArrayDataset(SAMPLES),
                             random_store(info.input, SAMPLES), None, outdir)
    assert result.error is None, result.error


@pytest.fixture(scope="module")
def log_dirs(tmp_path_factory):
    """name -> directory holding that run's LoadGen logs (the runs happen once)."""
    dirs = {}
    for name, (scenario, values) in RUNS.items():
        dirs[name] = tmp_path_factory.mktemp(name)
        run_loadgen(dirs[name], scenario, **values)
    return dirs


@pytest.fixture(scope="module")
def details(log_dirs):
    return {name: logs.read_detail(path / DETAIL) for name, path in log_dirs.items()}


def mllog_records(path) -> list[dict]:
    """Every MLLOG record of a detail log, parsed independently of sut.logs."""
    lines = path.read_text().splitlines()
    return [json.loads(line.split(" ", 1)[1]) for line in lines if line.startswith(":::MLLOG ")]


# --- read_detail ------------------------------------------------------------------

def test_read_detail_holds_every_key_of_the_log(log_dirs, details):
    records = mllog_records(log_dirs["valid_single_stream"] / DETAIL)
    detail = details["valid_single_stream"]
    assert len(records) > 20
    for record in records:
        assert record["key"] in detail
    last = {r["key"]: r["value"] for r in records}
    assert {k: detail[k] for k in last} == last  # the last record of a key wins


def test_read_detail_of_a_valid_single_stream_run(details):
    detail = details["valid_single_stream"]
    assert detail["result_validity"] == "VALID"
    assert detail["effective_scenario"] == "SingleStream"
    assert detail["result_query_count"] >= 100
    assert isinstance(detail["result_90.00_percentile_latency_ns"], int)
    assert detail["_errors"] == []
    # one mlperf.conf per test (../shared/docs/loadgen.md, trap 6)
    assert not any("Multiple conf files" in w for w in detail["_warnings"])


def test_read_detail_skips_what_is_not_an_mllog_record(log_dirs, tmp_path):
    text = (log_dirs["valid_single_stream"] / DETAIL).read_text()
    path = tmp_path / DETAIL
    path.write_text("a line LoadGen did not write\n" + text + ':::MLLOG {"key": "result_validity", "val\n'
                    + ':::MLLOG {"key": "result_validity", "value": "INVALID"}\n')
    detail = logs.read_detail(path)
    assert detail["result_validity"] == "INVALID"  # the broken line is skipped, the last whole one wins
    assert detail["effective_scenario"] == "SingleStream"


def test_read_detail_collects_errors_and_warnings(log_dirs, tmp_path):
    path = tmp_path / DETAIL
    path.write_text((log_dirs["valid_single_stream"] / DETAIL).read_text()
                    + ':::MLLOG {"key": "error_invalid_test_settings", "value": "bad", '
                    '"metadata": {"is_error": true, "is_warning": false}}\n'
                    + ':::MLLOG {"key": "warning_generic_message", "value": "careful", '
                    '"metadata": {"is_error": false, "is_warning": true}}\n')
    detail = logs.read_detail(path)
    assert detail["_errors"] == ["error_invalid_test_settings: bad"]
    assert "warning_generic_message: careful" in detail["_warnings"]


def test_read_detail_of_a_missing_log_is_empty(tmp_path):
    assert logs.read_detail(tmp_path / DETAIL) == {"_errors": [], "_warnings": []}


# --- metric -----------------------------------------------------------------------

def test_latency_metric_in_milliseconds(details):
    detail = details["valid_single_stream"]
    name, value = logs.metric(detail, "SingleStream")
    assert name == "90th percentile latency"
    assert value == f"{detail['result_90.00_percentile_latency_ns'] / 1e6:.3f} ms"


def test_throughput_metrics_in_samples_per_second(details):
    name, value = logs.metric(details["invalid_offline"], "Offline")
    assert name == "samples per second"
    assert value == f"{details['invalid_offline']['result_samples_per_second']:.2f} samples/s"
    name, value = logs.metric(details["invalid_server"], "Server")
    assert name == "scheduled samples per second"
    assert value == f"{details['invalid_server']['result_scheduled_samples_per_sec']:.2f} samples/s"


def test_no_metric_without_its_key():
    assert logs.metric({"_errors": [], "_warnings": []}, "Server") is None


# --- invalid_reasons --------------------------------------------------------------

def test_a_valid_run_has_no_reasons(details):
    assert logs.invalid_reasons(details["valid_single_stream"]) == []


def test_too_low_expected_qps_is_min_duration_not_met(details):
    detail = details["invalid_offline"]
    assert detail["result_validity"] == "INVALID"
    assert detail["result_min_duration_met"] is False
    reasons = logs.invalid_reasons(detail)
    assert len(reasons) == 1 and reasons[0].startswith("min duration not met")
    assert "--target-qps" in reasons[0]


def test_impossible_latency_bound_is_latency_constraint_not_met(details):
    detail = details["invalid_server"]
    assert detail["result_validity"] == "INVALID"
    reasons = logs.invalid_reasons(detail)
    assert any(r.startswith("latency constraint not met") for r in reasons), reasons
    assert not any(r.startswith("min duration") for r in reasons)


def test_loadgen_reason_is_used_when_no_known_flag_explains_it(details):
    detail = {k: v for k, v in details["invalid_offline"].items() if not k.startswith("result_min_")}
    assert logs.invalid_reasons(detail) == [detail["result_invalid_reason"].strip()]


# --- readers for the summary and the peak search --------------------------------------

def test_number_reads_numbers_only(details):
    detail = details["valid_single_stream"]
    assert logs.number(detail, "result_query_count") == float(detail["result_query_count"])
    assert logs.number(detail, "result_validity") is None  # "VALID"
    assert logs.number(detail, "result_min_duration_met") is None  # a bool is not a figure
    assert logs.number(detail, "no_such_key") is None


def test_run_duration_is_loadgen_s_power_marks(details):
    for detail in details.values():
        duration = logs.run_duration_s(detail)
        assert duration is not None and 0 <= duration < 60
    assert logs.run_duration_s({"power_begin": "12-02-2026 12:41:36.986",
                                "power_end": "12-02-2026 12:41:39.587"}) == pytest.approx(2.601)
    assert logs.run_duration_s({"power_begin": "garbage", "power_end": "x"}) is None
    assert logs.run_duration_s({}) is None


def test_early_stopping_lines_are_loadgen_s_sentences(details):
    lines = logs.early_stopping_lines(details["valid_single_stream"])
    assert lines[0].startswith("* Processed at least 64 queries")
    assert any(line.startswith("* Early stopping 90.0th percentile estimate: ") for line in lines)
    assert logs.early_stopping_lines(details["invalid_server"])[0] == "* Run unsuccessful."
    assert logs.early_stopping_lines({}) == []


def test_reasons_carry_the_figures_of_the_scenario(details):
    (offline,) = logs.invalid_reasons(details["invalid_offline"])
    achieved = details["invalid_offline"]["result_samples_per_second"]
    assert "min_duration 0.5 s" in offline and f"about {achieved:.1f} achieved" in offline
    server = logs.invalid_reasons(details["invalid_server"])
    late = details["invalid_server"]["result_overlatency_query_count"]
    assert any(f"({late} of 500 queries over the 0.0001 ms bound)" in r for r in server), server
    assert any(r.startswith("early stopping not met: lower --target-qps") for r in server), server
