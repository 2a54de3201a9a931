import json

import numpy as np
import pytest

from datasets.base import Accuracy
from submission import compliance
from submission.rules import RESNET

DETAIL = ':::MLLOG {{"key": "{key}", "value": {value}, "metadata": {{"is_error": false, "is_warning": false}}}}\n'


def detail(path, scenario, value, valid=True):
    key = {"SingleStream": "early_stopping_latency_ss", "MultiStream": "early_stopping_latency_ms",
           "Offline": "result_samples_per_second"}[scenario]
    text = "".join(DETAIL.format(key=k, value=json.dumps(v)) for k, v in (
        ("effective_scenario", scenario), ("result_validity", "VALID" if valid else "INVALID"), (key, value)))
    path.write_text(text)
    return path


def acc_log(path, answers):
    entries = [{"seq_id": n, "qsl_idx": idx, "data": np.array([cls], np.float32).tobytes().hex().upper()}
               for n, (idx, cls) in enumerate(answers)]
    path.write_text(json.dumps(entries))
    return path


def test_audit_configs_hold_the_official_values(tmp_path):
    t01 = compliance.audit_config("TEST01", RESNET)
    assert "*.*.mode = 2" in t01
    assert "*.*.accuracy_log_rng_seed = 720381539243781796" in t01
    assert "*.*.accuracy_log_sampling_target = 4096" in t01
    t04 = compliance.audit_config("TEST04", RESNET)
    for line in ("*.*.mode = 2", "*.*.performance_issue_unique = 0", "*.*.performance_issue_same = 1",
                 "*.*.performance_issue_same_index = 3"):
        assert line in t04
    path = compliance.write_audit_config("TEST04", tmp_path / "private", RESNET)
    assert path == tmp_path / "private" / "audit.config" and path.read_text() == t04
    with pytest.raises(ValueError, match="TEST05"):
        compliance.audit_config("TEST05", RESNET)


@pytest.mark.parametrize("loaded, index", [(None, 3), (1024, 3), (4, 3), (3, 2), (2, 1), (1, 0)])
def test_test04_repeats_a_loaded_sample_when_fewer_than_four_are_loaded(loaded, index):
    t04 = compliance.audit_config("TEST04", RESNET, loaded)
    assert f"*.*.performance_issue_same_index = {index}\n" in t04
    assert ("lowered from 3" in t04) == (index != 3)


def test_test01_accuracy_passes_when_every_logged_answer_matches(tmp_path):
    ref = acc_log(tmp_path / "ref.json", [(i, i % 3) for i in range(10)])
    test = acc_log(tmp_path / "test.json", [(2, 2), (5, 2), (2, 2)])
    result = compliance.verify_test01_accuracy(ref, test)
    assert result.verdict.passed
    assert result.verdict.text().splitlines()[-1] == "TEST PASS"
    assert "num_perf_log_data_mismatch = 0" in result.verdict.text()


def test_test01_accuracy_fails_on_a_different_answer_and_scores_both(tmp_path):
    labels = [i % 3 for i in range(10)]
    ref = acc_log(tmp_path / "ref.json", [(i, labels[i]) for i in range(10)])
    test = acc_log(tmp_path / "test.json", [(1, labels[1]), (4, (labels[4] + 1) % 3)])

    def score(predictions):
        good = sum(int(p[0]) == labels[i] for i, p in predictions.items())
        return Accuracy(good, len(predictions))

    result = compliance.verify_test01_accuracy(ref, test, score)
    assert not result.verdict.passed
    text = result.verdict.text()
    assert text.splitlines()[-1] == "TEST FAIL"
    assert "num_perf_log_data_mismatch = 1" in text and "first mismatched qsl_idx: 4" in text
    assert result.baseline == Accuracy(2, 2) and result.compliance == Accuracy(1, 2)


def test_test01_accuracy_fails_when_nothing_was_logged(tmp_path):
    ref = acc_log(tmp_path / "ref.json", [(0, 1)])
    test = acc_log(tmp_path / "test.json", [])
    assert not compliance.verify_test01_accuracy(ref, test).verdict.passed


@pytest.mark.parametrize("scenario, ref, test, passed", [
    ("Offline", 1000.0, 1090.0, True),
    ("Offline", 1000.0, 880.0, False),
    ("SingleStream", 1_000_000, 1_080_000, True),     # 1 ms: 10% band
    ("SingleStream", 1_000_000, 1_150_000, False),
    ("SingleStream", 100_000, 115_000, True),         # 0.1 ms: 20% band
    ("MultiStream", 1_500_000, 1_750_000, True),      # <= 1.6 ms: 20% band
    ("MultiStream", 5_000_000, 5_800_000, False),
])
def test_test01_performance_band(tmp_path, scenario, ref, test, passed):
    verdict = compliance.verify_test01_performance(detail(tmp_path / "r.txt", scenario, ref),
                                                   detail(tmp_path / "t.txt", scenario, test))
    assert verdict.passed is passed
    assert verdict.text().splitlines()[-1] == ("TEST PASS" if passed else "TEST FAIL")
    assert any(line.startswith("reference score =") for line in verdict.lines)


@pytest.mark.parametrize("scenario, ref, test, passed", [
    ("Offline", 1000.0, 1090.0, True),
    ("Offline", 1000.0, 1200.0, False),               # TEST04 much faster: caching
    ("Offline", 1000.0, 500.0, True),                 # slower is never a problem
    ("SingleStream", 1_000_000, 950_000, True),
    ("SingleStream", 1_000_000, 800_000, False),      # 25% faster
    ("SingleStream", 150_000, 130_000, True),         # small latency: 20% band
    # the official verify_performance.py compares the speed (1e9/ns) with 200000 / 1600000: 20% band
    # for every SingleStream latency >= 5 us and MultiStream >= 0.625 us, 10% only below
    ("SingleStream", 1_000_000, 870_000, True),       # 15% faster: inside 20%
    ("MultiStream", 5_000_000, 4_300_000, True),
    ("MultiStream", 5_000_000, 4_000_000, False),     # 25% faster
    ("SingleStream", 3_000, 2_650, False),            # 3 us: 10% band, 13% faster
    ("Offline", 1000.0, 1150.0, False),               # Offline/Server: 10%
])
def test_test04_performance(tmp_path, scenario, ref, test, passed):
    verdict = compliance.verify_test04_performance(detail(tmp_path / "r.txt", scenario, ref),
                                                   detail(tmp_path / "t.txt", scenario, test))
    assert verdict.passed is passed


def test_an_invalid_run_fails_verification(tmp_path):
    verdict = compliance.verify_test04_performance(detail(tmp_path / "r.txt", "Offline", 1000.0),
                                                   detail(tmp_path / "t.txt", "Offline", 1000.0, valid=False))
    assert not verdict.passed and "test run is INVALID" in verdict.lines
