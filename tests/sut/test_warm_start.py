"""Warm start: the warm-up estimate saved next to the preprocessing cache and
reused when model, backend options and machine match (real LiteRT on a
shared MobileNet where it is installed)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

import backends
from backends.base import BackendOptions
from benchmarks.harness_overhead import ArrayDataset, random_store
from profiles import Config
from sut import runner, warm_start
from sut.settings import Estimate

MODEL = Path("/work/shared/models/mobilenet/mobilenet_v1_0.25_128_quant.tflite")


@pytest.fixture(scope="module")
def litert():
    if not MODEL.exists():
        pytest.skip(f"{MODEL} is not here")
    try:
        backend = backends.create("litert", BackendOptions(threads=1))
    except Exception as exc:  # noqa: BLE001 - the runtime is not installed
        pytest.skip(f"LiteRT backend unavailable: {exc}")
    info = backend.load(str(MODEL))
    yield backend, info, ArrayDataset(16), random_store(info.input, 16)
    backend.close()


@pytest.fixture
def calls(monkeypatch):
    """The ``min_time_s`` of every runner.warm_up call."""
    seen = []
    real = runner.warm_up

    def spy(*args, min_time_s=0.3, **kwargs):
        seen.append(min_time_s)
        return real(*args, min_time_s=min_time_s, **kwargs)
    monkeypatch.setattr(runner, "warm_up", spy)
    return seen


def test_the_estimate_is_saved_then_reused_after_a_few_checking_calls(litert, calls, tmp_path):
    backend, info, dataset, store = litert
    cfg = Config(cache_dir=str(tmp_path))
    first = warm_start.warm_up(cfg, str(MODEL), backend, info, dataset, store)
    assert calls == [0.3]  # a full warm-up
    (saved,) = (tmp_path / warm_start.DIRECTORY).glob("*.json")
    assert json.loads(saved.read_text())["estimate"] == dataclasses.asdict(first)
    second = warm_start.warm_up(cfg, str(MODEL), backend, info, dataset, store)
    assert calls[:2] == [0.3, 0.0]  # the checking calls first: the backend still runs before LoadGen
    if len(calls) == 2:  # reused (a loaded machine may make the checking calls 2x off: measured again)
        assert second.samples_per_s >= first.samples_per_s and second.latency_s <= first.latency_s
    else:
        assert calls == [0.3, 0.0, 0.3] and warm_start.load(saved) == second


def scripted(monkeypatch, measured: Estimate):
    """runner.warm_up answering ``measured`` (full or checking); returns the min_time_s of each call."""
    seen = []

    def fake(*args, min_time_s=0.3, **kwargs):
        seen.append(min_time_s)
        return measured
    monkeypatch.setattr(runner, "warm_up", fake)
    return seen


@pytest.mark.parametrize("speed, reused", [(1.0, True), (0.6, True), (1.9, True), (0.4, False), (2.5, False)])
def test_reused_only_within_a_factor_of_the_checking_calls(litert, tmp_path, monkeypatch, speed, reused):
    backend, info, dataset, store = litert
    cfg = Config(cache_dir=str(tmp_path))
    path = warm_start.estimate_path(cfg, str(MODEL), backend, info, tmp_path)
    saved = Estimate(latency_s=0.01, query_latency_s=0.08, samples_per_s=100.0)
    warm_start.save(path, saved)
    now = Estimate(latency_s=0.01 / speed, query_latency_s=0.08 / speed, samples_per_s=100.0 * speed)
    seen = scripted(monkeypatch, now)
    estimate = warm_start.warm_up(cfg, str(MODEL), backend, info, dataset, store)
    if reused:  # the checking calls only; never slower than they ran
        assert seen == [0.0] and estimate == warm_start.faster(saved, now)
        assert warm_start.load(path) == saved
    else:  # much slower (the device, or a busier machine) or faster (an Offline test sized too short): measured
        assert seen == [0.0, 0.3] and estimate == now and warm_start.load(path) == now


def test_the_faster_of_saved_and_checked_figures():
    saved = Estimate(latency_s=0.01, query_latency_s=0.08, samples_per_s=100.0)
    check = Estimate(latency_s=0.02, query_latency_s=0.05, samples_per_s=150.0)
    assert warm_start.faster(saved, check) == Estimate(latency_s=0.01, query_latency_s=0.05, samples_per_s=150.0)


def test_the_key_changes_with_options_model_file_and_machine(litert, tmp_path, monkeypatch):
    backend, info, _, _ = litert
    cfg = Config()
    base = warm_start.estimate_key(cfg, str(MODEL), backend, info)
    assert base == warm_start.estimate_key(cfg, str(MODEL), backend, info)
    other = dataclasses.replace(backend.options, threads=2)
    monkeypatch.setattr(backend, "options", other)
    assert warm_start.estimate_key(cfg, str(MODEL), backend, info)["options"] != base["options"]
    monkeypatch.undo()
    assert warm_start.estimate_key(Config(samples_per_query=4), str(MODEL), backend, info) != base
    copy = tmp_path / MODEL.name
    copy.write_bytes(MODEL.read_bytes())
    assert warm_start.estimate_key(cfg, str(copy), backend, info)["model"] != base["model"]
    os.utime(copy, ns=(0, 0))  # same path, another modification time: another model file
    before = warm_start.estimate_key(cfg, str(copy), backend, info)["model"]
    os.utime(copy, ns=(10**9, 10**9))
    assert warm_start.estimate_key(cfg, str(copy), backend, info)["model"] != before
    monkeypatch.setattr(warm_start, "machine", lambda: {"host": "elsewhere"})
    assert warm_start.estimate_key(cfg, str(MODEL), backend, info) != base


def test_never_reused_for_the_null_backend_plugins_no_model_or_no_cache(tmp_path):
    null = backends.create("null", BackendOptions())
    info = null.load(None)
    assert warm_start.estimate_path(Config(), str(MODEL), null, info, tmp_path) is None
    assert warm_start.estimate_path(Config(), None, null, info, tmp_path) is None

    class Plugin(type(null)):
        name = "litert"
    assert warm_start.estimate_path(Config(), str(MODEL), Plugin(), info, tmp_path) is None
    assert not warm_start.reusable(Plugin(), str(MODEL))


def test_old_damaged_or_foreign_files_are_not_reused(tmp_path):
    path = tmp_path / "e.json"
    good = Estimate(latency_s=0.01, query_latency_s=0.08, samples_per_s=100.0)
    warm_start.save(path, good)
    assert warm_start.load(path) == good
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "saved": time.time() - warm_start.MAX_AGE_S - 1}))
    assert warm_start.load(path) is None
    path.write_text(json.dumps({**data, "estimate": {"latency_s": 0.01}}))
    assert warm_start.load(path) is None
    path.write_text(json.dumps({**data, "estimate": {**data["estimate"], "latency_s": 0}}))
    assert warm_start.load(path) is None
    path.write_text("{not json")
    assert warm_start.load(path) is None
    assert warm_start.load(tmp_path / "missing.json") is None


def test_a_cache_that_cannot_be_written_costs_nothing(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    warm_start.save(blocked / "sub" / "e.json", Estimate(0.01, 0.08, 100.0))  # no exception
    assert not (blocked / "sub").exists()
