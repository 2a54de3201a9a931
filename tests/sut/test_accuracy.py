import json

import numpy as np
import pytest

from datasets.base import Accuracy, Dataset
from sut import accuracy
from sut.errors import BackendFailure


class Labels(Dataset):
    name = "labels"

    def __init__(self, labels):
        super().__init__(None)
        self.labels = labels

    scan = check_model = preprocessor = cache_key = postprocess = lambda *a: None


def write_log(path, entries):
    path.write_text(json.dumps([
        {"seq_id": i, "qsl_idx": idx, "data": np.array([cls], np.float32).tobytes().hex().upper()}
        for i, (idx, cls) in enumerate(entries)]))


def test_scores_first_answer_of_each_sample(tmp_path):
    log = tmp_path / "mlperf_log_accuracy.json"
    # MultiStream padding repeats sample 0 with a different answer: ignored
    write_log(log, [(0, 5), (1, 3), (2, 9), (0, 4)])
    result = accuracy.score_log(log, Labels([5, 3, 1]), expected_count=3)
    assert result == Accuracy(good=2, total=3)
    assert result.line() == "accuracy=66.667%, good=2, total=3"


def test_missing_samples_fail(tmp_path):
    log = tmp_path / "log.json"
    write_log(log, [(0, 5)])
    with pytest.raises(BackendFailure, match="answers 1 of 3"):
        accuracy.score_log(log, Labels([5, 3, 1]), expected_count=3)


def test_empty_response_fails(tmp_path):
    log = tmp_path / "log.json"
    log.write_text(json.dumps([{"seq_id": 0, "qsl_idx": 0, "data": ""}]))
    with pytest.raises(BackendFailure, match="empty response"):
        accuracy.read_predictions(log)


def test_reference_line_format():
    assert Accuracy(202, 260).line() == "accuracy=77.692%, good=202, total=260"
    assert Accuracy(277, 300).line() == "accuracy=92.333%, good=277, total=300"
