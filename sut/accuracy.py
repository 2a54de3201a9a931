"""Scoring LoadGen's accuracy log ourselves.

``mlperf_log_accuracy.json`` is a JSON list of ``{"seq_id", "qsl_idx",
"data"}`` where ``data`` is the response bytes in upper-case hex. MultiStream
pads the last query, so a sample can appear twice: the first answer counts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datasets.base import RESPONSE_DTYPE, Accuracy, Dataset
from sut.errors import BackendFailure


def read_predictions(log_path: Path, dtype=RESPONSE_DTYPE) -> dict[int, np.ndarray]:
    """qsl_idx -> decoded response, first occurrence of each index."""
    with open(log_path) as f:
        entries = json.load(f)
    predictions: dict[int, np.ndarray] = {}
    for entry in entries:
        idx = int(entry["qsl_idx"])
        if idx in predictions:
            continue
        data = bytes.fromhex(entry["data"])
        if not data:
            raise BackendFailure(f"sample {idx} has an empty response in {log_path}")
        predictions[idx] = np.frombuffer(data, dtype=dtype)
    return predictions


def score_log(log_path: Path, dataset: Dataset, expected_count: int | None = None) -> Accuracy:
    predictions = read_predictions(log_path)
    if expected_count is not None and len(predictions) != expected_count:
        raise BackendFailure(
            f"accuracy log {log_path} answers {len(predictions)} of {expected_count} samples")
    return dataset.score(predictions)


def write_accuracy_txt(path: Path, accuracy: Accuracy, extra_lines: list[str] = ()) -> None:
    """``accuracy.txt``: the reference scorer's line first, then any notes."""
    path.write_text("\n".join([accuracy.line(), *extra_lines]) + "\n")
