"""LoadGen TestSettings: built-in mlperf.conf -> estimate -> user.conf -> --quick -> command line.

Loaded once per test with the ``conf_type=0`` then ``conf_type=2`` pair
(``../shared/docs/loadgen.md``, trap 6). ``FromConfig`` never raises, so its
return code is checked here.

``--quick`` sizes each performance test from the warm-up's measurement to
take about :data:`QUICK_TARGET_S` and never more than :data:`QUICK_MAX_S`
of LoadGen time, with as many queries as LoadGen's early stopping needs for
a VALID result (:func:`early_stopping_queries`). When that many queries do
not fit in :data:`QUICK_MAX_S` on this device (MultiStream on a ~10 ms
model: 662 queries of 8 samples), the run is cut to what fits and is
INVALID by design; :func:`build` returns a note saying so, which the runner
puts first among the reasons. Samples per query, the percentile and the
latency bound's meaning are never changed, so the metric stays the
scenario's own.
"""

from __future__ import annotations

import dataclasses
import logging
import math
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

#: --quick without a warm-up estimate (tests): fixed counts LoadGen calls VALID
#: on a fast SUT (early stopping needs 64 SingleStream queries at p90, 662
#: MultiStream at p99, 459 Server at p99 with none late; Offline none)
QUICK = {
    "SingleStream": {"min_duration_ms": 1000, "min_query_count": 100},
    "MultiStream": {"min_duration_ms": 1000, "min_query_count": 662},
    "Offline": {"min_duration_ms": 1000, "min_query_count": 1},
    "Server": {"min_duration_ms": 1000, "min_query_count": 500},
}
#: --quick: LoadGen time a quick test aims for, and the most it plans for
#: (start-up, warm-up and the summary add 2-4 s on a small machine)
QUICK_TARGET_S = 1.0
QUICK_MAX_S = 10.0
#: --quick: LoadGen stops issuing after this (max_duration), should the device
#: run far slower than its warm-up said
QUICK_HARD_STOP_S = 2 * QUICK_MAX_S
#: --quick: the fewest queries of a test cut short by QUICK_MAX_S, and the most
#: queries (Offline: samples) of any quick test (LoadGen generates them all up front)
QUICK_MIN_QUERIES = 16
QUICK_MAX_QUERIES = 5_000
QUICK_MAX_OFFLINE_SAMPLES = 50_000
#: --quick: LoadGen's own time per SingleStream/MultiStream query, which the
#: warm-up does not see (7.5 us on a quiet 2-core machine, ../shared/docs/loadgen.md;
#: 20-40 us under load): counted so that a near-free backend's run stays near QUICK_TARGET_S
QUICK_LOADGEN_S_PER_QUERY = 20e-6
#: --quick Server: load asked of the device, as a fraction of its measured
#: throughput: PREFERRED when early stopping's count fits in QUICK_MAX_S there,
#: else up to HIGHEST to make it fit (the latency bound below is loose enough)
QUICK_SERVER_LOAD_PREFERRED = 0.5
QUICK_SERVER_LOAD_HIGHEST = 0.7

SERVER_QPS_CAP = 1000.0
#: --quick Server latency bound at least this (100 ms)
QUICK_SERVER_LATENCY_NS = 100_000_000
#: LoadGen's early-stopping confidence (early_stopping.cc / results.cc)
EARLY_STOPPING_CONFIDENCE = 0.99
#: LoadGen's Offline slack: one query of 1.1 x min_duration x expected QPS samples
OFFLINE_SLACK = 1.1


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Speed measured during warm-up, used to set LoadGen's expectations."""

    latency_s: float          # one sample (SingleStream query): the median call
    query_latency_s: float    # one MultiStream query (from the median call)
    samples_per_s: float      # best throughput with all instances (the fastest call)
    #: throughput from the median call: what a busy machine sustains (0: not measured)
    typical_samples_per_s: float = 0.0


def build(cfg: Config, mode: str, estimate: Estimate | None, notes: list[str] | None = None) -> lg.TestSettings:
    """The TestSettings of one test; ``notes`` (if given) receives one line per
    thing the run's verdict should be read with (a quick run INVALID by design)."""
    settings = lg.TestSettings()
    rc = settings.FromConfig("", cfg.mlperf_model, cfg.scenario, 0)
    if rc != 0:
        raise ConfigError(f"LoadGen could not load its built-in mlperf.conf (code {rc})")
    if estimate is not None:
        _apply_estimate(settings, estimate, cfg.scenario, mode)
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
    note = None
    if cfg.quick and mode == "performance":
        max_duration_ms = settings.max_duration_ms
        note = _apply_quick(settings, cfg, estimate)
        if _overridden(cfg):  # an explicit length replaces the quick one, guard and note included
            settings.max_duration_ms, note = max_duration_ms, None
    _apply_overrides(settings, cfg)
    if note and notes is not None:
        notes.append(note)
    return settings


def _apply_estimate(settings, est: Estimate, scenario: str, mode: str = "performance") -> None:
    # expecting a little faster than measured makes LoadGen generate enough
    # queries to fill min_duration (a faster-than-expected SUT runs out: INVALID)
    settings.single_stream_expected_latency_ns = max(1000, int(est.latency_s * 0.5e9))
    settings.multi_stream_expected_latency_ns = max(1000, int(est.query_latency_s * 0.5e9))
    settings.offline_expected_qps = est.samples_per_s * 1.5
    # each Server query crosses a thread boundary, which the warm-up does not
    # measure: ask for a fraction of the measured capacity, and no more than a
    # Python SUT serves comfortably on a small machine (set --target-qps for
    # a real Server run). An accuracy run only paces its queries with it
    # (latency is not judged): the device's full rate ends it soonest.
    share = 1.0 if mode == "accuracy" else 0.25
    settings.server_target_qps = max(1.0, min(est.samples_per_s * share, SERVER_QPS_CAP))


# --- --quick --------------------------------------------------------------------------

def early_stopping_queries(percentile: float, overlatency: int, confidence: float = EARLY_STOPPING_CONFIDENCE) -> int:
    """The fewest queries LoadGen's early stopping accepts when ``overlatency``
    of them are slower than the ``percentile`` (a fraction, 0.9) latency.

    LoadGen (``early_stopping.cc``) asks for ``h + t`` queries, ``t`` the
    over-latency count and ``h`` the least with P(X <= t) < 1 - confidence for
    X ~ Binomial(h + t, 1 - percentile). SingleStream and MultiStream always
    count one (t = 1: 64 queries at p90, 662 at p99); Server counts the
    queries over its bound (none: 459 at p99).
    """
    p, t = float(percentile), int(overlatency)
    if not 0.0 < p < 1.0:
        raise ValueError(f"percentile must be a fraction in (0, 1), got {p}")

    def odds(h: int) -> float:  # P(at most t of h + t queries over latency)
        n = h + t
        return sum(math.comb(n, x) * (1 - p) ** x * p ** (n - x) for x in range(t + 1))

    low, high = 1, 1
    while odds(high) >= 1 - confidence:
        low, high = high + 1, high * 2
    while low < high:
        mid = (low + high) // 2
        if odds(mid) < 1 - confidence:
            high = mid
        else:
            low = mid + 1
    return low + t


def quick_needs(scenario: str, settings) -> int:
    """Queries early stopping needs for a VALID ``scenario`` result (0: no minimum)."""
    if scenario == "SingleStream":
        return early_stopping_queries(settings.single_stream_target_latency_percentile, 1)
    if scenario == "MultiStream":
        return early_stopping_queries(settings.multi_stream_target_latency_percentile, 1)
    if scenario == "Server":
        return early_stopping_queries(settings.server_target_latency_percentile, 0)
    return 0


def _apply_quick(settings, cfg: Config, estimate: Estimate | None) -> str | None:
    """Size a quick performance test; returns a note when it is INVALID by design."""
    scenario = cfg.scenario
    if scenario == "Server":
        # a bound the device meets even on a busy machine, so that a quick
        # run says whether the harness works, not how loaded the machine is
        slowest = int(20 * estimate.latency_s * 1e9) if estimate is not None else 0
        settings.server_target_latency_ns = max(settings.server_target_latency_ns, slowest, QUICK_SERVER_LATENCY_NS)
    if estimate is None:
        for key, value in QUICK[scenario].items():
            setattr(settings, key, value)
        return None
    settings.min_duration_ms = 0  # a count of queries, not a duration: the length is known up front
    # the median warm-up call, not the fastest: a quick run must not ask more of a
    # busy machine than it sustains (its length and a Server load depend on it)
    rate = estimate.typical_samples_per_s or estimate.samples_per_s
    if scenario == "Offline":
        samples = math.ceil(QUICK_TARGET_S * rate)
        settings.min_query_count = max(1, min(samples, QUICK_MAX_OFFLINE_SAMPLES))
        return None
    settings.max_duration_ms = int(QUICK_HARD_STOP_S * 1000)
    needed = quick_needs(scenario, settings)
    if scenario == "Server":
        capacity = min(rate, SERVER_QPS_CAP / QUICK_SERVER_LOAD_PREFERRED)
        qps = cfg.target_qps or _quick_server_qps(capacity, needed)
        settings.server_target_qps = qps
        seconds_per_query = 1.0 / qps
    elif scenario == "SingleStream":
        seconds_per_query = estimate.latency_s + QUICK_LOADGEN_S_PER_QUERY
    else:
        seconds_per_query = estimate.query_latency_s + QUICK_LOADGEN_S_PER_QUERY
    seconds_per_query = max(seconds_per_query, 1e-9)
    wanted = max(needed, math.ceil(QUICK_TARGET_S / seconds_per_query))
    if needed * seconds_per_query <= QUICK_MAX_S:
        settings.min_query_count = min(wanted, max(needed, QUICK_MAX_QUERIES))
        return None
    queries = max(QUICK_MIN_QUERIES, int(QUICK_MAX_S / seconds_per_query))
    settings.min_query_count = queries
    percentile = {"SingleStream": settings.single_stream_target_latency_percentile,
                  "MultiStream": settings.multi_stream_target_latency_percentile,
                  "Server": settings.server_target_latency_percentile}[scenario]
    rate = f" at {1 / seconds_per_query:.3g} queries/s" if scenario == "Server" else ""
    return (f"quick: INVALID by design: {queries} queries (~{queries * seconds_per_query:.0f} s){rate}, "
            f"LoadGen's early stopping needs {needed} for a {percentile * 100:g}th percentile "
            f"(~{needed * seconds_per_query:.0f} s on this device); run without --quick "
            f"(or with --min-query-count {needed}) for a VALID result")


def _quick_server_qps(capacity: float, needed: int) -> float:
    """Half the device's measured rate, more (up to QUICK_SERVER_LOAD_HIGHEST)
    when that lets early stopping's query count fit in QUICK_MAX_S."""
    preferred = QUICK_SERVER_LOAD_PREFERRED * capacity
    if needed <= preferred * QUICK_MAX_S:
        return max(1.0, preferred)
    fitting = needed / QUICK_MAX_S
    return max(1.0, fitting if fitting <= QUICK_SERVER_LOAD_HIGHEST * capacity else preferred)


def _overridden(cfg: Config) -> bool:
    """Whether the command line set the query count or duration (then the quick note no longer holds)."""
    return cfg.min_query_count is not None or cfg.min_duration_ms is not None or cfg.max_duration_ms is not None


def _apply_overrides(settings, cfg: Config) -> None:
    if cfg.min_duration_ms is not None:
        settings.min_duration_ms = cfg.min_duration_ms
    if cfg.max_duration_ms is not None:
        settings.max_duration_ms = cfg.max_duration_ms
        if cfg.scenario == "Offline" and cfg.min_query_count is None and cfg.max_duration_ms > 0:
            # Offline is one query, never cut short: only its size can bound
            # it, so the duration alone sizes it (mlperf.conf asks for 24576)
            settings.min_query_count = 1
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


# --- what a test is expected to do (the progress line) ------------------------------

@dataclasses.dataclass(frozen=True)
class Plan:
    """What LoadGen is expected to issue in one test, and how long it should take."""

    unit: str            # "queries" or (Offline) "samples": what the progress line counts
    count: int           # of that unit
    samples_per_unit: int
    seconds: float       # expected LoadGen time (0: unknown)
    max_seconds: float   # LoadGen's max_duration (0: none)
    min_seconds: float = 0.0  # LoadGen's min_duration (SingleStream, MultiStream, Server)


def plan(scenario: str, mode: str, settings, estimate: Estimate | None, total_samples: int) -> Plan:
    """The expected length of a test with final ``settings`` (see LoadGen's
    ``GenerateQueries``), from the warm-up's speed. Without an estimate the
    counts come from the settings' expectations and the length is unknown (0),
    except Server's, which LoadGen's schedule fixes."""
    max_s = max(0, int(settings.max_duration_ms)) / 1000.0
    min_s = max(0, int(settings.min_duration_ms)) / 1000.0
    min_q = max(0, int(settings.min_query_count))
    if estimate is not None:
        latency, query_latency, rate = estimate.latency_s, estimate.query_latency_s, estimate.samples_per_s
    else:
        latency = settings.single_stream_expected_latency_ns / 1e9
        query_latency = settings.multi_stream_expected_latency_ns / 1e9
        rate = settings.offline_expected_qps
    per_query = int(settings.multi_stream_samples_per_query) if scenario == "MultiStream" else 1
    qps = float(settings.server_target_qps)
    if mode == "accuracy":
        if scenario == "Offline":
            return Plan("samples", total_samples, 1, total_samples / max(rate, 1e-9) if estimate else 0.0, 0.0)
        queries = math.ceil(total_samples / per_query)
        seconds = {"SingleStream": queries * latency, "MultiStream": queries * query_latency,
                   "Server": max(queries / max(qps, 1e-9), queries / max(rate, 1e-9))}[scenario]
        if estimate is None:
            seconds = queries / max(qps, 1e-9) if scenario == "Server" else 0.0
        return Plan("queries", queries, per_query, seconds, 0.0)
    if scenario == "Offline":
        samples = max(min_q, math.ceil(OFFLINE_SLACK * min_s * settings.offline_expected_qps))
        return Plan("samples", samples, 1, samples / max(rate, 1e-9) if estimate is not None else 0.0, 0.0)
    each = {"SingleStream": latency, "MultiStream": query_latency}.get(scenario, 1.0 / max(qps, 1e-9))
    each = max(each, 1e-9)
    queries = max(min_q, math.ceil(min_s / each))
    if settings.max_query_count:
        queries = min(queries, int(settings.max_query_count))
    seconds = max(queries * each, min_s)
    if max_s:
        seconds = min(seconds, max_s)
        queries = min(queries, max(1, math.ceil(max_s / each)))
    if estimate is None and scenario != "Server":
        seconds = 0.0
    return Plan("queries", queries, per_query, seconds, max_s, min_s)
