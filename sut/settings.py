"""LoadGen TestSettings: built-in mlperf.conf -> estimate -> user.conf -> command line.

Loaded once per test with the ``conf_type=0`` then ``conf_type=2`` pair
(``../shared/docs/loadgen.md``, trap 6). ``FromConfig`` never raises, so its
return code is checked here.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import mlperf_loadgen as lg

from profiles import Config
from sut import user_conf
from sut.errors import ConfigError

log = logging.getLogger(__name__)

SCENARIO = {
    "SingleStream": lg.TestScenario.SingleStream,
    "MultiStream": lg.TestScenario.MultiStream,
    "Offline": lg.TestScenario.Offline,
    "Server": lg.TestScenario.Server,
}
MODE = {
    "performance": lg.TestMode.PerformanceOnly,
    "accuracy": lg.TestMode.AccuracyOnly,
}

#: --quick: short runs that are still VALID. Early stopping needs at least 64
#: SingleStream queries (p90), 662 MultiStream queries (p99) and ~459 Server
#: queries; Offline has no such minimum.
QUICK = {
    "SingleStream": {"min_duration_ms": 1000, "min_query_count": 100},
    "MultiStream": {"min_duration_ms": 1000, "min_query_count": 662},
    "Offline": {"min_duration_ms": 1000, "min_query_count": 1},
    "Server": {"min_duration_ms": 1000, "min_query_count": 500},
}


SERVER_QPS_CAP = 1000.0
#: --quick Server latency bound at least this (100 ms)
QUICK_SERVER_LATENCY_NS = 100_000_000


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Speed measured during warm-up, used to set LoadGen's expectations."""

    latency_s: float          # one sample (SingleStream query)
    query_latency_s: float    # one MultiStream query
    samples_per_s: float      # best throughput with all instances


def build(cfg: Config, mode: str, estimate: Estimate | None) -> lg.TestSettings:
    settings = lg.TestSettings()
    rc = settings.FromConfig("", cfg.mlperf_model, cfg.scenario, 0)
    if rc != 0:
        raise ConfigError(f"LoadGen could not load its built-in mlperf.conf (code {rc})")
    if estimate is not None:
        _apply_estimate(settings, estimate, cfg.scenario)
    if cfg.user_conf:
        if not os.path.isfile(cfg.user_conf):
            raise ConfigError(f"user.conf not found: {cfg.user_conf}")
        # checked line by line (LoadGen ignores unknown keys); lines under the
        # profile's model name (mobilenet.*) reach LoadGen as its model name
        with user_conf.for_loadgen(cfg.user_conf, (cfg.mlperf_model, cfg.model_name), cfg.scenario) as path:
            rc = settings.FromConfig(path, cfg.mlperf_model, cfg.scenario, 2)
        if rc != 0:
            raise ConfigError(f"LoadGen could not read user.conf {cfg.user_conf} (code {rc})")
    settings.scenario = SCENARIO[cfg.scenario]
    settings.mode = MODE[mode]
    if cfg.quick:
        for key, value in QUICK[cfg.scenario].items():
            setattr(settings, key, value)
        if cfg.scenario == "Server":
            # a bound the device meets even on a busy machine, so that a quick
            # run says whether the harness works, not how loaded the machine is
            slowest = int(20 * estimate.latency_s * 1e9) if estimate is not None else 0
            settings.server_target_latency_ns = max(settings.server_target_latency_ns, slowest,
                                                    QUICK_SERVER_LATENCY_NS)
    _apply_overrides(settings, cfg)
    return settings


def _apply_estimate(settings, est: Estimate, scenario: str) -> None:
    # expecting a little faster than measured makes LoadGen generate enough
    # queries to fill min_duration (a faster-than-expected SUT runs out: INVALID)
    settings.single_stream_expected_latency_ns = max(1000, int(est.latency_s * 0.5e9))
    settings.multi_stream_expected_latency_ns = max(1000, int(est.query_latency_s * 0.5e9))
    settings.offline_expected_qps = est.samples_per_s * 1.5
    # each Server query crosses a thread boundary, which the warm-up does not
    # measure: ask for a fraction of the measured capacity, and no more than a
    # Python SUT serves comfortably on a small machine (set --target-qps for
    # a real Server run)
    settings.server_target_qps = max(1.0, min(est.samples_per_s * 0.25, SERVER_QPS_CAP))


def _apply_overrides(settings, cfg: Config) -> None:
    if cfg.min_duration_ms is not None:
        settings.min_duration_ms = cfg.min_duration_ms
    if cfg.min_query_count is not None:
        settings.min_query_count = cfg.min_query_count
    if cfg.max_query_count is not None:
        settings.max_query_count = cfg.max_query_count
    if cfg.samples_per_query is not None:
        settings.multi_stream_samples_per_query = cfg.samples_per_query
    if cfg.performance_sample_count is not None:
        settings.performance_sample_count_override = cfg.performance_sample_count
    if cfg.target_qps is not None:
        settings.offline_expected_qps = cfg.target_qps
        settings.server_target_qps = cfg.target_qps
    if cfg.target_latency_ms is not None:
        ns = int(cfg.target_latency_ms * 1e6)
        settings.single_stream_expected_latency_ns = ns
        settings.multi_stream_expected_latency_ns = ns
        settings.server_target_latency_ns = ns

