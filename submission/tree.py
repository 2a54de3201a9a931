"""Writing the v6.x submission tree from finished LoadGen runs.

::

    <root>/<division>/<submitter>/systems/<system>.json
                                  src/README.md
                                  model_mapping.json            (open)
                                  results/<system>/<model>/<Scenario>/
                                      measurements.json  user.conf  README.md
                                      performance/run_1/mlperf_log_{summary,detail}.txt
                                      accuracy/{accuracy.txt, mlperf_log_accuracy.json (truncated),
                                                mlperf_log_summary.txt, mlperf_log_detail.txt}
                                      TEST01/{verify_accuracy.txt, verify_performance.txt,
                                              accuracy/{mlperf_log_accuracy.json, accuracy.txt, ...},
                                              performance/run_1/...}
                                      TEST04/{verify_performance.txt, performance/run_1/...}
    <root>/full_logs/<system>/<model>/<Scenario>/...     (what LoadGen wrote, untruncated)

The full logs are where the runs write; this module copies from there.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from submission import truncate

LOG_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
ACCURACY_LOG = "mlperf_log_accuracy.json"
FULL_LOGS = "full_logs"

#: user.conf key -> (detail-log key, scale to user.conf units, scenarios it belongs to)
USER_CONF_KEYS = {
    "target_latency": ("requested_single_stream_expected_latency_ns", 1e-6, ("SingleStream",)),
    "target_qps": ("requested_offline_expected_qps", 1.0, ("Offline",)),
    "min_duration": ("requested_min_duration_ms", 1.0, None),
    "max_duration": ("requested_max_duration_ms", 1.0, None),
    "min_query_count": ("requested_min_query_count", 1.0, None),
    "max_query_count": ("requested_max_query_count", 1.0, None),
    "performance_sample_count_override": ("requested_performance_sample_count_override", 1.0, None),
}
MULTISTREAM_KEYS = {
    "target_latency": ("requested_multi_stream_expected_latency_ns", 1e-6),
    "samples_per_query": ("requested_multi_stream_samples_per_query", 1.0),
}
SERVER_KEYS = {
    "target_qps": ("requested_server_target_qps", 1.0),
    "target_latency": ("requested_server_target_latency_ns", 1e-6),
}


def server_latency_ms(value_ms: float, bound_ms: float | None = None) -> int:
    """``value_ms`` rounded up to whole milliseconds, at most ``bound_ms`` (rounded down) when given."""
    whole = math.ceil(round(value_ms, 6))  # 15.000000001 from ns arithmetic is 15
    if bound_ms is not None:
        whole = min(whole, max(1, math.floor(round(bound_ms, 6))))
    return whole


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def user_conf_text(detail: dict[str, Any], mlperf_model: str, scenario: str, note: str = "",
                   latency_bound_ms: float | None = None) -> str:
    """A user.conf that, layered on the built-in mlperf.conf, reproduces the
    settings LoadGen logged as requested in ``detail``.

    LoadGen reads Server's ``target_latency`` as whole milliseconds (it would
    truncate 15.5 to 15), so a fractional one is rounded up to the next whole
    millisecond, but never above ``latency_bound_ms`` (the benchmark's bound)."""
    lines = [f"# LoadGen settings this run used ({scenario}); layered over the built-in mlperf.conf."]
    if note:
        lines.append(f"# {note}")
    pairs: dict[str, tuple[str, float]] = {}
    for key, (detail_key, scale, scenarios) in USER_CONF_KEYS.items():
        if scenarios is None or scenario in scenarios:
            pairs[key] = (detail_key, scale)
    pairs.update(MULTISTREAM_KEYS if scenario == "MultiStream" else {})
    pairs.update(SERVER_KEYS if scenario == "Server" else {})
    for key, (detail_key, scale) in pairs.items():
        value = detail.get(detail_key)
        if value is None or isinstance(value, bool):
            continue
        if key in ("max_duration", "max_query_count") and not value:
            continue  # 0 = no limit, LoadGen's default
        if key == "performance_sample_count_override" and not value:
            continue
        number = float(value) * scale
        if scenario == "Server" and key == "target_latency":
            number = server_latency_ms(number, latency_bound_ms)
            if number != float(value) * scale:
                lines.append(f"# the run's bound {float(value) * scale:g} ms as whole milliseconds, "
                             "as LoadGen reads Server's target_latency")
        lines.append(f"{mlperf_model}.{scenario}.{key} = {_number(number)}")
    return "\n".join(lines) + "\n"


class Tree:
    """One submitter's part of a submission tree, for one system."""

    def __init__(self, root: Path, division: str, submitter: str, system: str):
        self.root, self.division, self.submitter, self.system = Path(root), division, submitter, system
        self.base = self.root / division / submitter

    # --- locations ----------------------------------------------------------
    def scenario_dir(self, model: str, scenario: str) -> Path:
        return self.base / "results" / self.system / model / scenario

    def full_dir(self, model: str, scenario: str) -> Path:
        return self.root / FULL_LOGS / self.system / model / scenario

    def run_dir(self, model: str, scenario: str, test: str) -> Path:
        """Where LoadGen writes ``test`` (accuracy, performance, TEST01, TEST04)."""
        full = self.full_dir(model, scenario)
        if test == "accuracy":
            return full / "accuracy"
        if test == "performance":
            return full / "performance" / "run_1"
        return full / test / "performance" / "run_1"

    # --- submitter level -------------------------------------------------------
    def write_system(self, desc: dict[str, Any]) -> Path:
        path = self.base / "systems" / f"{self.system}.json"
        _write_json(path, desc)
        return path

    def write_src(self, text: str) -> Path:
        path = self.base / "src" / "README.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def write_model_mapping(self, mapping: dict[str, str]) -> Path:
        path = self.base / "model_mapping.json"
        _write_json(path, mapping)
        return path

    # --- scenario level ----------------------------------------------------------
    def write_scenario_files(self, model: str, scenario: str, measurements: dict[str, Any],
                             user_conf: str, readme: str) -> None:
        out = self.scenario_dir(model, scenario)
        _write_json(out / "measurements.json", measurements)
        (out / "user.conf").write_text(user_conf)
        (out / "README.md").write_text(readme)

    def add_performance(self, model: str, scenario: str) -> None:
        _copy_logs(self.run_dir(model, scenario, "performance"),
                   self.scenario_dir(model, scenario) / "performance" / "run_1")

    def add_accuracy(self, model: str, scenario: str) -> str:
        """Copy the accuracy run, truncating its log; returns the full log's sha256."""
        src, dst = self.run_dir(model, scenario, "accuracy"), self.scenario_dir(model, scenario) / "accuracy"
        _copy_logs(src, dst)
        shutil.copyfile(src / "accuracy.txt", dst / "accuracy.txt")
        digest = truncate.truncate_copy(src / ACCURACY_LOG, dst / ACCURACY_LOG)
        truncate.write_hash_line(dst / "accuracy.txt", digest)
        return digest

    def add_compliance(self, model: str, scenario: str, test: str, verify_accuracy: str | None,
                       verify_performance: str, accuracy_files: dict[str, str] | None = None) -> None:
        """Copy a compliance run and its verification files.

        ``accuracy_files`` (TEST01): extra text files for ``TEST01/accuracy/``
        (accuracy.txt and, after a mismatch, baseline/compliance_accuracy.txt).
        """
        src = self.run_dir(model, scenario, test)
        out = self.scenario_dir(model, scenario) / test
        _copy_logs(src, out / "performance" / "run_1")
        (out / "verify_performance.txt").write_text(verify_performance)
        (src.parents[1] / "verify_performance.txt").write_text(verify_performance)
        if verify_accuracy is not None:
            (out / "verify_accuracy.txt").write_text(verify_accuracy)
            (src.parents[1] / "verify_accuracy.txt").write_text(verify_accuracy)
        if test == "TEST01":
            acc = out / "accuracy"
            acc.mkdir(parents=True, exist_ok=True)
            for name, text in (accuracy_files or {}).items():
                (acc / name).write_text(text)
            digest = truncate.truncate_copy(src / ACCURACY_LOG, acc / ACCURACY_LOG)
            truncate.write_hash_line(acc / "accuracy.txt", digest)


def _copy_logs(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in LOG_FILES:
        shutil.copyfile(src / name, dst / name)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
