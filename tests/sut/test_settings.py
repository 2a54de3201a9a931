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
    # sut.user_conf checks every line before LoadGen reads it; LoadGen's own
    # return code is the last line of defence
    assert re.search(f"^ConfigError: (LoadGen could not read )?user.conf {re.escape(path)}", proc.stdout, re.M), \
        (proc.stdout, proc.stderr)


# --- quick mode -------------------------------------------------------------------

#: LoadGen's early stopping minimums for resnet50's percentiles (p90 SingleStream, p99 the others)
NEEDED = {"SingleStream": 64, "MultiStream": 662, "Server": 459}


@pytest.mark.parametrize("percentile,overlatency,queries", [
    (0.90, 1, 64), (0.99, 1, 662), (0.99, 0, 459), (0.90, 0, 44), (0.99, 5, 1307), (0.999, 1, 6636)])
def test_early_stopping_queries_match_loadgen(percentile, overlatency, queries):
    """The counts LoadGen's early_stopping.cc asks for (64, 662 and 459 are in ../shared/docs/loadgen.md)."""
    assert settings.early_stopping_queries(percentile, overlatency) == queries


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Server"])
def test_quick_needs_reads_the_percentile_from_the_settings(scenario):
    assert settings.quick_needs(scenario, build(cfg(scenario), "performance", None)) == NEEDED[scenario]
    assert settings.quick_needs("Offline", build(cfg("Offline"), "performance", None)) == 0


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Offline", "Server"])
def test_quick_without_an_estimate_uses_fixed_valid_counts(scenario):
    built = build(cfg(scenario, quick=True), "performance", None)
    assert built.min_duration_ms == QUICK[scenario]["min_duration_ms"]
    assert built.min_query_count == QUICK[scenario]["min_query_count"]


def quick(scenario, estimate, **values):
    notes: list[str] = []
    built = build(cfg(scenario, quick=True, **values), "performance", estimate, notes)
    plan = settings.plan(scenario, "performance", built, estimate, 260)
    return built, notes, plan


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Server"])
def test_quick_on_a_fast_device_runs_about_a_second_and_enough_queries_for_early_stopping(scenario):
    built, notes, plan = quick(scenario, ESTIMATE)
    assert notes == []
    assert built.min_duration_ms == 0  # a count of queries: the length is known up front
    assert built.min_query_count >= NEEDED[scenario]
    assert settings.QUICK_TARGET_S * 0.9 <= plan.seconds <= settings.QUICK_MAX_S
    assert built.max_duration_ms == settings.QUICK_HARD_STOP_S * 1000  # a guard, should the device slow down


def test_quick_offline_is_about_a_second_of_samples_and_always_valid():
    built, notes, plan = quick("Offline", ESTIMATE)
    assert notes == [] and built.min_duration_ms == 0
    assert built.min_query_count == 400  # 1 s x 400 samples/s
    assert (plan.unit, plan.count, plan.seconds) == ("samples", 400, 1.0)


#: MobileNet 1.0 on this 2-core machine: 12-40 ms a sample, one instance
MOBILENET = Estimate(latency_s=0.030, query_latency_s=0.240, samples_per_s=33.0)


def test_quick_multistream_on_a_slow_model_is_cut_to_fit_and_says_it_is_invalid_by_design():
    built, notes, plan = quick("MultiStream", MOBILENET)
    assert built.min_query_count == int(settings.QUICK_MAX_S / 0.240) < 662
    assert built.multi_stream_samples_per_query == 8  # the metric stays the scenario's own
    assert plan.seconds <= settings.QUICK_MAX_S
    (note,) = notes
    assert note.startswith(f"quick: INVALID by design: {built.min_query_count} queries")
    assert "early stopping needs 662 for a 99th percentile" in note and "--min-query-count 662" in note


def test_quick_server_asks_for_more_of_the_device_when_that_makes_it_valid():
    # 80 samples/s: half of it (40 QPS) needs 11.5 s for 459 queries; 45.9 QPS (57%) fits 10 s
    built, notes, plan = quick("Server", Estimate(0.012, 0.096, 80.0))
    assert notes == [] and built.min_query_count == 459
    assert built.server_target_qps == pytest.approx(459 / settings.QUICK_MAX_S)
    # 33 samples/s: even 70% cannot fit 459 queries in 10 s: half the rate, cut, said
    built, notes, plan = quick("Server", MOBILENET)
    assert built.server_target_qps == pytest.approx(16.5)
    assert built.min_query_count == 165 and plan.seconds == pytest.approx(10.0)
    assert len(notes) == 1 and "needs 459 for a 99th percentile" in notes[0]


def test_quick_sizes_from_what_the_machine_sustains_not_its_fastest_call():
    """The fastest warm-up call said 100 samples/s, the median 40: a quick Server
    run asks for half of 40, an Offline run holds 1 s of 40."""
    busy = Estimate(latency_s=0.025, query_latency_s=0.2, samples_per_s=100.0, typical_samples_per_s=40.0)
    assert quick("Server", busy)[0].server_target_qps == pytest.approx(20.0)
    assert quick("Offline", busy)[0].min_query_count == 40


def test_quick_single_stream_is_valid_even_at_a_slow_30_ms():
    built, notes, plan = quick("SingleStream", MOBILENET)
    assert notes == [] and built.min_query_count == 64 and plan.seconds == pytest.approx(1.92)


def test_quick_counts_are_bounded_for_a_near_free_backend():
    free = Estimate(latency_s=1e-6, query_latency_s=8e-6, samples_per_s=1e6)
    assert quick("SingleStream", free)[0].min_query_count == settings.QUICK_MAX_QUERIES
    assert quick("Offline", free)[0].min_query_count == settings.QUICK_MAX_OFFLINE_SAMPLES
    assert quick("Server", free)[0].server_target_qps == SERVER_QPS_CAP


def test_quick_overrides_user_conf_and_the_command_line_overrides_quick(user_conf):
    path = user_conf("*.*.min_duration = 5000", "*.*.min_query_count = 50")
    built = build(cfg("SingleStream", quick=True, user_conf=path), "performance", None)
    assert (built.min_duration_ms, built.min_query_count) == (1000, 100)
    built = build(cfg("SingleStream", quick=True, min_query_count=70), "performance", None)
    assert (built.min_duration_ms, built.min_query_count) == (1000, 70)
    # an explicit count replaces the quick one, and with it the quick note
    built, notes, _ = quick("MultiStream", MOBILENET, min_query_count=662)
    assert built.min_query_count == 662 and notes == []
    assert built.max_duration_ms == 0  # nor does quick's 20 s guard cut a length asked for
    built, notes, _ = quick("Server", MOBILENET, min_duration_ms=60_000)
    assert (built.min_duration_ms, built.max_duration_ms) == (60_000, 0) and notes == []


def test_quick_leaves_accuracy_runs_alone():
    built = build(cfg("MultiStream", quick=True), "accuracy", MOBILENET)
    assert built.min_duration_ms == 600_000 and built.max_duration_ms == 0


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


def test_server_accuracy_run_is_paced_at_the_devices_rate():
    """Latency is not judged in accuracy mode: a quarter of the rate would only make it 4x longer."""
    assert build(cfg("Server"), "accuracy", ESTIMATE).server_target_qps == 400.0
    assert build(cfg("Server"), "performance", ESTIMATE).server_target_qps == 100.0


# --- --time: min and max duration ---------------------------------------------------

@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Server"])
def test_time_bounds_the_run_both_ways(scenario):
    built = build(cfg(scenario, min_duration_ms=3000, max_duration_ms=3000), "performance", ESTIMATE)
    assert (built.min_duration_ms, built.max_duration_ms) == (3000, 3000)
    assert settings.plan(scenario, "performance", built, ESTIMATE, 260).seconds <= 3.0


def test_time_sizes_the_one_offline_query_for_that_duration():
    """mlperf.conf asks resnet50 Offline for 24576 samples whatever the duration; --time N means N s."""
    assert build(cfg("Offline"), "performance", ESTIMATE).min_query_count == 24576
    built = build(cfg("Offline", min_duration_ms=3000, max_duration_ms=3000), "performance", ESTIMATE)
    assert built.min_query_count == 1
    plan = settings.plan("Offline", "performance", built, ESTIMATE, 260)
    assert plan.count == pytest.approx(1.1 * 3 * 600, abs=1)  # LoadGen's slack x duration x expected QPS
    assert built.min_query_count == 1
    explicit = build(cfg("Offline", min_duration_ms=3000, max_duration_ms=3000, min_query_count=500),
                     "performance", ESTIMATE)
    assert explicit.min_query_count == 500


def test_cli_time_sets_min_and_max_duration():
    from sut import cli

    values = cli.overrides(cli.parser().parse_args(["--time", "2.5"]))
    assert values["min_duration_ms"] == values["max_duration_ms"] == 2500


# --- plan: what the progress line expects ------------------------------------------

@pytest.mark.parametrize("scenario,unit,count,seconds", [
    ("SingleStream", "queries", 260, 0.52), ("MultiStream", "queries", 33, 0.33),
    ("Offline", "samples", 260, 0.65), ("Server", "queries", 260, 0.65)])
def test_plan_of_an_accuracy_run_covers_every_sample(scenario, unit, count, seconds):
    built = build(cfg(scenario), "accuracy", ESTIMATE)
    plan = settings.plan(scenario, "accuracy", built, ESTIMATE, 260)
    assert (plan.unit, plan.count) == (unit, count)
    assert plan.seconds == pytest.approx(seconds)


def test_plan_of_a_full_performance_run_follows_min_duration():
    built = build(cfg("SingleStream"), "performance", ESTIMATE)
    plan = settings.plan("SingleStream", "performance", built, ESTIMATE, 260)
    assert plan.seconds == 600.0 and plan.count == 300_000 and plan.min_seconds == 600.0
