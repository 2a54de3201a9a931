"""Compliance tests TEST01 and TEST04: their audit.config and our verification.

LoadGen reads ``audit.config`` from the path the runner gives
``StartTestWithLogSettings``, which is ``<test outdir>/audit.config``; so
:func:`write_audit_config` into the test's own (private) output folder before
running the test is all it takes, and nothing else ever sees the file.

Verification follows the official scripts (``compliance/TEST0x`` of
mlcommons/inference) with one deliberate difference: TEST01 compares the
whole response bytes, not only their first element. The bands are the ones
the scripts apply: TEST01 +-10%, or +-20% when SingleStream <= 0.2 ms or
MultiStream <= 1.6 ms. TEST04's ``verify_performance.py`` turns a latency into
a speed (1e9 / ns) before it compares that with the same 200000 / 1600000
limits, so for SingleStream and MultiStream it allows 20% unless the latency
is below 5 us (SingleStream) or 0.625 us (MultiStream): in practice always
20%; Offline and Server 10%.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from datasets.base import RESPONSE_DTYPE, Accuracy
from submission.rules import ModelRules, performance_metric_key
from sut.logs import read_detail

PASS, FAIL = "TEST PASS", "TEST FAIL"
HEADER = ("# Written by the harness for this test only; keys are model.scenario.key,\n"
          "# mode 2 = PerformanceOnly.\n")


#: the loaded sample TEST04 issues again and again (the official audit.config's choice)
TEST04_SAME_INDEX = 3


def test04_same_index(performance_samples: int | None) -> int:
    """TEST04's ``performance_issue_same_index``: the official 3, or the last
    loaded sample when fewer than 4 are loaded (LoadGen would hand the SUT an
    index outside the dataset)."""
    if performance_samples is None:
        return TEST04_SAME_INDEX
    return max(0, min(TEST04_SAME_INDEX, performance_samples - 1))


def audit_config(test: str, rules: ModelRules, performance_samples: int | None = None) -> str:
    """The audit.config text of ``test`` (TEST01 or TEST04); ``performance_samples``:
    how many samples LoadGen loads for the performance test (None: plenty)."""
    if test == "TEST01":
        return HEADER + ("*.*.mode = 2\n"
                         f"*.*.accuracy_log_rng_seed = {rules.test01_rng_seed}\n"
                         f"*.*.accuracy_log_sampling_target = {rules.test01_sampling_target}\n")
    if test == "TEST04":
        index = test04_same_index(performance_samples)
        lowered = (f"# performance_issue_same_index lowered from {TEST04_SAME_INDEX}: only "
                   f"{performance_samples} performance sample(s) loaded.\n") if index != TEST04_SAME_INDEX else ""
        return HEADER + lowered + ("*.*.mode = 2\n"
                                   "*.*.performance_issue_unique = 0\n"
                                   "*.*.performance_issue_same = 1\n"
                                   f"*.*.performance_issue_same_index = {index}\n")
    raise ValueError(f"unknown compliance test '{test}'; accepted: TEST01, TEST04")


def write_audit_config(test: str, outdir: Path, rules: ModelRules, performance_samples: int | None = None) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / "audit.config"
    path.write_text(audit_config(test, rules, performance_samples))
    return path


@dataclasses.dataclass
class Verdict:
    passed: bool
    lines: list[str]

    def text(self) -> str:
        return "\n".join([*self.lines, PASS if self.passed else FAIL]) + "\n"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text())


def _short(path: Path) -> str:
    """The last parts of a path (<Scenario>/<test>/...): stable when the root is renamed."""
    return "/".join(Path(path).parts[-4:])


# --- TEST01 accuracy ---------------------------------------------------------

def _first_responses(log_path: Path) -> tuple[dict[int, str], int]:
    with open(log_path) as f:
        entries = json.load(f)
    first: dict[int, str] = {}
    for entry in entries:
        first.setdefault(int(entry["qsl_idx"]), entry["data"])
    return first, len(entries)


@dataclasses.dataclass
class Test01Accuracy:
    verdict: Verdict
    baseline: Accuracy | None = None     # accuracy run, on the indices TEST01 logged
    compliance: Accuracy | None = None   # TEST01's own responses


def verify_test01_accuracy(reference_log: Path, test_log: Path,
                           score: Callable[[Mapping[int, np.ndarray]], Accuracy] | None = None
                           ) -> Test01Accuracy:
    """Every response TEST01 logged must equal the accuracy run's for the same qsl_idx."""
    reference, ref_entries = _first_responses(reference_log)
    with open(test_log) as f:
        test_entries = json.load(f)
    matched = mismatched = missing = 0
    mismatched_idx: list[int] = []
    for entry in test_entries:
        idx = int(entry["qsl_idx"])
        if idx not in reference:
            missing += 1
        elif entry["data"].upper() == reference[idx].upper():
            matched += 1
        else:
            mismatched += 1
            mismatched_idx.append(idx)
    lines = [f"reference_log = {_short(reference_log)}", f"test_log = {_short(test_log)}",
             f"num_acc_log_entries = {ref_entries}", f"num_perf_log_entries = {len(test_entries)}",
             f"num_perf_log_qsl_idx_match = {matched + mismatched}",
             f"num_perf_log_data_mismatch = {mismatched}", f"num_missing_qsl_idxs = {missing}"]
    if mismatched_idx:
        lines.append("first mismatched qsl_idx: " + ", ".join(map(str, mismatched_idx[:10])))
    passed = mismatched == 0 and missing == 0 and matched > 0
    result = Test01Accuracy(Verdict(passed, lines))
    if not passed and score is not None and test_entries:
        logged = {int(e["qsl_idx"]): e["data"] for e in test_entries}
        decode = lambda hexdata: np.frombuffer(bytes.fromhex(hexdata), dtype=RESPONSE_DTYPE)  # noqa: E731
        ref_part = {i: decode(reference[i]) for i in logged if i in reference and reference[i]}
        test_part = {i: decode(d) for i, d in logged.items() if d}
        result.baseline, result.compliance = score(ref_part), score(test_part)
        delta = abs(result.baseline.percent - result.compliance.percent)
        lines += [f"baseline accuracy (accuracy run, same samples): {result.baseline.line()}",
                  f"compliance accuracy (TEST01 responses): {result.compliance.line()}",
                  f"accuracy difference: {delta:.3f} points (the checker allows 1% relative)"]
    return result


# --- performance ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Score:
    scenario: str
    value: float          # ns for latencies, samples/s for throughputs
    valid: bool
    latency: bool

    @property
    def speed(self) -> float:
        """Higher is faster, whatever the metric."""
        return 1e9 / self.value if self.latency else self.value

    def describe(self) -> str:
        if self.latency:
            return f"{self.value / 1e6:.4f} ms ({performance_metric_key(self.scenario)})"
        return f"{self.value:.3f} samples/s ({performance_metric_key(self.scenario)})"


def read_score(detail_path: Path) -> Score:
    detail = read_detail(detail_path)
    scenario = detail.get("effective_scenario")
    if scenario is None:
        raise ValueError(f"{detail_path} holds no LoadGen detail log")
    value = detail.get(performance_metric_key(scenario))
    return Score(scenario, float(value or 0.0), detail.get("result_validity") == "VALID",
                 scenario in ("SingleStream", "MultiStream"))


def threshold(reference: Score) -> float:
    """TEST01: 10%, or 20% for very short latencies (SingleStream <= 0.2 ms, MultiStream <= 1.6 ms)."""
    if reference.scenario == "SingleStream" and reference.value <= 200_000:
        return 0.20
    if reference.scenario == "MultiStream" and reference.value <= 1_600_000:
        return 0.20
    return 0.10


def test04_threshold(reference: Score) -> float:
    """TEST04 as the official script applies it: the 200000 / 1600000 limits compared with the
    speed (1e9 / latency ns), so 20% for any SingleStream latency >= 5 us and MultiStream >= 0.625 us."""
    if reference.scenario == "SingleStream" and reference.speed <= 200_000:
        return 0.20
    if reference.scenario == "MultiStream" and reference.speed <= 1_600_000:
        return 0.20
    return 0.10


def _compare(reference_detail: Path, test_detail: Path) -> tuple[Score, Score, list[str], bool]:
    ref, test = read_score(reference_detail), read_score(test_detail)
    lines = [f"reference = {_short(reference_detail)}", f"test = {_short(test_detail)}",
             f"reference score = {ref.describe()}", f"test score = {test.describe()}"]
    ok = True
    if not ref.valid:
        lines.append("reference run is INVALID")
        ok = False
    if not test.valid:
        lines.append("test run is INVALID")
        ok = False
    if ref.scenario != test.scenario:
        lines.append(f"scenarios differ: {ref.scenario} vs {test.scenario}")
        ok = False
    if ref.value <= 0 or test.value <= 0:
        lines.append("a score is missing or zero")
        ok = False
    return ref, test, lines, ok


def verify_test01_performance(reference_detail: Path, test_detail: Path) -> Verdict:
    """TEST01's score must lie within the band around the submission run's."""
    ref, test, lines, ok = _compare(reference_detail, test_detail)
    if ok:
        band = threshold(ref)
        ratio = test.value / ref.value
        lines.append(f"test/reference = {ratio:.4f}; allowed {1 - band:.2f} .. {1 + band:.2f}")
        ok = 1 - band <= ratio <= 1 + band
    return Verdict(ok, lines)


def verify_test04_performance(reference_detail: Path, test_detail: Path) -> Verdict:
    """TEST04 (one sample issued again and again) must not be much faster than the real run."""
    ref, test, lines, ok = _compare(reference_detail, test_detail)
    if ok:
        band = test04_threshold(ref)
        ratio = test.speed / ref.speed
        lines.append(f"test speed / reference speed = {ratio:.4f}; allowed below {1 + band:.2f}")
        ok = ratio < 1 + band
    return Verdict(ok, lines)
