"""The readable end of a run: every figure named as LoadGen names it, what it
means in this scenario, and where each setting came from.

``summarize`` writes ``summary.txt`` and what ``run.py`` prints at the end.
For a performance test it lists LoadGen's figures (the names of
``mlperf_log_summary.txt``, the ``mlperf_log_detail.txt`` key in brackets)
with one line each on what they mean here: which one the MLPerf checker
reports as the result, and for Server that the target QPS is a setting (and
who chose it), not what the machine can do. INVALID runs say which check
failed and the setting that fixes it.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path

from profiles import Config
from sut import logs

log = logging.getLogger(__name__)


def headline(cfg: Config) -> str:
    """The line printed when a run starts: only what is set (no ``model=None``)."""
    parts = [("backend", cfg.backend), ("model", cfg.model), ("dataset", cfg.dataset),
             ("path", cfg.dataset_path), ("scenario", cfg.scenario), ("mode", cfg.mode)]
    text = " ".join(f"{key}={value}" for key, value in parts if value not in (None, ""))
    return f"profile {cfg.profile or '-'}: {text}{' quick' if cfg.quick else ''}"


def summarize(cfg: Config, tests: list, directory: Path, backend: dict | None = None,
              warm_up: dict | None = None) -> str:
    """The summary of a run; ``tests`` are ``runner.TestResult``s, ``backend``
    is ``Backend.describe()`` (runtime version, applied precision), ``warm_up``
    the warm-up estimate as recorded in config.json (read from ``directory``'s
    config.json when not given)."""
    run = [f"profile {cfg.profile}" if cfg.profile else None, f"backend {cfg.backend}",
           f"model {cfg.model}" if cfg.model else None]
    lines = [f"run       : {'   '.join(p for p in run if p)}"]
    if backend and backend.get("runtime"):  # figures hold for one runtime version: say which
        precision = backend.get("precision")
        lines.append(f"runtime   : {backend['runtime']}" + (f"   precision: {precision}" if precision else ""))
    samples = f"first {cfg.count} samples" if cfg.count else "all samples"
    lines.append(f"dataset   : {' '.join(p for p in (cfg.dataset, cfg.dataset_path) if p)} ({samples})")
    lines.append(f"scenario  : {cfg.scenario}" + ("   (--quick: short run, not for submission)" if cfg.quick else ""))
    warm_up = warm_up or _warm_up(directory)
    for t in tests:
        if t.error:
            lines.append(f"{t.mode:<10}: FAILED - {t.error}")
        elif t.mode == "accuracy":
            lines.append(f"accuracy  : {t.accuracy.line()}")
        else:
            lines += performance(cfg, t, warm_up)
    lines.append(f"results   : {directory}")
    return "\n".join(lines) + "\n"


def performance(cfg: Config, test, warm_up: dict | None = None) -> list[str]:
    """The lines of one performance test."""
    detail = test.detail or {}
    validity = test.validity or "no verdict"
    lines = [f"result    : {validity}" + ("" if test.validity else " (LoadGen's log has no result_validity)")]
    figures = FIGURES[cfg.scenario](cfg, detail, warm_up or {})
    width = max((len(f[0]) for f in figures), default=0)
    values = max((len(f[1]) for f in figures), default=0)
    lines += [f"  {name:<{width}} : {value:<{values}}   {meaning} [{key}]" for name, value, key, meaning in figures]
    if test.validity != "VALID":
        lines += [f"  why INVALID: {reason}" for reason in test.reasons]
    early = logs.early_stopping_lines(detail)
    if early:
        lines.append("  early stopping (LoadGen): " + " ".join(early))
    lines.append("  " + run_length(detail))
    return lines


# --- figures by scenario: (LoadGen's name, value, what it means here) ------------------

def _ms(detail, key) -> str | None:
    value = logs.number(detail, key)
    return None if value is None else f"{value / 1e6:.3f} ms"


def single_stream(cfg, detail, warm_up):
    figures = [
        ("90.0th percentile latency", _ms(detail, "result_90.00_percentile_latency_ns"),
         "result_90.00_percentile_latency_ns",
         "90% of queries (one sample, sent when the last was answered) took at most this"),
        ("Early stopping 90.0th percentile estimate", _ms(detail, "early_stopping_latency_ss"),
         "early_stopping_latency_ss", "the SingleStream result the MLPerf checker reports: a bound on the "
         "90th percentile that holds for this many queries (more queries bring it closer)"),
        ("Mean latency", _ms(detail, "result_mean_latency_ns"), "result_mean_latency_ns", "per query"),
        ("QPS w/ loadgen overhead", _rate(detail, "result_qps_with_loadgen_overhead"),
         "result_qps_with_loadgen_overhead", "queries answered per second, LoadGen's own time included"),
        ("expected latency", _ms(detail, "requested_single_stream_expected_latency_ns"),
         "single_stream_expected_latency_ns", "a setting: LoadGen generates min_duration / this many "
         f"queries; {expected_source(cfg, 'SingleStream', warm_up)}"),
    ]
    return [f for f in figures if f[1] is not None]


def multi_stream(cfg, detail, warm_up):
    per_query = logs.number(detail, "effective_samples_per_query")
    n = f"{per_query:g} samples" if per_query else "the samples per query"
    figures = [
        ("99.0th percentile latency", _ms(detail, "result_99.00_percentile_per_query_latency_ns"),
         "result_99.00_percentile_per_query_latency_ns", f"99% of queries ({n} each) took at most this"),
        ("Early stopping 99.0th percentile estimate", _ms(detail, "early_stopping_latency_ms"),
         "early_stopping_latency_ms", "the MultiStream result the MLPerf checker reports: a bound on the "
         "99th percentile that holds for this many queries"),
        ("Mean latency", _ms(detail, "result_mean_query_latency_ns"), "result_mean_query_latency_ns", "per query"),
        ("expected latency", _ms(detail, "requested_multi_stream_expected_latency_ns"),
         "multi_stream_expected_latency_ns", "a setting: LoadGen generates min_duration / this many "
         f"queries; {expected_source(cfg, 'MultiStream', warm_up)}"),
    ]
    return [f for f in figures if f[1] is not None]


def offline(cfg, detail, warm_up):
    expected = logs.number(detail, "effective_target_qps")
    generated = logs.number(detail, "generated_samples_per_query")
    figures = [
        ("Samples per second", _rate(detail, "result_samples_per_second"), "result_samples_per_second",
         "the Offline result: every sample was sent at once; this is how fast all were answered"),
        ("target_qps", _rate(detail, "effective_target_qps"), "offline_expected_qps",
         "a setting, not a measurement: LoadGen sends "
         + (f"{generated:g} samples, " if generated else "")
         + "the larger of target_qps x min_duration x 1.1 and min_query_count, so that the run lasts "
         f"at least min_duration; {target_source(cfg, 'Offline', expected, warm_up)}"),
    ]
    return [f for f in figures if f[1] is not None]


def server(cfg, detail, warm_up):
    target = logs.number(detail, "effective_target_qps")
    bound = logs.number(detail, "effective_target_latency_ns")
    p99 = logs.number(detail, "result_99.00_percentile_latency_ns")
    late = logs.number(detail, "result_overlatency_query_count")
    queries = logs.number(detail, "result_query_count")
    within = "the 99th percentile of query latency"
    if p99 is not None and bound:
        within += f": {'within' if p99 <= bound else 'OVER'} the {bound / 1e6:g} ms bound"
    figures = [
        ("Completed samples per second", _rate(detail, "result_completed_samples_per_sec"),
         "result_completed_samples_per_sec", "the Server result the MLPerf checker reports: samples "
         "answered per second while LoadGen sent queries at target_qps; VALID means the machine kept up "
         "with that target, not that it can take no more"),
        ("Scheduled samples per second", _rate(detail, "result_scheduled_samples_per_sec"),
         "result_scheduled_samples_per_sec", "the rate LoadGen's random (Poisson) schedule sent queries "
         "at: target_qps give or take chance, not the machine's capacity"),
        ("target_qps", _rate(detail, "effective_target_qps"), "server_target_qps",
         f"a setting: {target_source(cfg, 'Server', target, warm_up)}; the highest VALID one: "
         f"--find-peak-performance"),
        ("target_latency", f"{bound / 1e6:g} ms" if bound else None, "server_target_latency_ns",
         f"the bound on the 99th percentile latency: {bound_source(cfg, bound)}"),
        ("99.00 percentile latency", _ms(detail, "result_99.00_percentile_latency_ns"),
         "result_99.00_percentile_latency_ns", within),
        ("overlatency queries", f"{late:g} of {queries:g}" if late is not None and queries else None,
         "result_overlatency_query_count", "queries answered later than target_latency; early stopping "
         "allows only a few"),
    ]
    return [f for f in figures if f[1] is not None]


FIGURES = {"SingleStream": single_stream, "MultiStream": multi_stream, "Offline": offline, "Server": server}


def _rate(detail, key) -> str | None:
    value = logs.number(detail, key)
    return None if value is None else f"{value:.2f}"


def run_length(detail: dict) -> str:
    """How long the run was and what LoadGen asked of it."""
    offline = detail.get("effective_scenario") == "Offline"
    queries = logs.number(detail, "generated_samples_per_query" if offline else "result_query_count")
    duration = logs.run_duration_s(detail)
    count_key = "effective_min_sample_count" if offline else "effective_min_query_count"
    asked = [f"min_duration {logs.number(detail, 'effective_min_duration_ms'):g} ms"
             if logs.number(detail, "effective_min_duration_ms") is not None else None,
             f"{'min_query_count (samples)' if offline else 'min_query_count'} {logs.number(detail, count_key):g}"
             if logs.number(detail, count_key) is not None else None]
    unit = "samples in one query" if offline else "queries"
    ran = ", ".join(p for p in (f"{duration:.1f} s" if duration is not None else None,
                                f"{queries:g} {unit}" if queries is not None else None) if p)
    asked_text = ", ".join(a for a in asked if a)
    return f"run length: {ran or 'unknown'}" + (f" (asked: {asked_text})" if asked_text else "")


# --- where a setting came from ----------------------------------------------------------

def _user_conf_sets(cfg: Config, scenario: str, key: str) -> bool:
    """Whether ``cfg.user_conf`` has a line for ``key`` in ``scenario`` (or ``*``)."""
    if not cfg.user_conf:
        return False
    try:
        text = Path(cfg.user_conf).read_text(errors="replace")
    except OSError:
        return False
    pattern = re.compile(rf"^\s*[^#\s]+\.(\*|{scenario})\.{key}\s*=", re.MULTILINE)
    return bool(pattern.search(text))


def target_source(cfg: Config, scenario: str, target: float | None, warm_up: dict) -> str:
    if cfg.target_qps is not None:
        return "set by --target-qps"
    if _user_conf_sets(cfg, scenario, "target_qps"):
        return f"set by user.conf ({cfg.user_conf})"
    rate = warm_up.get("samples_per_s")
    if rate and target:
        return (f"chosen by the harness, {target / rate:.2f}x the {rate:.1f} samples/s measured in warm-up "
                f"(--target-qps or user.conf to choose)")
    return "chosen by the harness from the warm-up throughput (--target-qps or user.conf to choose)"


def expected_source(cfg: Config, scenario: str, warm_up: dict) -> str:
    if cfg.target_latency_ms is not None:
        return "set by --target-latency-ms"
    if _user_conf_sets(cfg, scenario, "target_latency"):
        return f"set by user.conf ({cfg.user_conf})"
    return "chosen by the harness below the warm-up latency, so that LoadGen generates enough queries"


def bound_source(cfg: Config, bound_ns: float | None) -> str:
    official = mlperf_conf_bound_ns(cfg.mlperf_model)
    official_text = f"mlperf.conf's bound for {cfg.mlperf_model} is {official / 1e6:g} ms" if official else ""
    if cfg.target_latency_ms is not None:
        source = "set by --target-latency-ms"
    elif _user_conf_sets(cfg, "Server", "target_latency"):
        source = f"set by user.conf ({cfg.user_conf})"
    elif official and bound_ns and bound_ns != official and cfg.quick:
        source = "raised by --quick so that a quick run tests the harness, not the machine's load"
    elif official and bound_ns == official:
        return f"{official_text} (a submission uses it)"
    else:
        source = "the harness's choice"
    return f"{source}; {official_text}" if official_text and bound_ns != official else source


@functools.lru_cache(maxsize=None)
def mlperf_conf_bound_ns(model: str) -> float | None:
    """The Server latency bound LoadGen's built-in mlperf.conf gives ``model``."""
    try:
        import mlperf_loadgen as lg

        settings = lg.TestSettings()
        if settings.FromConfig("", model, "Server", 0) != 0:
            return None
        return float(settings.server_target_latency_ns)
    except Exception as exc:  # noqa: BLE001 - only the wording of the summary depends on it
        log.debug("no mlperf.conf bound for %s: %s", model, exc)
        return None


def _warm_up(directory: Path) -> dict | None:
    """The warm-up estimate the run recorded in its config.json (None if absent)."""
    try:
        return json.loads((Path(directory) / "config.json").read_text()).get("warm_up")
    except (OSError, ValueError, AttributeError):
        return None
