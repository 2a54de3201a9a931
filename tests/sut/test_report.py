"""sut/report.py and sut/plots.py: each run writes report.html (self-contained),
latencies.npy next to LoadGen's logs, and PNG plots when matplotlib is there."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sut import latencies, logs, plots, report
from tests.sut.report_runs import external_references, png_size, run

HAVE_MATPLOTLIB = plots.available() is None
NO_MATPLOTLIB = f"needs matplotlib for plots ({plots.available()})"


@pytest.fixture(scope="module")
def single_stream(tmp_path_factory):
    outcome = run(tmp_path_factory.mktemp("report"))
    assert outcome.ok
    return outcome


def perf_dir(outcome) -> Path:
    (path,) = Path(outcome.directory).glob("*/*/SingleStream/performance/run_1")
    return path


def test_a_run_saves_every_query_latency_next_to_loadgens_logs(single_stream):
    directory = perf_dir(single_stream)
    table = latencies.load(directory)
    detail = logs.read_detail(directory / "mlperf_log_detail.txt")
    # SingleStream: one token per query, every query LoadGen issued
    assert len(table) == detail["result_query_count"]
    assert set(table["samples"].tolist()) == {1}
    lat = latencies.latencies_s(table)
    assert np.all(lat > 0)
    assert np.all(np.diff(table["issue_s"]) >= 0)  # issue order
    # the SUT's timing leaves LoadGen's scheduling out: never longer than LoadGen's maximum
    assert lat.max() * 1e9 <= detail["result_max_latency_ns"]
    assert not list(Path(single_stream.directory).glob("*/*/SingleStream/accuracy/latencies.npy"))


def test_the_report_is_self_contained_and_names_loadgens_figures(single_stream):
    text = (Path(single_stream.directory) / "report.html").read_text()
    assert external_references(text) == []
    # written before the rename, it names the run as its directory is called now
    assert f"<code>{Path(single_stream.directory).name}</code>" in text and ".partial" not in text
    for name in ("90th percentile latency", "result_validity", "VALID", "p90", "SUT-timed", "accuracy=100.000%"):
        assert name in text
    if HAVE_MATPLOTLIB:
        assert text.count("src='data:image/png;base64,") == 3
    else:
        assert "No plots: matplotlib is not installed" in text


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason=NO_MATPLOTLIB)
def test_the_plots_are_pngs_of_the_stated_size(single_stream):
    directory = Path(single_stream.directory)
    assert png_size(directory / "latency_histogram.png") == plots.SIZE
    assert png_size(directory / "latency_cdf.png") == plots.SIZE
    assert png_size(directory / "timeline.png") == plots.TALL


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason=NO_MATPLOTLIB)
def test_offline_and_server_timelines(tmp_path):
    rng = np.random.default_rng(0)
    complete = np.sort(rng.uniform(0, 2.0, 300))
    samples = np.full(300, 64)
    path = plots.timeline(np.zeros(300), complete * 1e3, complete, samples, {"p50": 1000.0}, None,
                          ("LoadGen samples per second", 9000.0), "Offline", tmp_path / "offline.png", offline=True)
    assert png_size(path) == plots.TALL
    issue = np.sort(rng.uniform(0, 1.0, 500))
    lat = rng.lognormal(-2, 0.5, 500)
    path = plots.timeline(issue, lat, issue + lat / 1e3, np.ones(500), {"p99": 0.5}, "p99",
                          ("LoadGen scheduled samples per second (the target)", 500.0), "Server",
                          tmp_path / "server.png", bound_ms=100.0)
    assert png_size(path) == plots.TALL


def test_without_matplotlib_the_report_has_the_tables_and_says_how_to_get_plots(single_stream, tmp_path,
                                                                                 monkeypatch):
    import shutil

    copy = tmp_path / Path(single_stream.directory).name
    shutil.copytree(single_stream.directory, copy)
    for png in copy.glob("*.png"):
        png.unlink()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    path = report.render(copy)
    text = path.read_text()
    assert "pip install matplotlib" in text
    assert "<img" not in text and not list(copy.glob("*.png"))
    assert "90th percentile latency" in text and "SUT-timed" in text
    assert external_references(text) == []


def test_a_report_failure_is_a_warning_not_a_failed_run(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="sut.report"):
        assert report.write_safely(tmp_path / "absent", {}, []) is None
    assert "could not write the report" in caplog.text


def test_relocate_follows_the_renamed_run_directory(tmp_path):
    inner = tmp_path / "20260101-000000-demo.partial" / "sys" / "m" / "Offline" / "performance" / "run_1"
    assert report.relocate(inner, tmp_path / "20260101-000000-demo") == \
        tmp_path / "20260101-000000-demo" / "sys" / "m" / "Offline" / "performance" / "run_1"
    assert report.relocate(inner, tmp_path / "20260101-000000-demo.failed").parts[-6] == \
        "20260101-000000-demo.failed"


def test_latencies_that_disagree_with_loadgens_count_are_not_saved(tmp_path, caplog):
    rec = latencies.Recorder()
    rec.add(0, 1.0, 1.5, 1)
    partial = tmp_path / "run.partial" / "perf"
    partial.mkdir(parents=True)
    (tmp_path / "run" / "perf").mkdir(parents=True)
    test = SimpleNamespace(mode="performance", error=None, directory=partial, scenario="SingleStream",
                           detail={"result_query_count": 2})
    with caplog.at_level(logging.WARNING, logger="sut.report"):
        assert report.save_latencies(tmp_path / "run", [test]) == []
    assert "recorded 1 samples, LoadGen issued 2" in caplog.text
    test.detail = {"result_query_count": 1}
    assert report.save_latencies(tmp_path / "run", [test]) == [tmp_path / "run" / "perf" / "latencies.npy"]


def test_weighted_percentile_counts_samples():
    assert report.weighted_percentile([1.0, 2.0, 3.0], None, 50) == 2.0
    assert report.weighted_percentile([1.0, 2.0], [1, 9], 50) == 2.0
    assert report.weighted_percentile([1.0, 2.0], [9, 1], 90) == 1.0


def test_loadgen_percentiles_are_read_in_ms():
    marks = plots.loadgen_percentiles({"result_50.00_percentile_latency_ns": 1_500_000,
                                       "result_99.90_percentile_latency_ns": 2e7})
    assert marks == {"p50": 1.5, "p99.9": 20.0}


def test_a_quick_run_writes_its_report_without_plots_unless_asked(tmp_path):
    """--quick runs last seconds and the plots take seconds: report.html has the tables and says
    how to get the plots; --report (report=True) draws them."""
    outcome = run(tmp_path, report=None)
    text = (Path(outcome.directory) / "report.html").read_text()
    assert "a --quick run draws none" in text
    assert "src='data:image/png;base64," not in text
    assert not list(Path(outcome.directory).rglob("*.png"))
