"""The official MLCommons submission checker (v6.1) next to ours, rule by rule.

The official checker is not part of this project and cannot be downloaded in
CI: point ``MLPERF_INFERENCE_DIR`` at a checkout of mlcommons/inference (it
needs PyYAML; ``MLPERF_CHECKER_PYTHONPATH`` may name a folder holding it) and
the parity test runs it. :func:`official_findings` turns its log lines into
``(kind, where)`` pairs named like :class:`submission.validate.Finding`, so the
two lists can be compared item for item.

As a script, for a report::

    MLPERF_INFERENCE_DIR=... python -m tests.submission.official_checker TREE
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from submission import validate

ENV = "MLPERF_INFERENCE_DIR"
ENV_PYTHONPATH = "MLPERF_CHECKER_PYTHONPATH"
PERF_SUFFIX = "/performance/run_1/mlperf_log_detail.txt"

# (pattern on the message, kind); group "p" is the path, "f" a field or file name
RULES = [
    (r"(?P<p>\S+) performance_sample_count, found", "performance_sample_count"),
    (r"(?P<p>\S+) (?P<f>qsl_rng_seed|sample_index_rng_seed|schedule_rng_seed) is wrong", "seed:{f}"),
    (r"Early stopping condition was not met", "early_stopping"),
    (r"(?P<p>\S+) Latency constraint with early stopping not met", "latency_constraint"),
    (r"(?P<p>\S+) Latency constraint not met", "latency_constraint"),
    (r"(?P<p>\S+) Required minimum samples per query not met", "offline_samples_per_query"),
    (r"(?P<p>\S+) Required minimum Query Count not met", "min_query_count"),
    (r"(?P<p>\S+) Test duration less than 600s", "min_duration"),
    (r"(?P<p>\S+) has loadgen errors", "loadgen_errors"),
    (r"(?P<p>\S+) does not have all required scenarios", "missing_scenarios"),
    (r"(?P<p>\S+) has all unknown scenarios", "unknown_scenarios"),
    (r"(?P<p>\S+) not hash value for accuracy.txt", "accuracy_hash"),
    (r"(?P<p>\S+) accuracy not met", "accuracy_target"),
    (r"(?P<p>\S+mlperf_log_accuracy\.json) is missing$", "accuracy_log_missing"),
    (r"(?P<p>\S+) is not truncated", "accuracy_log_untruncated"),
    (r"(?P<p>\S+) accurcy run does not cover all dataset", "dataset_size"),
    (r"(?P<p>\S+) has invalid status", "system_status"),
    (r"(?P<p>\S+) has invalid system type", "system_type"),
    (r"(?P<p>\S+measurements\.json), field (?P<f>\S+) is missing$", "measurements_field_missing:{f}"),
    (r"(?P<p>\S+), field (?P<f>\S+) is missing meaningful value", "measurements_field_empty:{f}"),
    (r"(?P<p>\S+), field (?P<f>\S+) is missing$", "system_field_missing:{f}"),
    (r"(?P<p>\S+), field (?P<f>\S+) requires a meaningful response", "system_field_empty:{f}"),
    (r"(?P<p>\S+) has submitter ", "system_submitter"),
    (r"(?P<p>\S+) has division ", "system_division"),
    (r"(?P<p>\S+) incorrect network mode", "system_network"),
    (r"(?P<p>\S+) measurements json file not found", "measurements_missing"),
    (r"(?P<p>\S+) src directory does not exist", "src_missing"),
    (r"(?P<p>\S+) is missing (?P<f>user\.conf|README\.md)", "scenario_file_missing:{f}"),
    (r"(?P<p>\S+) is having empty (?P<f>user\.conf|README\.md)", "scenario_file_empty:{f}"),
    (r"Missing (?P<f>TEST\d+) in compliance dir (?P<p>\S+)", "compliance_missing"),
    (r"Missing accuracy file in compliance dir. Needs file (?P<p>\S+)", "compliance_file_missing:verify_accuracy.txt"),
    (r"Missing perf\w+ file in compliance dir. Needs file (?P<p>\S+)", "compliance_file_missing:{base}"),
    (r"(?P<p>\S+verify_performance\.txt) is missing in ", "compliance_file_missing:verify_performance.txt"),
    (r"Compliance test performance check in (?P<p>\S+) failed", "compliance_performance"),
    (r"(?P<p>\S+) has no accuracy directory", "compliance_accuracy_dir"),
    (r"(?P<p>\S+/accuracy) has file list mismatch", "compliance_accuracy_files"),
    (r"(?P<p>\S+) has file list mismatch", "compliance_performance_files"),
    (r"Compliance test accuracy check \(non-deterministic mode\) in (?P<p>\S+) failed", "compliance_accuracy"),
    (r"Execution occurred in running check (?P<p>\S+)\. Running accuracy_check in ComplianceCheck",
     "compliance_accuracy"),
    (r"Execution occurred in running check (?P<p>\S+)\. Running (?P<f>\w+) in (\w+)", "crash:{f}"),
]
IGNORED = (r"Some .* Checks failed for", r"NoResults ", r"SUMMARY: ", r"contains errors:$",
           # a compliance run without its detail log makes PerformanceCheck fail in __init__; the same
           # missing file is reported by dir_exists_check ("Missing perfomance file ...")
           r"Execution occurred in running check \S+\. Running performance_check in ComplianceCheck")
LINE = re.compile(r"^\[[^\]]* (?P<level>ERROR|WARNING|INFO)\] (?P<msg>.*)$")


def checkout() -> Path | None:
    path = os.environ.get(ENV)
    if path and (Path(path) / "tools" / "submission" / "submission_checker" / "main.py").is_file():
        return Path(path)
    return None


def run_official(inference: Path, root: Path, python: str = sys.executable) -> tuple[int, str]:
    """(exit status, everything it printed) of the official checker, --version v6.1, on ``root``."""
    env = dict(os.environ)
    extra = os.environ.get(ENV_PYTHONPATH)
    if extra:
        env["PYTHONPATH"] = extra + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([python, "-m", "submission_checker.main", "--input", str(root), "--version", "v6.1",
                           "--csv", os.devnull], cwd=inference / "tools" / "submission", env=env,
                          capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


def _where(kind: str, path: str, root: Path, scenario_dir: str | None) -> str:
    rel = os.path.relpath(path, root) if os.path.isabs(path) else path
    rel = rel.rstrip("/")
    if kind.startswith("system_"):
        rel = re.sub(r"/results/([^/]+)$", r"/systems/\1.json", rel)
    elif kind in ("missing_scenarios", "unknown_scenarios"):
        rel = rel[:-len(PERF_SUFFIX)].rsplit("/", 1)[0] if rel.endswith(PERF_SUFFIX) else rel
    elif kind == "compliance_missing":
        pass
    elif kind in ("compliance_performance", "compliance_accuracy") and not rel.endswith(".txt"):
        if re.search(r"/TEST\d+$", rel):
            rel += "/verify_performance.txt" if kind == "compliance_performance" else "/verify_accuracy.txt"
        else:  # the scenario directory (a crash in TEST01's accuracy comparison)
            rel += "/TEST01/verify_accuracy.txt"
    elif kind.startswith("scenario_file_"):
        rel = f"{rel}/{kind.split(':', 1)[1]}"
    return normalise(rel)


def normalise(where: str) -> str:
    """One name per place: a performance log by its folder, accuracy files by accuracy/."""
    where = where.rstrip("/")
    if where.endswith(PERF_SUFFIX):
        where = where[:-len(PERF_SUFFIX)]
    where = re.sub(r"/accuracy/(accuracy\.txt|mlperf_log_detail\.txt)$", "/accuracy", where)
    return where


def official_findings(output: str, root: Path) -> set[tuple[str, str]]:
    """The problems in the official checker's output as (kind, where) pairs; unrecognised error
    lines come back as ("unrecognised", message) so a test shows them."""
    found: set[tuple[str, str]] = set()
    current_perf = None
    in_errors = False
    for line in output.splitlines():
        m = LINE.match(line)
        if not m:
            if "Traceback" in line or (line and not line.startswith((" ", "[")) and "Error" in line):
                found.add(("crash", line.strip()))
            continue
        level, msg = m.group("level"), m.group("msg")
        start = re.match(r"Starting performance checks for: (\S+)", msg)
        if start:
            current_perf = start.group(1)
        if level == "INFO":
            continue
        if msg.endswith("contains errors:"):
            in_errors = True
            continue
        if in_errors and "has loadgen errors" not in msg:
            continue  # the LoadGen error texts themselves
        in_errors = False
        if level == "WARNING" and "accuracy not met" not in msg:
            continue
        if any(re.search(p, msg) for p in IGNORED):
            continue
        for pattern, kind in RULES:
            r = re.search(pattern, msg)
            if r:
                groups = r.groupdict()
                path = groups.get("p") or current_perf or ""
                if kind == "compliance_missing":
                    path = f"{path}/{groups['f']}"
                name = kind.format(f=groups.get("f"), base=os.path.basename(path))
                found.add((name, _where(name, path, root, None)))
                break
        else:
            found.add(("unrecognised", msg))
    return found


def accuracy_target_in_open(found: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The checker warns about the accuracy target in the open division too, but fails nothing."""
    return {(k, w) for k, w in found if not (k == "accuracy_target" and w.startswith("open/"))}


def our_findings(root: Path) -> set[tuple[str, str]]:
    return {(f.kind, normalise(f.where)) for f in validate.findings(root) if f.problem}


def compare(inference: Path, root: Path, python: str = sys.executable):
    """(official, ours, raw output)."""
    _, output = run_official(inference, root, python)
    return accuracy_target_in_open(official_findings(output, root)), our_findings(root), output


def main(argv: list[str]) -> int:
    inference = checkout()
    if inference is None:
        print(f"set {ENV} to a checkout of mlcommons/inference", file=sys.stderr)
        return 2
    status = 0
    for tree in argv:
        official, ours, _ = compare(inference, Path(tree))
        print(f"== {tree}: official {len(official)}, ours {len(ours)}, equal: {official == ours}")
        for kind, where in sorted(official | ours, key=lambda x: (x[1], x[0])):
            side = "both" if (kind, where) in official and (kind, where) in ours else (
                "official only" if (kind, where) in official else "ours only")
            print(f"  [{side}] {kind} @ {where}")
        status |= official != ours
    return int(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
