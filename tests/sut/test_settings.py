"""sut.settings.build: LoadGen's own mlperf.conf, then the warm-up estimate,
then user.conf, then the command line, each layer over the one before.

Every value is read back from the real ``lg.TestSettings`` that LoadGen
would run with.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import mlperf_loadgen as lg
import pytest

from profiles import Config
from sut import settings
from sut.errors import ConfigError
from sut.settings import QUICK, SERVER_QPS_CAP, Estimate, build

ROOT = Path(__file__).resolve().parents[2]
MS = 1_000_000  # ns

#: a device doing 2 ms per sample, 10 ms per MultiStream query, 400 samples/s
ESTIMATE = Estimate(latency_s=0.002, query_latency_s=0.010, samples_per_s=400.0)


def cfg(scenario: str = "SingleStream", **values) -> Config:
    return Config(scenario=scenario, mlperf_model="resnet50", progress=False, **values)


@pytest.fixture
def user_conf(tmp_path):
    """Write a user.conf and return its path (as a Config field wants it)."""
    def write(*lines: str) -> str:
        path = tmp_path / "user.conf"
        path.write_text("\n".join(lines) + "\n")
        return str(path)
    return write


# --- mlperf.conf ----------------------------------------------------------------

def test_mlperf_conf_values_are_loaded():
    server = build(cfg("Server"), "performance", None)
    assert server.server_target_latency_ns == 15 * MS  # resnet50 Server bound in mlperf.conf
    assert server.min_duration_ms == 600_000
    assert server.server_target_qps == 1.0  # nothing measured, nothing asked
    multi = build(cfg("MultiStream"), "performance", None)
    assert multi.multi_stream_samples_per_query == 8


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Offline", "Server"])
@pytest.mark.parametrize("mode,test_mode", [("performance", lg.TestMode.PerformanceOnly),
                                            ("accuracy", lg.TestMode.AccuracyOnly)])
def test_scenario_and_mode_are_set(scenario, mode, test_mode):
    built = build(cfg(scenario), mode, None)
    assert built.scenario == settings.SCENARIO[scenario] == getattr(lg.TestScenario, scenario)
    assert built.mode == test_mode


# --- the warm-up estimate --------------------------------------------------------

def test_estimate_sets_expected_latencies_and_qps():
    built = build(cfg("Offline"), "performance", ESTIMATE)
    # expect a little faster than measured, so LoadGen generates enough queries
    assert built.single_stream_expected_latency_ns == 1 * MS
    assert built.multi_stream_expected_latency_ns == 5 * MS
    assert built.offline_expected_qps == pytest.approx(600.0)
    assert built.server_target_qps == pytest.approx(100.0)
    assert built.server_target_latency_ns == 15 * MS  # the bound is the benchmark's, not ours


def test_estimate_of_a_very_fast_device_keeps_latencies_positive():
    built = build(cfg(), "performance", Estimate(latency_s=1e-9, query_latency_s=1e-9, samples_per_s=1e9))
    assert built.single_stream_expected_latency_ns == 1000
    assert built.multi_stream_expected_latency_ns == 1000


@pytest.mark.parametrize("samples_per_s,target", [
    (400.0, 100.0),                   # a quarter of the measured capacity
    (1e7, SERVER_QPS_CAP),            # never more than a Python SUT serves comfortably
    (4 * SERVER_QPS_CAP, SERVER_QPS_CAP),
    (2.0, 1.0),                       # and at least one query per second
])
def test_server_target_qps_is_a_quarter_of_the_estimate_capped(samples_per_s, target):
    estimate = Estimate(latency_s=0.001, query_latency_s=0.008, samples_per_s=samples_per_s)
    assert build(cfg("Server"), "performance", estimate).server_target_qps == pytest.approx(target)


# --- user.conf and the command line -----------------------------------------------

def test_user_conf_overrides_the_estimate(user_conf):
    path = user_conf("resnet50.Offline.target_qps = 123",
                     "*.Server.target_qps = 45",
                     "resnet50.SingleStream.target_latency = 7")
    for scenario in ("Offline", "Server", "SingleStream"):
        built = build(cfg(scenario, user_conf=path), "performance", ESTIMATE)
        if scenario == "Offline":
            assert built.offline_expected_qps == pytest.approx(123.0)
        elif scenario == "Server":
            assert built.server_target_qps == pytest.approx(45.0)
            assert built.server_target_latency_ns == 15 * MS  # untouched keys keep mlperf.conf
        else:
            assert built.single_stream_expected_latency_ns == 7 * MS


def test_command_line_overrides_user_conf(user_conf):
    path = user_conf("*.*.min_duration = 5000",
                     "*.*.min_query_count = 50",
                     "resnet50.Server.target_qps = 45",
                     "resnet50.Server.target_latency = 30",
                     "resnet50.MultiStream.samples_per_query = 4")
    overrides = dict(min_duration_ms=1234, min_query_count=321, max_query_count=999, target_qps=77.0,
                     target_latency_ms=2.5, samples_per_query=6, performance_sample_count=33)
    built = build(cfg("Server", user_conf=path, **overrides), "performance", ESTIMATE)
    assert (built.min_duration_ms, built.min_query_count, built.max_query_count) == (1234, 321, 999)
    assert built.server_target_qps == pytest.approx(77.0)
    assert built.offline_expected_qps == pytest.approx(77.0)
    assert built.server_target_latency_ns == 2_500_000
    assert built.single_stream_expected_latency_ns == 2_500_000
    assert built.multi_stream_expected_latency_ns == 2_500_000
    assert built.multi_stream_samples_per_query == 6
    assert built.performance_sample_count_override == 33


def test_user_conf_applies_when_the_command_line_is_silent(user_conf):
    path = user_conf("*.*.min_duration = 5000", "resnet50.MultiStream.samples_per_query = 4")
    built = build(cfg("MultiStream", user_conf=path), "performance", None)
    assert built.min_duration_ms == 5000
    assert built.multi_stream_samples_per_query == 4


def test_missing_user_conf_is_a_config_error(tmp_path):
    missing = tmp_path / "nope" / "user.conf"
    with pytest.raises(ConfigError, match=f"user.conf not found: {missing}"):
        build(cfg(user_conf=str(missing)), "performance", None)


def test_unreadable_user_conf_is_a_config_error(user_conf):
    """Checked in a child process: LoadGen keeps the parse error in its
    process-wide log and writes it into the next test's detail log."""
    path = user_conf("resnet50.Offline.target_qps = not-a-number")
    code = textwrap.dedent(f"""
        from profiles import Config
        from sut.errors import ConfigError
        from sut.settings import build
        try:
            build(Config(scenario="Offline", user_conf={path!r}), "performance", None)
        except ConfigError as exc:
            print("ConfigError:", exc)
        """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert re.search(f"^ConfigError: LoadGen could not read user.conf {re.escape(path)} \\(code -?\\d+\\)$",
                     proc.stdout, re.M), (proc.stdout, proc.stderr)


# --- quick mode -------------------------------------------------------------------

@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Offline", "Server"])
def test_quick_sets_the_quick_minimums(scenario):
    built = build(cfg(scenario, quick=True), "performance", ESTIMATE)
    assert built.min_duration_ms == QUICK[scenario]["min_duration_ms"]
    assert built.min_query_count == QUICK[scenario]["min_query_count"]


def test_quick_overrides_user_conf_and_the_command_line_overrides_quick(user_conf):
    path = user_conf("*.*.min_duration = 5000", "*.*.min_query_count = 50")
    built = build(cfg("SingleStream", quick=True, user_conf=path), "performance", None)
    assert (built.min_duration_ms, built.min_query_count) == (1000, 100)
    built = build(cfg("SingleStream", quick=True, min_query_count=70), "performance", None)
    assert (built.min_duration_ms, built.min_query_count) == (1000, 70)


def test_quick_server_bound_is_one_the_device_can_meet():
    slow = Estimate(latency_s=0.010, query_latency_s=0.080, samples_per_s=100.0)
    assert build(cfg("Server", quick=True), "performance", slow).server_target_latency_ns == 200 * MS
    # at least 100 ms, so a quick run on a busy machine still says whether the harness works
    fast = Estimate(latency_s=0.0005, query_latency_s=0.004, samples_per_s=2000.0)
    assert build(cfg("Server", quick=True), "performance", fast).server_target_latency_ns == 100 * MS
    assert build(cfg("Server", quick=True), "performance", None).server_target_latency_ns == 100 * MS
    # only quick runs move the bound
    assert build(cfg("Server"), "performance", slow).server_target_latency_ns == 15 * MS
    assert build(cfg("Server", quick=True, target_latency_ms=3.0), "performance", slow) \
        .server_target_latency_ns == 3 * MS  # an explicit bound wins
