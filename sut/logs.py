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
    """Why LoadGen called the run INVALID, with the setting that would fix it."""
    reasons = []
    if detail.get("result_min_duration_met") is False:
        reasons.append("min duration not met: the run ended before min_duration_ms; lower "
                       "--target-latency-ms / raise --target-qps so LoadGen generates more queries")
    if detail.get("result_min_queries_met") is False:
        reasons.append("min query count not met: raise the number of queries (min_query_count)")
    if detail.get("early_stopping_met") is False:
        reasons.append("early stopping not met: run more queries (min_query_count or min_duration_ms)")
    if detail.get("result_perf_constraints_met") is False:
        reasons.append("latency constraint not met: lower --target-qps or raise the latency bound")
    text = detail.get("result_invalid_reason")
    if text and not reasons:
        reasons.append(str(text).strip())
    return reasons


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
