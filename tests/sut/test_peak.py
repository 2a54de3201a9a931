"""--find-peak-performance: the searches on a simulated machine, then real
LoadGen runs on the null backend (in-memory samples, short steps)."""

from __future__ import annotations

import json
import types

import pytest

from backends.base import BackendOptions
from backends.null import NullBackend
from benchmarks.harness_overhead import ArrayDataset, random_store
from profiles import Config
from sut import cli, peak
from sut.settings import Estimate

SAMPLES = 32


def machine(capacity: float, duration_per_qps: float = 0.0):
    """run(target) of a machine that is VALID up to ``capacity`` QPS."""
    def run(target):
        step = peak.Step(len(calls) + 1, target, "VALID" if target <= capacity else "INVALID",
                         achieved=min(target, capacity), duration_s=1.0)
        calls.append(target)
        return step
    calls: list[float] = []
    run.calls = calls
    return run


@pytest.mark.parametrize("capacity, start", [(1000.0, 400.0), (1000.0, 1900.0), (37.0, 800.0), (1999.0, 100.0)])
def test_server_search_ends_within_tolerance_below_the_capacity(capacity, start):
    run = machine(capacity)
    steps = peak.search_server(run, start, ceiling=2500.0)
    best = peak.best_step(steps)
    assert best is not None and best.target <= capacity
    assert best.target >= capacity / (1 + peak.TOLERANCE)
    assert len(steps) <= peak.MAX_STEPS


def test_server_search_never_passes_the_ceiling_and_stops_there():
    run = machine(1e9)
    steps = peak.search_server(run, 100.0, ceiling=700.0)
    assert max(run.calls) == 700.0 and steps[-1].target == 700.0 and all(s.valid for s in steps)
    assert [s.target for s in steps] == [100.0, 200.0, 400.0, 700.0]


def test_server_search_gives_up_at_the_floor_when_nothing_is_valid():
    steps = peak.search_server(machine(0.0), 50.0, ceiling=100.0, max_steps=50)
    assert peak.best_step(steps) is None
    assert steps[-1].target == peak.FLOOR_QPS and len(steps) < 50


def test_server_search_does_not_start_a_step_it_cannot_afford():
    run = machine(0.0)
    steps = peak.search_server(run, 400.0, ceiling=1000.0, max_steps=50, affordable=lambda target: target >= 40.0)
    assert [s.target for s in steps] == [400.0, 200.0, 100.0, 50.0]  # 25 QPS would take too long


def test_a_search_with_no_valid_target_says_why_and_what_to_do(monkeypatch):
    cfg = Config(scenario="Server")
    steps = [peak.Step(1, 100.0, "INVALID", late=3, queries=500, bound_ms=15.0),
             peak.Step(2, 50.0, "INVALID", late=1, queries=500, bound_ms=15.0)]
    result = peak.Peak("Server", steps, stopped="a step at 25.0 QPS would take 20 s")
    note = peak.conclusion(cfg, result)
    assert note.startswith("no VALID target down to 50.0 QPS: 1/500 queries over the 15 ms bound")
    assert "latency spikes, not load" in note and "a step at 25.0 QPS" in note and "--target-latency-ms" in note


def test_header_names_the_machine_load(monkeypatch):
    monkeypatch.setattr(peak.os, "getloadavg", lambda: (9.5, 9.0, 8.0))
    monkeypatch.setattr(peak.os, "cpu_count", lambda: 2)
    assert "load average 9.5 on 2 CPUs (busy: expect noisy steps)" in peak.header(Config(scenario="Server"), 100.0)


def test_server_search_stops_at_a_failed_step():
    def run(target):
        return peak.Step(1, target, error="backend failed: boom")
    steps = peak.search_server(run, 100.0, 200.0)
    assert len(steps) == 1 and steps[0].error


def test_offline_search_sets_expected_qps_to_the_achieved_rate():
    achieved = 800.0

    def run(target):
        # LoadGen generates target * min_duration * 1.1 samples; they take samples / achieved seconds
        duration = target * 1.0 * 1.1 / achieved
        validity = "VALID" if duration >= 1.0 else "INVALID"
        return peak.Step(len(steps_seen) + 1, target, validity, achieved=achieved, duration_s=duration)
    steps_seen: list = []
    steps = peak.search_offline(run, 100.0, min_duration_s=1.0)
    assert [s.target for s in steps] == [100.0, 800.0]
    assert steps[-1].valid and steps[-1].duration_s == pytest.approx(1.1)


def test_offline_best_is_the_step_that_lasted_the_asked_duration():
    steps = [peak.Step(1, 900.0, "VALID", duration_s=2.0), peak.Step(2, 450.0, "VALID", duration_s=1.1),
             peak.Step(3, 400.0, "INVALID", duration_s=0.9)]
    assert peak.offline_best(steps, 1.0) is steps[1]
    assert peak.offline_best(steps[:1], 1.0) is steps[0]  # none fits: the shortest VALID one
    assert peak.offline_best(steps[2:], 1.0) is None


def test_conf_lines_use_loadgen_keys_and_round_down():
    cfg = Config(scenario="Server", mlperf_model="resnet50")
    assert peak.conf_line(cfg, peak.Step(1, 1124.96, "VALID")) == "resnet50.Server.target_qps = 1124.9"
    cfg = Config(scenario="SingleStream", mlperf_model="resnet50")
    line = peak.conf_line(cfg, peak.Step(1, 0.0, "VALID", mean_ms=2.0))
    assert line == "resnet50.SingleStream.target_latency = 1.8"
    assert peak.conf_line(cfg, None) is None
    assert peak._round_down(0.0123456) == "0.012345" and peak._round_down(250.0) == "250"


# --- real LoadGen runs on the null backend ---------------------------------------------

def test_confirmation_lowers_the_target_until_a_longer_run_is_valid():
    tried = []

    def run_long(target):
        tried.append(target)
        return peak.Step(len(tried), target, "VALID" if target <= 80.0 else "INVALID", confirm=True)
    confirmed = peak.confirm_server(run_long, peak.Step(1, 100.0, "VALID"))
    assert confirmed.valid and confirmed.confirm and tried == [100.0, 85.0, pytest.approx(72.25)]
    tried.clear()
    assert peak.confirm_server(run_long, peak.Step(1, 200.0, "VALID")) is None  # 200, 170, 144.5: all INVALID
    assert len(tried) == peak.CONFIRM_TRIES
    assert peak.confirm_server(run_long, None) is None


def test_an_unconfirmed_answer_is_not_given_as_the_result():
    steps = [peak.Step(1, 100.0, "VALID", bound_ms=15.0), peak.Step(2, 100.0, "INVALID", confirm=True)]
    result = peak.Peak("Server", steps, unconfirmed=steps[0])
    note = peak.conclusion(Config(scenario="Server"), result)
    assert note.startswith("no target confirmed: 100.0 QPS was VALID in a short step")
    assert peak.conf_line(Config(scenario="Server"), result.best) is None


@pytest.fixture(autouse=True)
def short_confirmation(monkeypatch):
    monkeypatch.setattr(peak, "CONFIRM_LENGTH", 2)  # the real runs below stay short


@pytest.fixture(scope="module")
def null_parts():
    backend = NullBackend(BackendOptions(extra={"input_shape": [4], "input_dtype": "float32", "classes": 10}))
    info = backend.load(None)
    return types.SimpleNamespace(backend=backend, info=info, dataset=ArrayDataset(SAMPLES),
                                 store=random_store(info.input, SAMPLES),
                                 estimate=Estimate(latency_s=1e-4, query_latency_s=8e-4, samples_per_s=800.0))


def test_server_search_on_loadgen_prints_each_step_and_a_valid_target(null_parts, tmp_path):
    cfg = Config(scenario="Server", progress=False, min_duration_ms=0, target_latency_ms=100.0)
    printed: list[str] = []
    result = peak.find(cfg, null_parts, tmp_path, printed.append)
    steps = result.steps
    assert result.error is None and result.best is not None and result.best.valid
    assert 1 <= len(steps) <= peak.MAX_STEPS
    assert steps[0].target == pytest.approx(400.0)  # half the warm-up throughput
    assert max(s.target for s in steps) <= 800.0 * peak.CEILING
    for step in steps:  # each step is a whole LoadGen run with its own logs, at its own target
        assert step.queries >= 500 and step.bound_ms == pytest.approx(100.0)
        assert step.p99_ms is not None and step.achieved
    assert printed[0].startswith("find peak performance, Server")
    assert len([line for line in printed if line.strip().split(" ")[0].isdigit()]) == len(steps)
    assert result.conf_line.startswith("resnet50.Server.target_qps = ")
    assert float(result.conf_line.split("= ")[1]) <= result.best.target
    assert "highest VALID target" in result.note
    assert result.best.confirm and printed[-1].endswith("confirm")
    assert any(line.startswith("confirming ") for line in printed)


def test_step_logs_record_the_target_each_step_asked_for(null_parts, tmp_path):
    from sut import logs

    cfg = Config(scenario="Server", progress=False, min_duration_ms=0, target_latency_ms=100.0)
    result = peak.find(cfg, null_parts, tmp_path, lambda line: None)
    for step in result.steps:
        detail = logs.read_detail(tmp_path / f"step_{step.number:02d}" / "mlperf_log_detail.txt")
        assert detail["requested_server_target_qps"] == pytest.approx(step.target, rel=1e-4)
        assert detail["result_validity"] == step.validity


def test_offline_search_on_loadgen_lasts_the_minimum_duration(null_parts, tmp_path):
    cfg = Config(scenario="Offline", progress=False, min_duration_ms=300, min_query_count=1)
    result = peak.find(cfg, null_parts, tmp_path, lambda line: None)
    assert result.best is not None and result.best.valid, [(s.target, s.validity, s.duration_s) for s in result.steps]
    assert result.best.duration_s >= 0.3  # VALID: it lasted its minimum duration
    fitting = [s for s in result.steps if s.valid and s.duration_s <= 0.3 * peak.OFFLINE_LONGEST]
    if fitting:  # (a loaded machine may change pace between steps)
        assert result.best is fitting[-1] and result.best is result.steps[-1]
    assert result.conf_line.startswith("resnet50.Offline.target_qps = ")


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream"])
def test_latency_scenarios_run_once_and_suggest_the_expected_latency(null_parts, tmp_path, scenario):
    cfg = Config(scenario=scenario, progress=False, min_duration_ms=0)
    result = peak.find(cfg, null_parts, tmp_path, lambda line: None)
    assert len(result.steps) == 1 and result.best is not None
    assert result.conf_line.startswith(f"resnet50.{scenario}.target_latency = ")
    assert "no target to search" in peak.header(cfg, 800.0)


def test_main_refuses_accuracy_and_precision_lists():
    from sut.errors import ConfigError

    with pytest.raises(ConfigError, match="performance runs"):
        peak.main(Config(mode="accuracy"))
    with pytest.raises(ConfigError, match="one precision"):
        peak.main(Config(precision="fp32,int8"))


def test_cli_runs_the_search_and_saves_it(tmp_path, capsys, monkeypatch, null_parts):
    """run.py --find-peak-performance end to end, the session's loading replaced by the null parts."""
    import contextlib

    from sut import session

    monkeypatch.setattr(session, "open_dataset", lambda cfg: (null_parts.dataset, None))
    monkeypatch.setattr(session, "check_precisions", lambda cfg, precisions, model: None)
    monkeypatch.setattr(session, "prepared", lambda cfg, dataset, model, record: contextlib.nullcontext(null_parts))
    code = cli.main(["--profile", "demo", "--backend", "null", "--scenario", "Server", "--find_peak_performance",
                     "--min-duration", "0", "--max-latency", "0.1", "--output", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "user.conf line to reuse: resnet50.Server.target_qps = " in out
    (saved,) = [p for p in tmp_path.iterdir() if p.name.endswith("-peak")]
    assert (saved / "peak.txt").read_text().count("\n") >= 4
    record = json.loads((saved / "peak.json").read_text())
    assert record["best"]["validity"] == "VALID" and record["user_conf_line"] in out
