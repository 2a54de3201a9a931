"""sut/session.py: int8 calibration samples come from outside the scored set;
precisions are checked before anything runs; a run ends complete, .failed or
.interrupted with config.json and summary.txt saying which, never lying."""

from __future__ import annotations

import dataclasses
import json
import signal
from pathlib import Path

import numpy as np
import pytest

from backends.base import TensorSpec
from profiles import Config
from sut import runner, session
from sut.errors import ConfigError, Interrupted, ResultsError

SPEC = TensorSpec("x", (3, 32, 32), np.float32, "NCHW")


def demo(tmp_path, **changes) -> Config:
    cfg = Config(profile="demo", backend="onnxruntime", dataset="synthetic", model_name="synthetic",
                 cache_dir=str(tmp_path / "cache"), output=str(tmp_path / "results"), progress=False,
                 preprocess_workers=1, report=False)
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


# --- how a run ends: complete, .failed or .interrupted, never lying -----------------------------

NULL_DEMO = {"input_shape": [3, 32, 32], "layout": "NCHW", "input_dtype": "float32", "classes": 10}


def null_demo(tmp_path, **changes) -> Config:
    return demo(tmp_path, backend="null", backend_options=NULL_DEMO, mode="performance", quick=True, **changes)


def only_dir(tmp_path):
    (run,) = (tmp_path / "results").iterdir()
    return run


def test_a_complete_run_lists_its_tests_under_the_final_name(tmp_path):
    outcome = session.execute(null_demo(tmp_path), echo=lambda *a: None)
    run = only_dir(tmp_path)
    assert outcome.ok and outcome.directory == run and "." not in run.name
    record = json.loads((run / "config.json").read_text())
    assert record["state"] == "complete"
    (test,) = record["results"]
    assert test["directory"] == str(run / Path(test["directory"]).relative_to(run)) and Path(test["directory"]).is_dir()
    assert not (run / ".owner").exists() and not list(run.glob(".*.tmp.*"))
    # report=False: no report.html nor plots, the per-query latencies all the same
    assert not (run / "report.html").exists() and not list(run.glob("*.png"))
    assert (Path(test["directory"]) / "latencies.npy").is_file()


def test_the_report_is_written_before_the_directory_gets_its_final_name(tmp_path, monkeypatch):
    from sut import report

    seen = []

    def render(run_dir, name=None, with_plots=True):
        seen.append((run_dir.name, name, (run_dir / "summary.txt").is_file()))
        raise OSError("no space left for plots")  # a warning only: the run still completes
    monkeypatch.setattr(report, "render", render)
    outcome = session.execute(null_demo(tmp_path, report=True), echo=lambda *a: None)
    run = only_dir(tmp_path)
    assert outcome.ok and outcome.directory == run and "." not in run.name
    assert seen == [(run.name + ".partial", run.name, True)]


def fake_test(tmp_path, monkeypatch, **fields):
    def run_test(cfg, mode, backend, info, dataset, store, estimate, outdir):
        result = runner.TestResult(cfg.scenario, mode, outdir)
        for key, value in fields.items():
            setattr(result, key, value)
        return result
    monkeypatch.setattr(runner, "run_test", run_test)


def test_an_interrupted_test_names_the_directory_interrupted(tmp_path, monkeypatch):
    fake_test(tmp_path, monkeypatch, error="interrupted by SIGTERM", interrupted=signal.SIGTERM)
    with pytest.raises(Interrupted) as err:
        session.execute(null_demo(tmp_path), echo=lambda *a: None)
    run = only_dir(tmp_path)
    assert err.value.exit_code == 143 and err.value.run_directory == run and run.name.endswith(".interrupted")
    assert (run / "summary.txt").read_text().startswith("INTERRUPTED: interrupted by SIGTERM\n")
    record = json.loads((run / "config.json").read_text())
    assert record["state"] == "interrupted" and record["results"][0]["directory"].startswith(str(run) + "/")
    assert not (run / "error.log").exists()


def test_a_test_without_a_verdict_is_a_results_error(tmp_path, monkeypatch):
    fake_test(tmp_path, monkeypatch, validity=None)  # LoadGen wrote no logs at all
    with pytest.raises(ResultsError, match="mlperf_log_detail.txt cannot be read") as err:
        session.execute(null_demo(tmp_path), echo=lambda *a: None)
    run = only_dir(tmp_path)
    assert err.value.exit_code == 7 and run.name.endswith(".failed")
    assert (run / "summary.txt").read_text().startswith("FAILED: LoadGen's log")
    assert "Traceback" in (run / "error.log").read_text()


def test_an_unexpected_exception_is_recorded_and_re_raised(tmp_path, monkeypatch):
    def broken(*args):
        raise ZeroDivisionError("bug")
    monkeypatch.setattr(runner, "run_test", broken)
    with pytest.raises(ZeroDivisionError) as err:
        session.execute(null_demo(tmp_path), echo=lambda *a: None)
    run = only_dir(tmp_path)
    assert run.name.endswith(".failed") and err.value.run_directory == run
    assert err.value.error_log == run / "error.log" and "ZeroDivisionError: bug" in (run / "error.log").read_text()
    assert json.loads((run / "config.json").read_text())["error"] == "bug"


def test_verify_accepts_only_a_verdict():
    ok = runner.TestResult("Offline", "performance", Path("/nonexistent"), error="backend failed")
    session.verify(ok)  # a failed test is reported by its error, not as damaged logs
    with pytest.raises(ResultsError, match="cannot be read"):
        session.verify(runner.TestResult("Offline", "performance", Path("/nonexistent"), validity="VALID"))
