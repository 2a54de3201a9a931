"""--tune: what it tries and how it picks, on a simulated machine, then
run.py --tune end to end on the null backend (real LoadGen runs, short)."""

from __future__ import annotations

import io
import json

import pytest

from profiles import Config
from sut import cli, compat, tune
from sut.errors import ConfigError
from sut.tune import Knobs, Trial


def test_thread_splits_use_every_core_whole():
    assert tune.thread_splits(1) == [(1, 1)]
    assert tune.thread_splits(2) == [(1, 2), (2, 1)]
    assert tune.thread_splits(8) == [(1, 8), (2, 4), (4, 2), (8, 1)]
    assert (6, 1) in tune.thread_splits(6) and (2, 3) in tune.thread_splits(6)


def test_batches_are_those_the_model_accepts():
    assert tune.batch_choices(8, 32, None) == [1, 8, 32]
    assert tune.batch_choices(8, 1, (1,)) == [1]             # a fixed batch of 1
    assert tune.batch_choices(4, 4, (1, 4)) == [1, 4]         # fixed sizes: the default's kept
    assert tune.batch_choices(16, 16, None) == [1, 8, 16]     # none above what the model took


def test_candidates_start_with_the_default_and_never_repeat():
    default = Knobs(0, 1, 8)
    found = tune.candidates(default, 2, True, [1, 8])
    assert found[0] == default and len(found) == len(set(found))
    assert set(found[1:]) == {Knobs(1, 2, 1), Knobs(1, 2, 8), Knobs(2, 1, 1), Knobs(2, 1, 8)}
    # no thread knob: threads stay the default's, only instances and batch vary
    assert {k.threads for k in tune.candidates(default, 2, False, [1, 8])} == {0}
    # a backend that runs one instance whatever it is asked: the splits collapse
    capped = tune.candidates(Knobs(0, 1, 1), 4, False, [1], max_instances=1)
    assert capped == [Knobs(0, 1, 1)]


def test_rounds_alternate_the_order():
    order = tune.rounds_order(["a", "b", "c"], 3)
    assert [k for _, k in order] == list("abcbcacab")
    assert [r for r, _ in order] == [1, 1, 1, 2, 2, 2, 3, 3, 3]


def rounds(table: dict) -> list[Trial]:
    """Trials from {knobs: [rate per round]}."""
    return [Trial(0, knobs, rate, "VALID", round=r + 1) for knobs, rates in table.items()
            for r, rate in enumerate(rates)]


DEFAULT, OTHER = Knobs(0, 1, 8), Knobs(1, 2, 8)


def test_a_configuration_faster_in_every_round_replaces_the_default():
    winner, ranked, why = tune.choose(rounds({DEFAULT: [100, 90, 110], OTHER: [120, 100, 125]}), DEFAULT)
    assert winner.knobs == OTHER and ranked[0] is winner
    assert winner.median == 120 and winner.spread == pytest.approx(25 / 120)
    assert "all 3 alternated rounds" in why


def test_a_higher_median_within_the_noise_keeps_the_default():
    # faster by median, but slower in one round: noise, not a better configuration
    winner, ranked, why = tune.choose(rounds({DEFAULT: [100, 130, 100], OTHER: [120, 100, 125]}), DEFAULT)
    assert winner.knobs == DEFAULT and ranked[0].knobs == OTHER
    assert "default is kept" in why and "2 of 3 rounds" in why
    # faster in every round but by less than MIN_GAIN: kept too
    winner, _, _ = tune.choose(rounds({DEFAULT: [100, 100, 100], OTHER: [101, 101, 101]}), DEFAULT)
    assert winner.knobs == DEFAULT


def test_the_default_fastest_is_said_so():
    winner, _, why = tune.choose(rounds({DEFAULT: [130, 130, 130], OTHER: [120, 100, 125]}), DEFAULT)
    assert winner.knobs == DEFAULT and why == "the default configuration is the fastest"


def machine(rates: dict, noise=lambda n: 1.0):
    """run(knobs, round, expect) of a machine with a fixed rate per configuration."""
    calls = []

    def run(knobs, round_, expect):
        calls.append((knobs, round_, expect))
        rate = rates.get(knobs, 50.0) * noise(len(calls))
        return Trial(0, knobs, rate, "VALID", duration_s=1.6)
    run.calls = calls
    return run


def test_tune_screens_then_repeats_the_best_and_the_default():
    best = Knobs(1, 2, 32)
    run = machine({best: 200.0, Knobs(0, 1, 8): 100.0, Knobs(2, 1, 32): 150.0})
    probe = {"threads_knob": True, "instances": 1, "max_batch_size": 8, "batch_sizes": None}
    printed = []
    result = tune.tune(Config(scenario="Offline", max_batch_size=8), run, probe, printed.append, cores=2)
    screened = [t for t in result.trials if t.round == 0]
    assert screened[0].knobs == Knobs(0, 1, 8) and len(screened) == 7  # default + 2 splits x 3 batches
    repeated = [t for t in result.trials if t.round >= 1]
    assert len(repeated) == (tune.FINALISTS + 1) * tune.ROUNDS
    assert {t.knobs for t in repeated} >= {best, Knobs(0, 1, 8)}
    assert result.winner.knobs == best and len(result.winner.rates) == tune.ROUNDS
    # every trial printed; the repeats are sized from their own screening rate
    assert len([line for line in printed if line.strip()[:1].isdigit()]) == len(result.trials)
    # the repeats are sized from their own rate, screening runs by the warm-up capped at 2x the best so far
    assert all(expect == pytest.approx(1.5 * 200.0) for knobs, r, expect in run.calls if r and knobs == best)
    assert run.calls[0][2] is None and run.calls[1][2] == pytest.approx(-2 * 100.0)
    text = tune.text(result)
    assert "winner: 1 inst" not in text and "winner: 2 inst x 1 thr, batch 32" in text
    assert "--threads 1 --instances 2 --max-batchsize 32" in text


def test_tune_caps_the_trials_and_names_what_it_skipped(monkeypatch):
    monkeypatch.setattr(tune, "MAX_TRIALS", 3)
    probe = {"threads_knob": False, "instances": 1, "max_batch_size": 8, "batch_sizes": None}
    result = tune.tune(Config(scenario="Offline", max_batch_size=8), machine({}), probe, lambda line: None,
                       cores=2)
    assert len([t for t in result.trials if t.round == 0]) == 3
    assert result.skipped and all("more than 3 trials" in why for _, why in result.skipped)
    assert "skipped" in tune.text(result) and "takes no thread count" in tune.text(result)


def test_tune_stops_when_the_default_fails():
    def run(knobs, round_, expect):
        return Trial(0, knobs, error="backend failed: boom")
    result = tune.tune(Config(scenario="Offline"), run, {}, lambda line: None, cores=2)
    assert len(result.trials) == 1 and result.winner is None and "boom" in result.verdict


def test_main_refuses_other_scenarios_accuracy_and_precision_lists():
    with pytest.raises(ConfigError, match="--scenario Offline"):
        tune.main(Config(scenario="Server"))
    with pytest.raises(ConfigError, match="performance tests"):
        tune.main(Config(scenario="Offline", mode="accuracy"))
    with pytest.raises(ConfigError, match="one precision"):
        tune.main(Config(scenario="Offline", precision="fp32,int8"))


def test_cli_tunes_the_null_backend_and_writes_the_winner(tmp_path, capsys, monkeypatch):
    """run.py --tune end to end: each trial loads the null backend, warms up and runs LoadGen."""
    monkeypatch.setattr(tune, "BATCHES", (1,))
    monkeypatch.setattr(tune, "FINALISTS", 1)
    monkeypatch.setattr(tune, "ROUNDS", 2)
    code = cli.main(["--profile", "demo", "--backend", "null", "--scenario", "Offline", "--tune", "--count", "32",
                     "--min-duration", "100", "--cache-dir", "none", "--output", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "tune Offline (null)" in out and "winner: " in out and "medians of 2 alternated runs" in out
    (saved,) = [p for p in tmp_path.iterdir() if p.name.endswith("-Offline-tune")]
    record = json.loads((saved / "tune.json").read_text())
    trials = record["trials"]
    assert trials and all(t["samples_per_s"] and t["error"] is None for t in trials)
    assert len([t for t in trials if t["round"] >= 1]) == 2 * 2  # the best and the default, twice
    for t in trials:  # each trial is a LoadGen run of its own, with its own logs
        assert (saved / f"trial_{t['number']:02d}").is_dir()
    toml = (saved / "tune.toml").read_text()
    assert "instances = " in toml and toml.splitlines()[-1] in out
    assert (saved / "user.conf").read_text().startswith("resnet50.Offline.target_qps = ")
    parsed = compat.load_toml(io.BytesIO(toml.encode()))  # tomllib, or tomli before Python 3.11
    assert set(parsed) == {"threads", "instances", "max_batch_size"}
    assert parsed["instances"] >= 1 and parsed["max_batch_size"] >= 1
