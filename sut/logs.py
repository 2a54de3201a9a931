"""Reading LoadGen's ``mlperf_log_detail.txt``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PREFIX = ":::MLLOG "


def read_detail(path: Path) -> dict[str, Any]:
    """Key -> value of every MLLOG line (the last one wins); errors collected
    under ``"_errors"`` and warnings under ``"_warnings"``."""
    values: dict[str, Any] = {"_errors": [], "_warnings": []}
    if not path.exists():
        return values
    with open(path, errors="replace") as f:
        for line in f:
            if not line.startswith(PREFIX):
                continue
            try:
                record = json.loads(line[len(PREFIX):])
            except json.JSONDecodeError:
                continue
            values[record["key"]] = record.get("value")
            meta = record.get("metadata") or {}
            if meta.get("is_error"):
                values["_errors"].append(f"{record['key']}: {record.get('value')}")
            elif meta.get("is_warning"):
                values["_warnings"].append(f"{record['key']}: {record.get('value')}")
    return values


METRICS = {
    "SingleStream": ("result_90.00_percentile_latency_ns", "90th percentile latency", "ms"),
    "MultiStream": ("result_99.00_percentile_latency_ns", "99th percentile latency", "ms"),
    "Offline": ("result_samples_per_second", "samples per second", "samples/s"),
    "Server": ("result_scheduled_samples_per_sec", "scheduled samples per second", "samples/s"),
}


def metric(detail: dict[str, Any], scenario: str) -> tuple[str, str] | None:
    """(name, formatted value) of the scenario's MLPerf metric, if present."""
    key, name, unit = METRICS[scenario]
    value = detail.get(key)
    if value is None:
        return None
    if unit == "ms":
        return name, f"{float(value) / 1e6:.3f} ms"
    return name, f"{float(value):.2f} {unit}"


def invalid_reasons(detail: dict[str, Any]) -> list[str]:
    """Why LoadGen called the run INVALID, each with the figures that show it
    and the setting that would fix it (for the scenario in ``detail``)."""
    scenario = detail.get("effective_scenario")
    reasons = []
    if detail.get("result_min_duration_met") is False:
        reasons.append("min duration not met: " + _min_duration_fix(detail, scenario))
    if detail.get("result_min_queries_met") is False:
        reasons.append(f"min query count not met: fewer than min_query_count "
                       f"({_fmt(detail.get('effective_min_query_count'))}) queries were answered; raise the "
                       f"run's length (--min-duration) or lower --min-query-count")
    if detail.get("result_perf_constraints_met") is False:
        late, total = detail.get("result_overlatency_query_count"), detail.get("result_query_count")
        bound = number(detail, "effective_target_latency_ns")
        shown = f" ({_fmt(late)} of {_fmt(total)} queries over the {bound / 1e6:g} ms bound)" if bound else ""
        reasons.append(f"latency constraint not met{shown}: lower --target-qps (the highest VALID one: "
                       f"--find-peak-performance) or raise the bound (--target-latency-ms)")
    if detail.get("early_stopping_met") is False:
        if scenario == "Server":
            fix = "lower --target-qps so fewer queries are late, or run more queries (--min-query-count)"
        else:
            fix = ("run more queries: raise --min-query-count (early stopping needs at least 64 SingleStream, "
                   "662 MultiStream queries) or --min-duration")
        reasons.append(f"early stopping not met: {fix}")
    text = detail.get("result_invalid_reason")
    if text and not reasons:
        reasons.append(str(text).strip())
    return reasons


def _fmt(value) -> str:
    return "?" if value is None else f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _min_duration_fix(detail: dict[str, Any], scenario: str | None) -> str:
    asked = number(detail, "effective_min_duration_ms")
    lasted = run_duration_s(detail)
    ran = (f"the run lasted {lasted:.2f} s of min_duration {asked / 1000:g} s"
           if lasted is not None and asked is not None else "the run ended before min_duration_ms")
    if scenario == "Offline":
        achieved = number(detail, "result_samples_per_second")
        hint = f" (about {achieved:.1f} achieved)" if achieved else ""
        return (f"{ran}: LoadGen generated too few samples for the machine's speed; raise --target-qps{hint}, "
                f"or let --find-peak-performance find it")
    if scenario == "Server":
        return f"{ran}: raise --target-qps so LoadGen generates more queries, or lower --min-duration"
    if scenario in ("SingleStream", "MultiStream"):
        return (f"{ran}: the machine answered faster than the expected latency, so LoadGen's queries ran "
                f"out; lower --target-latency-ms (or --target-qps) so it generates more")
    return (f"{ran}; lower --target-latency-ms / raise --target-qps so LoadGen generates more queries")


def number(detail: dict[str, Any], key: str) -> float | None:
    """A numeric MLLOG value as a float (None when absent or not a number)."""
    value = detail.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


#: format of LoadGen's ``power_begin`` / ``power_end`` values, e.g. "12-02-2026 12:41:36.986"
POWER_TIME = "%m-%d-%Y %H:%M:%S.%f"


def run_duration_s(detail: dict[str, Any]) -> float | None:
    """How long LoadGen's timed run took (its ``power_begin`` to ``power_end``
    marks, millisecond resolution); None when either is missing."""
    from datetime import datetime

    try:
        begin = datetime.strptime(str(detail["power_begin"]), POWER_TIME)
        end = datetime.strptime(str(detail["power_end"]), POWER_TIME)
    except (KeyError, ValueError):
        return None
    return (end - begin).total_seconds()


def early_stopping_lines(detail: dict[str, Any]) -> list[str]:
    """LoadGen's early-stopping report (``early_stopping_result``) as its
    sentences: '* Run successful.', '* Early stopping 90.0th percentile estimate: 66919', ..."""
    text = " ".join(str(detail.get("early_stopping_result") or "").split())
    return [("* " + part.strip()) for part in text.split("* ") if part.strip()]
