"""sut/session.py: int8 calibration samples come from outside the scored set;
precisions are checked before anything runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backends.base import TensorSpec
from profiles import Config
from sut import session
from sut.errors import ConfigError

SPEC = TensorSpec("x", (3, 32, 32), np.float32, "NCHW")


def demo(tmp_path, **changes) -> Config:
    cfg = Config(profile="demo", backend="onnxruntime", dataset="synthetic", model_name="synthetic",
                 cache_dir=str(tmp_path / "cache"), output=str(tmp_path / "results"), progress=False,
                 preprocess_workers=1)
    return dataclasses.replace(cfg, **changes)


def test_calibration_takes_the_last_samples_outside_the_scored_set(tmp_path):
    cfg = demo(tmp_path, count=40, calibration_count=8, max_batch_size=4)
    dataset, _ = session.open_dataset(cfg)
    whole = demo(tmp_path)
    every, _ = session.open_dataset(whole)
    assert len(dataset) == 40 and len(every) == 60
    chosen = session.calibration_sources(cfg, dataset)
    assert chosen == every.sources[-8:] and not set(chosen) & set(dataset.sources)
    batches = session.calibration_batches(cfg, dataset, SPEC)
    assert [b.shape for b in batches] == [(4, 3, 32, 32)] * 2 and batches[0].dtype == np.float32
    # fewer spare samples than calibration_count: all of them
    assert session.calibration_sources(dataclasses.replace(cfg, calibration_count=500), dataset) == every.sources[40:]


def test_a_dataset_scored_whole_has_nothing_to_calibrate_on(tmp_path):
    cfg = demo(tmp_path)
    dataset, _ = session.open_dataset(cfg)
    with pytest.raises(ConfigError, match=r"outside the scored set.*all 60 samples.*--count N below 60"):
        session.calibration_sources(cfg, dataset)
    with pytest.raises(ConfigError, match="'calibration_count' must be at least 1"):
        session.calibration_sources(dataclasses.replace(cfg, count=10, calibration_count=0), dataset)


def test_precisions_are_checked_before_any_run(tmp_path):
    cfg = demo(tmp_path, precision="fp16")
    with pytest.raises(ConfigError, match="backend 'onnxruntime' cannot apply precision fp16 .*fp32, int8"):
        session.execute(cfg)
    assert not (tmp_path / "results").exists()
    session.precheck(cfg, ["fp32", "int8"])
    with pytest.raises(ConfigError, match="cannot apply precision fp16"):
        session.precheck(cfg, ["fp32", "fp16", "int8"])
