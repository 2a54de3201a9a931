"""Bounds that keep the query set LoadGen generates small enough to hold in memory.

Before a performance test LoadGen generates every query it may issue, all at
once, in memory (``GenerateQueries`` in ``loadgen.cc``):

* SingleStream / MultiStream: ``max(min_query_count, 2 x min_duration / expected latency)``
  queries (twice the duration, in case the SUT is faster than expected), of 1
  or ``samples_per_query`` samples;
* Server: ``max(min_query_count, min_duration x target_qps)`` queries of 1 sample;
* Offline: one query of ``max(min_query_count, 1.1 x min_duration x expected_qps)`` samples.

``max_query_count`` and ``max_duration`` do not bound that set. An expected
latency of 0 makes the loop endless; a huge rate makes it eat gigabytes before
the first query is issued (``--target-qps 1e8`` in Server: 3.4 GB in 20 s).
:func:`check_query_budget` computes the count from the final settings and
refuses more than :data:`MAX_GENERATED_SAMPLES`, naming the setting to change.

This module imports neither LoadGen nor a runtime: ``settings`` is anything
with ``mlperf_loadgen.TestSettings``' attribute names (a real TestSettings, or
a ``types.SimpleNamespace`` in tests).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from sut.errors import ConfigError

#: the most samples LoadGen may generate for one test: about 1-2 GB with the
#: harness's own per-sample bookkeeping (a Raspberry Pi class device has 4-8 GB)
MAX_GENERATED_SAMPLES = 10_000_000
#: mlperf.conf's ``*.<Scenario>.min_duration`` for every model and scenario
MLPERF_CONF_MIN_DURATION_MS = 600_000

#: what to change, per scenario, when the budget is exceeded
_FIX = {
    "SingleStream": "raise --target-latency-ms (SingleStream expected latency) or lower --min-duration/--time",
    "MultiStream": "raise --target-latency-ms (MultiStream expected query latency), lower --min-duration/--time "
                   "or --samples-per-query",
    "Offline": "lower --target-qps (Offline expected samples per second) or --min-duration/--time",
    "Server": "lower --target-qps (Server target queries per second) or --min-duration/--time",
}


class Generated(NamedTuple):
    """What LoadGen would generate for one performance test."""

    queries: int
    samples: int
    how: str  # the arithmetic, for the error message


def generated(scenario: str, settings: Any) -> Generated:
    """The queries and samples LoadGen generates for a performance test of
    ``scenario`` with ``settings`` (ConfigError when the rate makes it endless)."""
    duration_s = max(0, int(settings.min_duration_ms)) / 1000.0
    min_queries = max(0, int(settings.min_query_count))
    if scenario in ("SingleStream", "MultiStream"):
        attr = "single_stream_expected_latency_ns" if scenario == "SingleStream" else "multi_stream_expected_latency_ns"
        latency_ns = float(getattr(settings, attr))
        if not (math.isfinite(latency_ns) and latency_ns > 0):
            raise ConfigError(f"{scenario} expected latency is {latency_ns:g} ns: LoadGen would generate queries "
                              f"forever; --target-latency-ms must be a number > 0")
        per_query = int(settings.multi_stream_samples_per_query) if scenario == "MultiStream" else 1
        by_time = math.ceil(2 * duration_s * 1e9 / latency_ns)
        queries = max(min_queries, by_time)
        how = (f"max(min_query_count {min_queries}, 2 x min_duration {duration_s:g} s / expected latency "
               f"{latency_ns / 1e6:g} ms) = {queries:,} queries" + (f" x {per_query} samples" if per_query > 1 else ""))
        return Generated(queries, queries * per_query, how)
    attr = "server_target_qps" if scenario == "Server" else "offline_expected_qps"
    qps = float(getattr(settings, attr))
    if not (math.isfinite(qps) and qps > 0):
        raise ConfigError(f"{scenario} {'target' if scenario == 'Server' else 'expected'} QPS is {qps:g}: "
                          f"--target-qps must be a finite number > 0")
    if scenario == "Server":
        queries = max(min_queries, math.ceil(duration_s * qps))
        how = (f"max(min_query_count {min_queries}, min_duration {duration_s:g} s x target {qps:g} QPS) "
               f"= {queries:,} queries")
        return Generated(queries, queries, how)
    samples = max(min_queries, math.ceil(1.1 * duration_s * qps))
    how = (f"one query of max(min_query_count {min_queries}, 1.1 x min_duration {duration_s:g} s x expected "
           f"{qps:g} samples/s) = {samples:,} samples")
    return Generated(1, samples, how)


def check_query_budget(scenario: str, settings: Any, mode: str = "performance",
                       limit: int = MAX_GENERATED_SAMPLES) -> None:
    """Refuse (ConfigError, exit 2) settings that make LoadGen generate more
    than ``limit`` samples, or generate forever, for one test.

    Call it with the *final* settings of a test: after mlperf.conf, the
    warm-up estimate, user.conf, --quick and the command line have been
    applied (``sut.settings.build``), just before ``StartTest``. ``scenario``
    is the Config's scenario name (SingleStream, MultiStream, Offline,
    Server); ``mode`` "accuracy" is never refused (its queries are the
    dataset's samples, bounded by ``--count``). ``settings`` needs
    ``min_duration_ms``, ``min_query_count``, the scenario's rate
    (``single_stream_expected_latency_ns``, ``multi_stream_expected_latency_ns``
    with ``multi_stream_samples_per_query``, ``offline_expected_qps`` or
    ``server_target_qps``) and may have ``performance_issue_unique`` (then the
    dataset bounds it too).
    """
    if mode == "accuracy" or getattr(settings, "performance_issue_unique", False):
        return
    gen = generated(scenario, settings)
    if gen.samples > limit:
        raise ConfigError(
            f"{scenario}: LoadGen would generate {gen.samples:,} samples before the test starts "
            f"({gen.how}), more than the {limit:,} that fit in memory: {_FIX[scenario]} "
            f"(or the same key in --user-conf)")


def config_settings(cfg: Any, user_values: dict | None = None) -> Any | None:
    """The settings :func:`check_query_budget` needs, from a Config alone, or
    None when the rate is not known before the warm-up measures it.

    Used up front (``profiles.resolve``): only an explicit ``--target-qps``
    (Offline, Server) or ``--target-latency-ms`` (SingleStream, MultiStream)
    fixes the rate, and only outside ``--quick`` is the duration known here
    (``--min-duration``/``--time``, else ``user_values['min_duration']`` from
    user.conf, else mlperf.conf's 10 minutes). With ``--quick`` the duration
    is sut/settings.py's, checked there.
    """
    import types

    user_values = user_values or {}
    rate_given = cfg.target_qps if cfg.scenario in ("Offline", "Server") else cfg.target_latency_ms
    if rate_given is None:
        return None
    if cfg.min_duration_ms is not None:
        duration = cfg.min_duration_ms
    elif cfg.quick:
        return None
    else:
        duration = int(user_values.get("min_duration", MLPERF_CONF_MIN_DURATION_MS))
    ns = (cfg.target_latency_ms or 0) * 1e6
    return types.SimpleNamespace(
        min_duration_ms=duration,
        min_query_count=cfg.min_query_count if cfg.min_query_count is not None else 0,
        single_stream_expected_latency_ns=ns, multi_stream_expected_latency_ns=ns,
        multi_stream_samples_per_query=cfg.samples_per_query or int(user_values.get("samples_per_query", 8)),
        offline_expected_qps=cfg.target_qps or 0.0, server_target_qps=cfg.target_qps or 0.0)
