"""sut.limits: the size of LoadGen's generated query set, checked against real TestSettings."""

import types

import pytest

from sut import limits
from sut.errors import ConfigError


def loadgen_settings(scenario, **values):
    """LoadGen's own TestSettings with its built-in mlperf.conf, then ``values``."""
    lg = pytest.importorskip("mlperf_loadgen")
    settings = lg.TestSettings()
    assert settings.FromConfig("", "resnet50", scenario, 0) == 0
    for key, value in values.items():
        setattr(settings, key, value)
    return settings


def test_mlperf_conf_duration_is_what_loadgen_has():
    for scenario in ("SingleStream", "MultiStream", "Offline", "Server"):
        assert loadgen_settings(scenario).min_duration_ms == limits.MLPERF_CONF_MIN_DURATION_MS


@pytest.mark.parametrize("scenario,values,queries,samples", [
    # 2 x 600 s / 1 ms
    ("SingleStream", {"single_stream_expected_latency_ns": 1_000_000}, 1_200_000, 1_200_000),
    # 2 x 1 s / 50 ms = 40 < min_query_count 662, 8 samples each
    ("MultiStream", {"multi_stream_expected_latency_ns": 50_000_000, "min_duration_ms": 1000}, 662, 662 * 8),
    ("Server", {"server_target_qps": 100.0, "min_duration_ms": 10_000}, 1000, 1000),
    # one query: max(24576, 1.1 x 600 s x 100/s = 66000)
    ("Offline", {"offline_expected_qps": 100.0}, 1, 66_000),
])
def test_generated_follows_loadgen_arithmetic(scenario, values, queries, samples):
    gen = limits.generated(scenario, loadgen_settings(scenario, **values))
    assert (gen.queries, gen.samples) == (queries, samples)


@pytest.mark.parametrize("scenario,values,fix", [
    ("SingleStream", {"single_stream_expected_latency_ns": 1000}, "raise --target-latency-ms"),
    ("MultiStream", {"multi_stream_expected_latency_ns": 100_000}, "--samples-per-query"),
    ("Server", {"server_target_qps": 1e8}, "lower --target-qps"),
    ("Offline", {"offline_expected_qps": 1e6}, "lower --target-qps"),
])
def test_too_many_samples_is_a_config_error_naming_the_setting(scenario, values, fix):
    with pytest.raises(ConfigError, match=rf"{scenario}: LoadGen would generate [0-9,]+ samples .*10,000,000.*{fix}"):
        limits.check_query_budget(scenario, loadgen_settings(scenario, **values))


def test_accuracy_mode_is_not_limited():
    limits.check_query_budget("Server", loadgen_settings("Server", server_target_qps=1e8), mode="accuracy")


@pytest.mark.parametrize("scenario,attr,value", [
    ("SingleStream", "single_stream_expected_latency_ns", 0),
    ("Server", "server_target_qps", 0.0),
    ("Offline", "offline_expected_qps", float("nan")),
])
def test_a_rate_that_never_ends_is_refused(scenario, attr, value):
    settings = types.SimpleNamespace(min_duration_ms=1000, min_query_count=1, multi_stream_samples_per_query=8,
                                     single_stream_expected_latency_ns=1e6, multi_stream_expected_latency_ns=1e6,
                                     offline_expected_qps=1.0, server_target_qps=1.0)
    setattr(settings, attr, value)
    with pytest.raises(ConfigError, match="must be"):
        limits.check_query_budget(scenario, settings)


def test_the_limit_is_a_parameter():
    settings = loadgen_settings("Server", server_target_qps=10.0, min_duration_ms=1000, min_query_count=1)
    limits.check_query_budget("Server", settings, limit=10)
    with pytest.raises(ConfigError, match="more than the 9 that fit"):
        limits.check_query_budget("Server", settings, limit=9)
