"""Our own checker: every problem in a submission tree, in one list.

``check_tree(root)`` walks ``<root>/{closed,open}/<submitter>/`` like the
official v6.1 checker (``tools/submission/submission_checker`` of
mlcommons/inference) and returns one line per problem that checker reports
(an empty list means the tree passes it), in the same places and for the
same rules: performance logs (sample count, seeds, early stopping, the
model's Server latency bound, closed Offline samples per query, duration),
accuracy (hash line, closed target, truncation, dataset size), the system
description (status, system type, required and meaningful fields, names),
measurements and the files next to them, required scenarios per system type
in the closed division, and the compliance tests (closed only). Unlike the
official tool it never stops or crashes at the first missing file.

``check_notes(root)`` lists what the official checker does not look at but a
reviewer would: INVALID results (v6.1 never reads ``result_validity``),
compliance verdicts in the open division, the accuracy-log hash against
``<root>/full_logs``, models the official checker does not know (keyword
spotting: our own rules apply and are reported as problems).

``findings(root)`` gives both as :class:`Finding` objects with a ``kind``, so a
test can compare them rule by rule with the official checker's output.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from submission import rules, system_desc, truncate
from submission.compliance import PASS
from sut.logs import read_detail

SCENARIO_FILES = ("user.conf", "README.md")  # the checker's REQUIRED_MEASURE_FILES
PERF_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
TEST01_ACC_FILES = ("mlperf_log_accuracy.json", "accuracy.txt", "baseline_accuracy.txt", "compliance_accuracy.txt")
MEASUREMENT_FIELDS = ("input_data_types", "retraining", "starting_weights_filename", "weight_data_types",
                      "weight_transformations")
IGNORED_ROOT_ENTRIES = ("full_logs",)
UNKNOWN_MODEL_NOTE = ("keyword spotting has no MLPerf Inference benchmark: the official checker cannot check "
                      "this model (it stops with 'model not known'); our own rules apply")


@dataclasses.dataclass(frozen=True)
class Finding:
    where: str      # path relative to the root
    kind: str       # stable name of the rule, e.g. "performance_sample_count", "system_field_empty:cooling"
    text: str
    problem: bool   # True: the official checker reports it too; False: a note only we give

    def line(self) -> str:
        return f"{self.where}: {self.text}"


class _Out:
    def __init__(self, root: Path):
        self.root, self.items = root, []

    def rel(self, path: Path) -> str:
        if path == self.root:
            return str(path)
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def problem(self, path: Path, kind: str, text: str) -> None:
        self.items.append(Finding(self.rel(path), kind, text, True))

    def note(self, path: Path, kind: str, text: str) -> None:
        self.items.append(Finding(self.rel(path), kind, text, False))


def findings(root: str | Path) -> list[Finding]:
    root = Path(root)
    out = _Out(root)
    if not root.is_dir():
        out.problem(root, "not_a_directory", "not a directory")
        return out.items
    divisions = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name not in IGNORED_ROOT_ENTRIES]
    if not any(d.name in rules.DIVISIONS for d in divisions):
        out.problem(root, "no_division", f"no division directory ({', '.join(rules.DIVISIONS)})")
    for division in divisions:
        if division.name not in rules.DIVISIONS:
            out.note(division, "unknown_division", f"unknown division, ignored by the checker; "
                                                   f"accepted: {', '.join(rules.DIVISIONS)}")
            continue
        for submitter in sorted(p for p in division.iterdir() if p.is_dir()):
            _check_submitter(out, submitter, division.name)
    return out.items


def check_tree(root: str | Path) -> list[str]:
    """Every problem the official v6.1 checker would report, one line each."""
    return [f.line() for f in findings(root) if f.problem]


def check_notes(root: str | Path) -> list[str]:
    """What the official checker does not check but we noticed, one line each."""
    return [f.line() for f in findings(root) if not f.problem]


def _check_submitter(out: _Out, base: Path, division: str) -> None:
    src = base / "src"
    if not src.is_dir():
        out.problem(src, "src_missing", "missing (code or a pointer to it)")
    elif not any(src.iterdir()):
        out.note(src, "src_empty", "empty (code or a pointer to it)")
    mapping: dict[str, str] = {}
    if division == "open" and (base / "model_mapping.json").exists():
        loaded = _load_json(out, base / "model_mapping.json")
        if isinstance(loaded, dict):
            mapping = loaded
        elif loaded is not None:
            out.problem(base / "model_mapping.json", "model_mapping", "must be a JSON object")
    results = base / "results"
    if not results.is_dir():
        out.problem(results, "results_missing", "missing")
        return
    systems = sorted(p for p in results.iterdir() if p.is_dir())
    if not systems:
        out.problem(results, "no_system", "holds no system")
    for system in systems:
        desc = _check_system_json(out, base / "systems" / f"{system.name}.json", division, base.name)
        system_type = str(desc.get("system_type", "")) if isinstance(desc, dict) else ""
        for model in sorted(p for p in system.iterdir() if p.is_dir()):
            _check_model(out, model, division, mapping, system_type)


def _load_json(out: _Out, path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        out.problem(path, "unreadable_json", f"unreadable JSON ({exc})")
        return None


def _check_system_json(out: _Out, path: Path, division: str, submitter: str) -> dict | None:
    if not path.exists():
        out.problem(path, "system_json_missing", "missing system description")
        return None
    desc = _load_json(out, path)
    if not isinstance(desc, dict):
        if desc is not None:
            out.problem(path, "system_json_not_object", "must be a JSON object")
        return None
    for kind, text in system_desc.checker_problems(desc):
        out.problem(path, kind, text)
    for field in system_desc.fields_to_fill(desc):
        out.note(path, f"system_field_unset:{field}", f"field '{field}' is empty (the checker accepts it; "
                                                     f"a reviewer may ask)")
    if division == "closed" and str(desc.get("is_network", "")).lower() == "true":
        out.problem(path, "system_network", "is_network is true, the closed division needs false")
    for key, expected in (("division", division), ("submitter", submitter)):
        value = str(desc.get(key, ""))
        if value.lower() != expected.lower():
            out.problem(path, f"system_{key}", f"{key} is '{value}' but the directory is '{expected}'")
    return desc


def _check_model(out: _Out, model: Path, division: str, mapping: dict, system_type: str) -> None:
    model_rules = rules.rules_for_directory(model.name, mapping)
    if model_rules is not None and model_rules.official is None:
        out.note(model, "unknown_to_official_checker", UNKNOWN_MODEL_NOTE)
    if division == "closed" and model.name not in rules.CLOSED_MODELS:
        out.problem(model, "closed_model", f"the closed division has no model '{model.name}'; "
                                           f"accepted: {', '.join(rules.CLOSED_MODELS)}")
    elif model_rules is None:
        out.problem(model, "unknown_model", "unknown model; map it to an official one in model_mapping.json")
    scenarios = sorted(p.name for p in model.iterdir() if p.is_dir())
    if division == "closed" and model_rules is not None and model_rules.official is not None:
        required = rules.required_scenarios(model_rules, system_type) if system_type in rules.SYSTEM_TYPES else ()
        if required is None:
            out.problem(model, "unknown_scenarios", f"{model.name} is not a benchmark for system_type "
                                                    f"'{system_type}': every scenario is unknown")
        else:
            missing = [s for s in required if s not in scenarios]
            unknown = [s for s in scenarios if s not in required]
            if missing:
                out.problem(model, "missing_scenarios", f"a '{system_type}' system needs scenarios "
                                                        f"{', '.join(missing)} too")
            if unknown:
                out.problem(model, "unknown_scenarios", f"scenarios {', '.join(unknown)} are not allowed for "
                                                        f"system_type '{system_type}' (allowed: {', '.join(required)})")
    for name in scenarios:
        if name not in rules.SCENARIOS:
            out.problem(model / name, "unknown_scenario", f"unknown scenario; accepted: {', '.join(rules.SCENARIOS)}")
        else:
            _check_scenario(out, model / name, division, model_rules)


def _check_scenario(out: _Out, path: Path, division: str, model_rules: rules.ModelRules | None) -> None:
    measurements = path / "measurements.json"
    if not measurements.is_file():
        out.problem(measurements, "measurements_missing", "missing")
    else:
        data = _load_json(out, measurements)
        if isinstance(data, dict):
            for k in MEASUREMENT_FIELDS:
                if k not in data:
                    out.problem(measurements, f"measurements_field_missing:{k}", f"field '{k}' is missing")
                elif not data[k]:
                    out.problem(measurements, f"measurements_field_empty:{k}", f"field '{k}' is empty")
    for name in SCENARIO_FILES:
        _nonempty(out, path / name, "scenario_file")
    perf = path / "performance" / "run_1"
    _nonempty(out, perf / "mlperf_log_detail.txt", "performance_log")
    if not (perf / "mlperf_log_summary.txt").is_file():
        out.note(perf / "mlperf_log_summary.txt", "performance_summary_missing", "missing")
    if (perf / "mlperf_log_detail.txt").is_file():
        _check_performance(out, perf / "mlperf_log_detail.txt", path.name, division, model_rules)
    _check_accuracy(out, path, division, model_rules)
    for test in rules.COMPLIANCE_TESTS:
        if division == "closed" and model_rules is not None and model_rules.official is not None:
            _check_compliance(out, path, test, division, model_rules)
        elif (path / test).exists():
            _note_compliance(out, path, test, division, model_rules)


def _nonempty(out: _Out, path: Path, kind: str, problem: bool = True) -> bool:
    add = out.problem if problem else out.note
    if not path.is_file():
        add(path, f"{kind}_missing:{path.name}", "missing")
        return False
    if path.stat().st_size == 0:
        add(path, f"{kind}_empty:{path.name}", "empty")
        return False
    return True


def _check_performance(out: _Out, detail_path: Path, scenario: str, division: str,
                       model_rules: rules.ModelRules | None, problem: bool = True) -> None:
    add = out.problem if problem else out.note
    detail = read_detail(detail_path)
    if "effective_scenario" not in detail:
        add(detail_path, "performance_log_unreadable", "not a LoadGen detail log")
        return
    if detail["_errors"]:  # v6.1 reads them only with --submission-exceptions, then ignores most
        out.note(detail_path, "loadgen_errors", f"{len(detail['_errors'])} LoadGen error(s): "
                 + "; ".join(map(str, detail["_errors"])))
    if detail.get("effective_scenario") != scenario:
        out.note(detail_path, "scenario_mismatch",
                 f"scenario is {detail.get('effective_scenario')}, directory says {scenario}")
    if detail.get("effective_test_mode") != "PerformanceOnly":
        out.note(detail_path, "test_mode", f"test mode is {detail.get('effective_test_mode')}, needs PerformanceOnly")
    count = detail.get("effective_performance_sample_count") or 0
    if model_rules is not None and count < model_rules.performance_sample_count:
        add(detail_path, "performance_sample_count",
            f"performance sample count {count} < {model_rules.performance_sample_count}")
    for key, expected in rules.SEEDS.items():
        if detail.get(f"effective_{key}") != expected:
            add(detail_path, f"seed:{key}", f"{key} is {detail.get(f'effective_{key}')}, needs {expected}")
    if scenario in rules.EARLY_STOPPING_SCENARIOS:
        if detail.get("early_stopping_met") is not True:
            add(detail_path, "early_stopping",
                f"early stopping not met ({detail.get('early_stopping_result') or 'no result'})")
        else:
            bound = rules.latency_bound_ns(model_rules, scenario)
            used = detail.get("effective_target_latency_ns") or 0
            if bound and used > bound:
                add(detail_path, "latency_constraint",
                    f"{scenario} latency bound {used} ns > the benchmark's {bound} ns "
                    f"(target_latency in user.conf must be at most {bound / 1e6:g} ms)")
    min_spq = model_rules.offline_min_samples_per_query if model_rules else None
    spq = detail.get("effective_samples_per_query") or 0
    if division == "closed" and scenario == "Offline" and min_spq and spq < min_spq:
        add(detail_path, "offline_samples_per_query", f"Offline samples per query {spq} < {min_spq}")
    duration = detail.get("effective_min_duration_ms") or 0
    if duration < rules.MIN_DURATION_MS:
        add(detail_path, "min_duration", f"min duration {duration} ms < {rules.MIN_DURATION_MS} ms")
    if detail.get("result_validity") != "VALID":
        reason = "; ".join(str(x) for x in (detail.get("result_invalid_reason"),) if x)
        out.note(detail_path, "result_invalid", f"result is {detail.get('result_validity')}"
                 + (f" ({reason})" if reason else "") + " (the v6.1 checker does not read result_validity)")
    if detail.get(rules.performance_metric_key(scenario)) in (None, 0):
        out.note(detail_path, "no_result", f"no {rules.performance_metric_key(scenario)} result")


def _check_accuracy(out: _Out, path: Path, division: str, model_rules: rules.ModelRules | None) -> None:
    acc = path / "accuracy"
    txt, log = acc / "accuracy.txt", acc / "mlperf_log_accuracy.json"
    closed = division == "closed"
    if _nonempty(out, txt, "accuracy_file"):
        lines = txt.read_text(errors="replace").splitlines()
        match = next((m for m in (re.match(rules.ACCURACY_PATTERN, line) for line in lines) if m), None)
        target = model_rules.closed_accuracy_target if model_rules else None
        if not match:
            (out.problem if closed else out.note)(
                txt, "accuracy_line", "no scorer's 'accuracy=...' line")
        elif target is not None and float(match.group(1)) < target:
            (out.problem if closed else out.note)(
                txt, "accuracy_target", f"accuracy {match.group(1)}% < closed target {target:.4f}%")
        digest = truncate.read_hash_line(txt)
        if digest is None:
            out.problem(txt, "accuracy_hash", "no 'hash=<sha256>' line (the accuracy log is not truncated)")
        else:
            full = _full_log(out.root, path)
            if full is not None and truncate.sha256_of(full) != digest:
                out.note(txt, "accuracy_hash_mismatch", f"hash does not match the full log {out.rel(full)}")
    if not log.is_file():
        out.problem(log, "accuracy_log_missing", "missing")
    elif log.stat().st_size > rules.MAX_ACCURACY_LOG_BYTES:
        out.problem(log, "accuracy_log_untruncated", f"{log.stat().st_size} bytes, not truncated "
                                                     f"(limit {rules.MAX_ACCURACY_LOG_BYTES})")
    if not (acc / "mlperf_log_summary.txt").is_file():
        out.note(acc / "mlperf_log_summary.txt", "accuracy_summary_missing", "missing")
    detail_path = acc / "mlperf_log_detail.txt"
    if _nonempty(out, detail_path, "accuracy_file"):
        detail = read_detail(detail_path)
        if detail["_errors"]:
            out.problem(detail_path, "loadgen_errors", f"{len(detail['_errors'])} LoadGen error(s): "
                        + "; ".join(map(str, detail["_errors"])))
        if detail.get("effective_test_mode") not in (None, "AccuracyOnly"):
            out.note(detail_path, "test_mode", f"test mode is {detail.get('effective_test_mode')}, needs AccuracyOnly")
        total = detail.get("effective_accuracy_sample_count", detail.get("qsl_reported_total_count"))
        if model_rules is not None and total != model_rules.dataset_size:
            out.problem(detail_path, "dataset_size",
                        f"accuracy run covers {total} samples, the dataset has {model_rules.dataset_size}")


def _full_log(root: Path, scenario_path: Path) -> Path | None:
    """The untruncated accuracy log kept in <root>/full_logs/<system>/<model>/<Scenario>/accuracy."""
    system, model, scenario = scenario_path.parts[-3:]
    full = root / "full_logs" / system / model / scenario / "accuracy" / "mlperf_log_accuracy.json"
    return full if full.exists() else None


def _check_compliance(out: _Out, path: Path, test: str, division: str, model_rules: rules.ModelRules) -> None:
    """Closed division: what the checker's ComplianceCheck reports."""
    test_dir = path / test
    if not test_dir.is_dir():
        out.problem(test_dir, "compliance_missing", f"missing (compliance test required in the {division} division)")
    if test == "TEST01" and not (test_dir / "verify_accuracy.txt").is_file():
        out.problem(test_dir / "verify_accuracy.txt", "compliance_file_missing:verify_accuracy.txt", "missing")
    if not (test_dir / "verify_performance.txt").is_file():
        out.problem(test_dir / "verify_performance.txt", "compliance_file_missing:verify_performance.txt", "missing")
    perf = test_dir / "performance" / "run_1"
    if not (perf / "mlperf_log_detail.txt").is_file():
        out.problem(perf / "mlperf_log_detail.txt", "compliance_file_missing:mlperf_log_detail.txt", "missing")
    else:
        _check_performance(out, perf / "mlperf_log_detail.txt", path.name, division, model_rules)
    if test == "TEST01" and (test_dir / "verify_accuracy.txt").is_file() and not _says_pass(
            test_dir / "verify_accuracy.txt"):
        acc = test_dir / "accuracy"
        present = {p.name for p in acc.iterdir()} if acc.is_dir() else set()
        if not acc.is_dir():
            out.problem(acc, "compliance_accuracy_dir", "missing (needed when verify_accuracy.txt fails)")
        elif set(TEST01_ACC_FILES) - present:
            out.problem(acc, "compliance_accuracy_files",
                        f"missing {', '.join(sorted(set(TEST01_ACC_FILES) - present))}")
        else:
            out.problem(test_dir / "verify_accuracy.txt", "compliance_accuracy",
                        f"does not say {PASS} (the logged responses differ from the accuracy run's)")
    verify = test_dir / "verify_performance.txt"
    if verify.is_file():
        if not _says_pass(verify, anywhere=True):
            out.problem(verify, "compliance_performance", f"does not say {PASS}")
        if not perf.is_dir():
            out.problem(perf, "compliance_performance_dir", "missing")
        elif set(PERF_FILES) - {p.name for p in perf.iterdir()}:
            out.problem(perf, "compliance_performance_files",
                        f"missing {', '.join(sorted(set(PERF_FILES) - {p.name for p in perf.iterdir()}))}")


def _note_compliance(out: _Out, path: Path, test: str, division: str, model_rules) -> None:
    """Compliance runs the checker skips (open division, our own models): their verdicts as notes
    (or problems for a model only our rules cover)."""
    test_dir = path / test
    own = model_rules is not None and model_rules.official is None
    add = out.problem if own else out.note
    names = ["verify_performance.txt"] + (["verify_accuracy.txt"] if test == "TEST01" else [])
    for name in names:
        file = test_dir / name
        if not file.is_file():
            add(file, f"compliance_file_missing:{name}", "missing")
        elif not _says_pass(file, anywhere=True):
            add(file, "compliance_accuracy" if name == "verify_accuracy.txt" else "compliance_performance",
                f"does not say {PASS}")
    detail = test_dir / "performance" / "run_1" / "mlperf_log_detail.txt"
    if _nonempty(out, detail, "compliance_file", problem=own):
        _check_performance(out, detail, path.name, division, model_rules, problem=own)


def _says_pass(path: Path, anywhere: bool = False) -> bool:
    lines = path.read_text(errors="replace").splitlines()
    if anywhere:  # the checker: "TEST PASS" in any line (verify_performance.txt)
        return any(PASS in line for line in lines)
    return PASS in [line.strip() for line in lines]
