"""Our own checker: every problem in a submission tree, in one list.

``check_tree(root)`` walks ``<root>/{closed,open}/<submitter>/`` like the
official v6.1 checker and returns one line per problem (an empty list means
the tree passes). Unlike the official tool it never stops or crashes at the
first missing file, and it also checks our own models (keyword spotting),
which the official checker does not know, and the accuracy-log hash against
the full log kept in ``<root>/full_logs``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from submission import rules, system_desc, truncate
from submission.compliance import PASS
from sut.logs import read_detail

SCENARIO_FILES = ("measurements.json", "user.conf", "README.md")
PERF_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
ACC_FILES = ("accuracy.txt", "mlperf_log_accuracy.json", "mlperf_log_summary.txt", "mlperf_log_detail.txt")
MEASUREMENT_FIELDS = ("input_data_types", "retraining", "starting_weights_filename", "weight_data_types",
                      "weight_transformations")
IGNORED_ROOT_ENTRIES = ("full_logs",)


def check_tree(root: str | Path) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: not a directory"]
    problems: list[str] = []
    divisions = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name not in IGNORED_ROOT_ENTRIES]
    if not any(d.name in rules.DIVISIONS for d in divisions):
        problems.append(f"{root}: no division directory ({', '.join(rules.DIVISIONS)})")
    for division in divisions:
        if division.name not in rules.DIVISIONS:
            problems.append(f"{_rel(division, root)}: unknown division; accepted: {', '.join(rules.DIVISIONS)}")
            continue
        for submitter in sorted(p for p in division.iterdir() if p.is_dir()):
            problems += _check_submitter(root, submitter, division.name)
    return problems


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _check_submitter(root: Path, base: Path, division: str) -> list[str]:
    problems: list[str] = []
    src = base / "src"
    if not src.is_dir() or not any(src.iterdir()):
        problems.append(f"{_rel(src, root)}: missing or empty (code or a pointer to it)")
    mapping: dict[str, str] = {}
    if division == "open" and (base / "model_mapping.json").exists():
        loaded = _load_json(base / "model_mapping.json", root, problems)
        if isinstance(loaded, dict):
            mapping = loaded
        elif loaded is not None:
            problems.append(f"{_rel(base / 'model_mapping.json', root)}: must be a JSON object")
    results = base / "results"
    if not results.is_dir():
        return problems + [f"{_rel(results, root)}: missing"]
    systems = sorted(p for p in results.iterdir() if p.is_dir())
    if not systems:
        problems.append(f"{_rel(results, root)}: holds no system")
    for system in systems:
        problems += _check_system_json(root, base / "systems" / f"{system.name}.json", division, base.name)
        for model in sorted(p for p in system.iterdir() if p.is_dir()):
            problems += _check_model(root, model, division, mapping)
    return problems


def _load_json(path: Path, root: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        problems.append(f"{_rel(path, root)}: unreadable JSON ({exc})")
        return None


def _check_system_json(root: Path, path: Path, division: str, submitter: str) -> list[str]:
    if not path.exists():
        return [f"{_rel(path, root)}: missing system description"]
    problems: list[str] = []
    desc = _load_json(path, root, problems)
    if not isinstance(desc, dict):
        return problems or [f"{_rel(path, root)}: must be a JSON object"]
    problems += [f"{_rel(path, root)}: {p}" for p in system_desc.field_problems(desc)]
    for key, expected in (("division", division), ("submitter", submitter)):
        value = str(desc.get(key, ""))
        if value and value.lower() != expected.lower():
            problems.append(f"{_rel(path, root)}: {key} is '{value}' but the directory is '{expected}'")
    return problems


def _check_model(root: Path, model: Path, division: str, mapping: dict) -> list[str]:
    problems: list[str] = []
    model_rules = rules.rules_for_directory(model.name, mapping)
    if division == "closed" and model.name not in rules.CLOSED_MODELS:
        problems.append(f"{_rel(model, root)}: the closed division has no model '{model.name}'; "
                        f"accepted: {', '.join(rules.CLOSED_MODELS)}")
    elif model_rules is None:
        problems.append(f"{_rel(model, root)}: unknown model; map it to an official one in model_mapping.json")
    scenarios = sorted(p.name for p in model.iterdir() if p.is_dir())
    for name in scenarios:
        if name not in rules.SCENARIOS:
            problems.append(f"{_rel(model / name, root)}: unknown scenario; accepted: {', '.join(rules.SCENARIOS)}")
    if division == "closed" and model_rules is not None:
        missing = [s for s in model_rules.required_scenarios_edge if s not in scenarios]
        if missing:
            problems.append(f"{_rel(model, root)}: closed edge needs scenarios {', '.join(missing)}")
    for name in scenarios:
        if name in rules.SCENARIOS:
            problems += _check_scenario(root, model / name, division, model_rules)
    return problems


def _check_scenario(root: Path, path: Path, division: str, model_rules: rules.ModelRules | None) -> list[str]:
    problems: list[str] = []
    rel = _rel(path, root)
    for name in SCENARIO_FILES:
        problems += _nonempty(path / name, root)
    if (path / "measurements.json").exists():
        data = _load_json(path / "measurements.json", root, problems)
        if isinstance(data, dict):
            problems += [f"{rel}/measurements.json: field '{k}' is missing or empty" for k in MEASUREMENT_FIELDS
                         if system_desc.is_empty(data.get(k))]
    perf = path / "performance" / "run_1"
    for name in PERF_FILES:
        problems += _nonempty(perf / name, root)
    if (perf / "mlperf_log_detail.txt").exists():
        problems += _check_performance(root, perf / "mlperf_log_detail.txt", path.name, division, model_rules)
    acc = path / "accuracy"
    for name in ACC_FILES:
        problems += _nonempty(acc / name, root)
    problems += _check_accuracy(root, path, division, model_rules)
    compliance_needed = division == "closed"
    for test in rules.COMPLIANCE_TESTS:
        if compliance_needed or (path / test).exists():
            problems += _check_compliance(root, path, test, division, model_rules)
    return problems


def _nonempty(path: Path, root: Path) -> list[str]:
    if not path.is_file():
        return [f"{_rel(path, root)}: missing"]
    if path.stat().st_size == 0:
        return [f"{_rel(path, root)}: empty"]
    return []


def _check_performance(root: Path, detail_path: Path, scenario: str, division: str,
                       model_rules: rules.ModelRules | None) -> list[str]:
    rel = _rel(detail_path, root)
    detail = read_detail(detail_path)
    if "effective_scenario" not in detail:
        return [f"{rel}: not a LoadGen detail log"]
    problems = [f"{rel}: LoadGen error {e}" for e in detail["_errors"]]
    if detail.get("effective_scenario") != scenario:
        problems.append(f"{rel}: scenario is {detail.get('effective_scenario')}, directory says {scenario}")
    if detail.get("effective_test_mode") != "PerformanceOnly":
        problems.append(f"{rel}: test mode is {detail.get('effective_test_mode')}, needs PerformanceOnly")
    for key, expected in rules.SEEDS.items():
        if detail.get(f"effective_{key}") != expected:
            problems.append(f"{rel}: {key} is {detail.get(f'effective_{key}')}, needs {expected}")
    duration = detail.get("effective_min_duration_ms") or 0
    if duration < rules.MIN_DURATION_MS:
        problems.append(f"{rel}: min duration {duration} ms < {rules.MIN_DURATION_MS} ms")
    count = detail.get("effective_performance_sample_count") or 0
    if model_rules is not None and count < model_rules.performance_sample_count:
        problems.append(f"{rel}: performance sample count {count} < {model_rules.performance_sample_count}")
    if scenario in rules.EARLY_STOPPING_SCENARIOS and detail.get("early_stopping_met") is not True:
        problems.append(f"{rel}: early stopping not met ({detail.get('early_stopping_result') or 'no result'})")
    if detail.get("result_validity") != "VALID":
        reason = "; ".join(str(x) for x in (detail.get("result_invalid_reason"),) if x)
        problems.append(f"{rel}: result is {detail.get('result_validity')}" + (f" ({reason})" if reason else ""))
    min_spq = model_rules.offline_min_samples_per_query if model_rules else None
    spq = detail.get("effective_samples_per_query") or 0
    if division == "closed" and scenario == "Offline" and min_spq and spq < min_spq:
        problems.append(f"{rel}: Offline samples per query {spq} < {min_spq}")
    if detail.get(rules.performance_metric_key(scenario)) in (None, 0):
        problems.append(f"{rel}: no {rules.performance_metric_key(scenario)} result")
    return problems


def _check_accuracy(root: Path, path: Path, division: str, model_rules: rules.ModelRules | None) -> list[str]:
    problems: list[str] = []
    acc = path / "accuracy"
    txt, log = acc / "accuracy.txt", acc / "mlperf_log_accuracy.json"
    if txt.is_file() and txt.stat().st_size:
        lines = txt.read_text(errors="replace").splitlines()
        match = re.match(rules.ACCURACY_PATTERN, lines[0]) if lines else None
        if not match:
            problems.append(f"{_rel(txt, root)}: first line is not the scorer's 'accuracy=...' line")
        elif division == "closed" and model_rules and model_rules.closed_accuracy_target is not None \
                and float(match.group(1)) < model_rules.closed_accuracy_target:
            problems.append(f"{_rel(txt, root)}: accuracy {match.group(1)}% < closed target "
                            f"{model_rules.closed_accuracy_target:.3f}%")
        digest = truncate.read_hash_line(txt)
        if digest is None:
            problems.append(f"{_rel(txt, root)}: no 'hash=<sha256>' line (the accuracy log is not truncated)")
        else:
            full = _full_log(root, path)
            if full is not None and truncate.sha256_of(full) != digest:
                problems.append(f"{_rel(txt, root)}: hash does not match the full log {_rel(full, root)}")
    if log.is_file() and log.stat().st_size > rules.MAX_ACCURACY_LOG_BYTES:
        problems.append(f"{_rel(log, root)}: {log.stat().st_size} bytes, not truncated "
                        f"(limit {rules.MAX_ACCURACY_LOG_BYTES})")
    detail_path = acc / "mlperf_log_detail.txt"
    if detail_path.is_file():
        detail = read_detail(detail_path)
        problems += [f"{_rel(detail_path, root)}: LoadGen error {e}" for e in detail["_errors"]]
        if detail.get("effective_test_mode") not in (None, "AccuracyOnly"):
            problems.append(f"{_rel(detail_path, root)}: test mode is {detail.get('effective_test_mode')}, "
                            f"needs AccuracyOnly")
        total = detail.get("effective_accuracy_sample_count", detail.get("qsl_reported_total_count"))
        if model_rules is not None and total != model_rules.dataset_size:
            problems.append(f"{_rel(detail_path, root)}: accuracy run covers {total} samples, "
                            f"the dataset has {model_rules.dataset_size}")
    return problems


def _full_log(root: Path, scenario_path: Path) -> Path | None:
    """The untruncated accuracy log kept in <root>/full_logs/<system>/<model>/<Scenario>/accuracy."""
    system, model, scenario = scenario_path.parts[-3:]
    full = root / "full_logs" / system / model / scenario / "accuracy" / "mlperf_log_accuracy.json"
    return full if full.exists() else None


def _check_compliance(root: Path, path: Path, test: str, division: str,
                      model_rules: rules.ModelRules | None) -> list[str]:
    out = path / test
    if not out.is_dir():
        return [f"{_rel(out, root)}: missing (compliance test required in the {division} division)"]
    problems: list[str] = []
    verify = ["verify_performance.txt"] + (["verify_accuracy.txt"] if test == "TEST01" else [])
    for name in verify:
        file = out / name
        if not file.is_file():
            problems.append(f"{_rel(file, root)}: missing")
        elif PASS not in [line.strip() for line in file.read_text(errors="replace").splitlines()]:
            problems.append(f"{_rel(file, root)}: does not say {PASS}")
    perf = out / "performance" / "run_1"
    for name in PERF_FILES:
        problems += _nonempty(perf / name, root)
    if (perf / "mlperf_log_detail.txt").exists():
        problems += _check_performance(root, perf / "mlperf_log_detail.txt", path.name, division, model_rules)
    if test == "TEST01":
        log = out / "accuracy" / "mlperf_log_accuracy.json"
        problems += _nonempty(log, root)
        if log.is_file() and log.stat().st_size > rules.MAX_ACCURACY_LOG_BYTES:
            problems.append(f"{_rel(log, root)}: {log.stat().st_size} bytes, not truncated")
    return problems
