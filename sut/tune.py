"""``--tune``: the device's best Offline configuration, measured.

``python run.py --profile P --model M --dataset-path D --scenario Offline
--tune`` tries configurations of runtime threads per instance x model
instances x batch size, each a short LoadGen Offline performance test on the
backend loaded with that configuration (the preprocessing cache is reused;
the model is loaded and warmed up again per trial, since threads and
instances are fixed at load), prints every trial, then repeats the best few
and the default in alternated rounds and picks the winner on the medians.

What is tried (within what the backend accepts):

* threads x instances: for ``t`` a power of two up to the usable cores (and
  the core count itself), ``t`` threads per instance and ``cores // t``
  instances, so the cores are used whole; plus the profile's own setting.
  A backend whose :meth:`describe` reports no ``threads`` takes no thread
  count: only the number of instances varies (threads stay as configured).
  A backend that runs fewer instances than asked (``ModelInfo.instances``)
  makes the trials that differ only there the same: they are skipped.
* batch sizes: 1, 8 and 32 and the profile's own, those the model accepts
  (``ModelInfo.batch_sizes`` / a fixed batch of 1 takes 1 only).
* at most :data:`MAX_TRIALS` screening trials (the skipped ones are named)
  and none started after :data:`SCREEN_BUDGET_S`.

No configuration is picked by noise: the :data:`FINALISTS` best screening
trials and the default configuration then run :data:`ROUNDS` more times each,
in alternated rounds (A B C D, B C D A, ...), and are ranked by the median
of those runs, shown with their spread (min-max, relative to the median). A
winner replaces the default only if its median is higher by at least
:data:`MIN_GAIN` *and* it beat the default in every round (paired: a slow
drift of the machine's load moves both alike); otherwise the default is kept
and the result says it is best within the noise.

Results go to ``<output>/<time>-<name>-Offline-tune/``: ``trial_NN/`` (each
run's LoadGen logs), ``tune.txt`` (what was printed), ``tune.json``,
``tune.toml`` (the winner as a profile fragment: ``--profile`` a copy of the
profile with these lines, or pass them as ``--threads/--instances/
--max-batchsize``) and ``user.conf`` (the Offline expected QPS it sustains).

Server is not tuned here: tune Offline, then run ``--find-peak-performance``
with the winner's options.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from profiles import Config
from sut import logs
from sut.errors import BackendFailure, ConfigError, HarnessError, Interrupted

log = logging.getLogger(__name__)

#: batch sizes tried besides the profile's own (those the model accepts)
BATCHES = (1, 8, 32)
#: the most screening trials (the default first); the rest are listed as skipped
MAX_TRIALS = 12
#: no screening trial starts after this many seconds
SCREEN_BUDGET_S = 150.0
#: how many of the best screening trials are repeated (besides the default)
FINALISTS = 3
#: alternated rounds of the finalists and the default
ROUNDS = 3
#: the least median gain over the default for a configuration to replace it
MIN_GAIN = 0.03
#: each run's minimum duration and query count (Offline: samples); LoadGen
#: generates 1.1 x min duration x expected QPS samples (1.5 x the warm-up rate)
TRIAL_MIN_DURATION_MS = 1500
TRIAL_MIN_QUERIES = 1


@dataclasses.dataclass(frozen=True)
class Knobs:
    threads: int          # per instance; 0 = the runtime's default
    instances: int
    batch: int

    def label(self) -> str:
        threads = "default" if self.threads == 0 else str(self.threads)
        return f"{self.instances} inst x {threads} thr, batch {self.batch}"


@dataclasses.dataclass
class Trial:
    number: int
    knobs: Knobs
    samples_per_s: float | None = None
    validity: str = "FAILED"
    duration_s: float | None = None
    round: int = 0        # 0: screening; 1..ROUNDS: the alternated repeats
    error: str | None = None
    directory: str = ""


@dataclasses.dataclass
class Ranked:
    knobs: Knobs
    rates: list
    default: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else 0.0

    @property
    def spread(self) -> float:
        """(max - min) / median: the relative range of the repeats."""
        if len(self.rates) < 2 or not self.median:
            return 0.0
        return (max(self.rates) - min(self.rates)) / self.median


@dataclasses.dataclass
class Tuning:
    default: Knobs
    trials: list = dataclasses.field(default_factory=list)
    ranked: list = dataclasses.field(default_factory=list)
    winner: Ranked | None = None
    skipped: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    verdict: str = ""

    @property
    def error(self) -> str | None:
        return next((t.error for t in self.trials if t.error), None)


# --- what to try (pure) -----------------------------------------------------------------

def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_splits(cores: int) -> list[tuple[int, int]]:
    """(threads, instances) pairs that use ``cores`` whole: powers of two and ``cores`` itself."""
    threads = sorted({1 << k for k in range(int(math.log2(max(1, cores))) + 1)} | {max(1, cores)})
    return [(t, max(1, cores // t)) for t in threads]


def batch_choices(default_batch: int, max_batch: int, sizes: tuple[int, ...] | None) -> list[int]:
    """Batch sizes to try: :data:`BATCHES` and the default, those the model accepts."""
    wanted = set(BATCHES) | {default_batch}
    if sizes is not None:
        accepted = [b for b in sorted(wanted) if b in sizes]
        return accepted or [min(sizes)]
    return [b for b in sorted(wanted) if 1 <= b <= max_batch] or [1]


def candidates(default: Knobs, cores: int, threads_knob: bool, batches: Iterable[int],
               max_instances: int | None = None) -> list[Knobs]:
    """The default first, then every split x batch (no duplicates). Without a
    thread knob only the instance count varies (threads stay the default's);
    ``max_instances`` is what the backend really runs (None: as asked)."""
    found: list[Knobs] = [default]
    splits = thread_splits(cores)
    if not threads_knob:
        splits = [(default.threads, i) for _, i in splits]
    for threads, instances in splits:
        if max_instances is not None:
            instances = min(instances, max_instances)
        for batch in batches:
            knobs = Knobs(threads, instances, batch)
            if knobs not in found:
                found.append(knobs)
    return found


def ranking(trials: list[Trial], default: Knobs) -> list[Ranked]:
    """The repeated configurations (rounds >= 1), best median first."""
    by_knobs: dict[Knobs, list[float]] = {}
    for trial in trials:
        if trial.round >= 1 and trial.samples_per_s:
            by_knobs.setdefault(trial.knobs, []).append(trial.samples_per_s)
    ranked = [Ranked(k, rates, k == default) for k, rates in by_knobs.items()]
    return sorted(ranked, key=lambda r: r.median, reverse=True)


def paired_wins(trials: list[Trial], a: Knobs, b: Knobs) -> tuple[int, int]:
    """In how many rounds ``a`` ran faster than ``b``, out of the rounds both ran in."""
    rounds: dict[int, dict[Knobs, float]] = {}
    for trial in trials:
        if trial.round >= 1 and trial.samples_per_s and trial.knobs in (a, b):
            rounds.setdefault(trial.round, {})[trial.knobs] = trial.samples_per_s
    both = [r for r in rounds.values() if len(r) == 2]
    return sum(1 for r in both if r[a] > r[b]), len(both)


def choose(trials: list[Trial], default: Knobs) -> tuple[Ranked | None, list[Ranked], str]:
    """(winner, ranking, why): the best median replaces the default only when
    it is :data:`MIN_GAIN` faster and won every paired round against it."""
    ranked = ranking(trials, default)
    if not ranked:
        return None, ranked, "no configuration was repeated"
    best = ranked[0]
    base = next((r for r in ranked if r.default), None)
    if best.default or base is None:
        why = ("the default configuration is the fastest" if best.default
               else "the default configuration was not repeated: no comparison")
        return best, ranked, why
    gain = best.median / base.median - 1 if base.median else math.inf
    wins, rounds = paired_wins(trials, best.knobs, default)
    if gain >= MIN_GAIN and wins == rounds and rounds >= 1:
        return best, ranked, (f"{gain * 100:+.1f}% over the default's median, faster in all {rounds} "
                              f"alternated rounds")
    return base, ranked, (f"the default is kept: the fastest ({best.knobs.label()}) is {gain * 100:+.1f}% "
                          f"over it and faster in {wins} of {rounds} rounds, within the noise "
                          f"(needs >= {MIN_GAIN * 100:g}% and every round)")


def rounds_order(finalists: list[Knobs], rounds: int) -> list[tuple[int, Knobs]]:
    """(round, knobs) in alternated order: each round starts one later (A B C, B C A, ...)."""
    order = []
    n = len(finalists)
    for r in range(rounds):
        for k in range(n):
            order.append((r + 1, finalists[(r + k) % n]))
    return order


# --- running -------------------------------------------------------------------------

def trial_config(cfg: Config, knobs: Knobs, target_qps: float | None = None) -> Config:
    """One trial: a short Offline performance test with these knobs (LoadGen's
    expected QPS ``target_qps``; None: from the warm-up)."""
    return dataclasses.replace(
        cfg, threads=knobs.threads, instances=knobs.instances, max_batch_size=knobs.batch, mode="performance",
        quick=False, target_qps=target_qps, progress=False,
        min_duration_ms=cfg.min_duration_ms if cfg.min_duration_ms is not None else TRIAL_MIN_DURATION_MS,
        min_query_count=cfg.min_query_count if cfg.min_query_count is not None else TRIAL_MIN_QUERIES)


def loaded_trial(cfg: Config, knobs: Knobs, dataset, model, outdir: Path, probe: dict | None = None,
                 expect: float | None = None) -> Trial:
    """Load the backend with ``knobs``, warm up, run one short LoadGen test.
    ``probe`` (if given) receives what the backend accepts: ``threads_knob``,
    ``instances``, ``max_batch_size``, ``batch_sizes``. ``expect`` is the
    rate LoadGen sizes the run for, when known: a negative value caps the
    warm-up's figure at ``-expect`` (the warm-up times the backend alone and
    overestimates a harness-bound one, the null backend), a positive one is
    used as it is (a configuration already measured by a LoadGen run)."""
    from sut import runner, session

    run_cfg = trial_config(cfg, knobs)
    record: dict = {}
    with session.prepared(run_cfg, dataset, model, record) as parts:
        if cfg.target_qps is None and expect:
            run_cfg = trial_config(cfg, knobs, expect if expect > 0
                                   else min(parts.estimate.samples_per_s * 1.5, -expect))
        if probe is not None:
            probe.update(threads_knob="threads" in parts.backend.describe(), instances=parts.info.instances,
                         max_batch_size=parts.info.max_batch_size, batch_sizes=parts.info.batch_sizes,
                         runtime=parts.backend.version())
        result = runner.run_test(run_cfg, "performance", parts.backend, parts.info, parts.dataset, parts.store,
                                 parts.estimate, outdir)
    if result.hung:  # LoadGen still runs on its thread: the process must exit
        failure = BackendFailure(result.error or "LoadGen did not finish")
        failure.hung = True
        raise failure
    if result.interrupted:
        raise Interrupted(result.interrupted)
    trial = Trial(0, knobs, directory=str(outdir))
    trial.error = result.error
    if result.error:
        return trial
    trial.validity = result.validity or "INVALID"
    trial.samples_per_s = logs.number(result.detail, "result_samples_per_second")
    trial.duration_s = logs.run_duration_s(result.detail)
    return trial


def tune(cfg: Config, run: Callable[[Knobs, int, float | None], Trial], probe: dict, echo=print,
         cores: int | None = None, clock=time.monotonic) -> Tuning:
    """The search, on ``run(knobs, round, expect) -> Trial``. The first run is
    the default configuration and fills ``probe`` (what the backend accepts).
    ``expect`` sizes the run (see :func:`loaded_trial`): while screening, the
    warm-up's figure capped at twice the best rate so far (as ``-cap``); when
    repeating, 1.5x the configuration's own median rate so far (a run then
    lasts about 1.65x its minimum duration, whatever the warm-up measured)."""
    cores = cores or usable_cores()
    default = Knobs(cfg.threads, max(1, cfg.instances or 1), max(1, cfg.max_batch_size))
    tuning = Tuning(default)
    began = clock()

    def go(knobs: Knobs, round_: int) -> Trial:
        rates = [t.samples_per_s for t in tuning.trials if t.samples_per_s and (round_ == 0 or t.knobs == knobs)]
        expect = (-2 * max(rates) if round_ == 0 else 1.5 * statistics.median(rates)) if rates else None
        trial = run(knobs, round_, expect)
        trial.number, trial.round = len(tuning.trials) + 1, round_
        tuning.trials.append(trial)
        echo(format_trial(trial))
        return trial

    echo(header(cfg, cores))
    first = go(default, 0)
    if first.error:
        tuning.verdict = f"the default configuration failed: {first.error}"
        return tuning
    default_batch = min(default.batch, probe.get("max_batch_size") or default.batch)
    if default_batch != default.batch or probe.get("instances", default.instances) != default.instances:
        tuning.notes.append(f"the backend runs the default as {probe.get('instances')} instance(s), "
                            f"batch {probe.get('max_batch_size')}")
    sizes = probe.get("batch_sizes")
    model_max = probe.get("max_batch_size") or 1
    # a model that took the default's batch whole may take larger ones: cap at the profile limit
    symbolic = sizes is None and model_max >= default.batch
    batches = batch_choices(default.batch, max(BATCHES) if symbolic else model_max,
                            tuple(sizes) if sizes else None)
    if not probe.get("threads_knob", True):
        tuning.notes.append("the backend takes no thread count: only instances and batch vary")
    todo = candidates(default, cores, probe.get("threads_knob", True), batches)[1:]
    for knobs in todo:
        if len(tuning.trials) >= MAX_TRIALS:
            tuning.skipped.append((knobs, f"more than {MAX_TRIALS} trials"))
            continue
        if clock() - began > SCREEN_BUDGET_S:
            tuning.skipped.append((knobs, f"screening budget {SCREEN_BUDGET_S:g} s spent"))
            continue
        trial = go(knobs, 0)
        if trial.error:
            tuning.notes.append(f"{knobs.label()} failed: {trial.error}")
    screened = sorted((t for t in tuning.trials if t.samples_per_s and not t.error),
                      key=lambda t: t.samples_per_s, reverse=True)
    finalists = []
    for trial in screened:
        if trial.knobs not in finalists and trial.knobs != default:
            finalists.append(trial.knobs)
        if len(finalists) == FINALISTS:
            break
    finalists.append(default)
    echo(f"repeating the {len(finalists) - 1} best and the default, {ROUNDS} alternated rounds:")
    for round_, knobs in rounds_order(finalists, ROUNDS):
        go(knobs, round_)
    tuning.winner, tuning.ranked, tuning.verdict = choose(tuning.trials, default)
    return tuning


# --- what is printed and written ---------------------------------------------------------

def header(cfg: Config, cores: int) -> str:
    load = ""
    try:
        load = f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except (AttributeError, OSError):
        pass
    return (f"tune Offline ({cfg.backend}): threads per instance x instances x batch on {cores} usable cores; "
            f"runs of at least {TRIAL_MIN_DURATION_MS if cfg.min_duration_ms is None else cfg.min_duration_ms} ms, "
            f"the model loaded and warmed up per run{load}\n"
            f"{'trial':>5}  {'round':>5}  {'configuration':<32} {'samples/s':>10}  {'result':<8} {'duration':>8}")


def format_trial(trial: Trial) -> str:
    round_ = "screen" if trial.round == 0 else str(trial.round)
    if trial.error:
        return f"{trial.number:>5}  {round_:>5}  {trial.knobs.label():<32} FAILED: {trial.error}"
    rate = f"{trial.samples_per_s:>10.1f}" if trial.samples_per_s is not None else f"{'-':>10}"
    duration = f"{trial.duration_s:>6.1f} s" if trial.duration_s is not None else f"{'-':>8}"
    return f"{trial.number:>5}  {round_:>5}  {trial.knobs.label():<32} {rate}  {trial.validity:<8} {duration}"


def table(tuning: Tuning) -> str:
    lines = [f"medians of {ROUNDS} alternated runs (spread = (max - min) / median):",
             f"  {'configuration':<32} {'median/s':>9}  {'spread':>7}  {'runs':<28} vs default"]
    base = next((r for r in tuning.ranked if r.default), None)
    for r in tuning.ranked:
        runs = " ".join(f"{x:.1f}" for x in r.rates)
        vs = f"{r.median / base.median:.2f}x" if base and base.median else "-"
        mark = " (default)" if r.default else ""
        win = " <- winner" if tuning.winner is r else ""
        lines.append(f"  {r.knobs.label():<32} {r.median:>9.1f}  {r.spread * 100:>6.1f}%  {runs:<28} {vs}{mark}{win}")
    return "\n".join(lines)


def fragment(cfg: Config, tuning: Tuning, runtime: str = "") -> str:
    """The winner as profile TOML lines."""
    w = tuning.winner
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f"# run.py --tune, {cfg.backend} ({runtime or '?'}) on {platform.node() or 'this machine'}, {when}:\n"
            f"# Offline {w.median:.1f} samples/s, median of {len(w.rates)} runs, spread {w.spread * 100:.1f}%\n"
            f"threads = {w.knobs.threads}\ninstances = {w.knobs.instances}\nmax_batch_size = {w.knobs.batch}\n")


def conf_line(cfg: Config, tuning: Tuning) -> str:
    """LoadGen's expected QPS for the winner: a little below its slowest repeat."""
    from sut.peak import _round_down

    return f"{cfg.mlperf_model}.Offline.target_qps = {_round_down(min(tuning.winner.rates) * 0.9)}"


def options_line(knobs: Knobs) -> str:
    return f"--threads {knobs.threads} --instances {knobs.instances} --max-batchsize {knobs.batch}"


def text(tuning: Tuning) -> str:
    lines = []
    if tuning.skipped:
        lines.append(f"skipped {len(tuning.skipped)}: " +
                     "; ".join(f"{k.label()} ({why})" for k, why in tuning.skipped))
    lines += [f"note: {n}" for n in tuning.notes]
    if tuning.ranked:
        lines.append(table(tuning))
    if tuning.winner:
        lines.append(f"winner: {tuning.winner.knobs.label()}: {tuning.verdict}")
        lines.append(f"options: {options_line(tuning.winner.knobs)}")
    else:
        lines.append(f"no winner: {tuning.verdict}")
    return "\n".join(lines)


# --- the command ------------------------------------------------------------------------

def main(cfg: Config, echo=print) -> int:
    """``run.py --tune``: returns the exit status (0: a winner was found)."""
    from sut import session
    from sut.results import RunDirectory

    if cfg.scenario != "Offline":
        raise ConfigError(f"--tune tunes Offline, not {cfg.scenario}: pass --scenario Offline, then use the "
                          f"winner's options with --scenario Server --find-peak-performance")
    if cfg.mode == "accuracy":  # "both" (a profile's default) runs its performance part
        raise ConfigError("--tune runs performance tests: drop --accuracy / --mode accuracy")
    if cfg.precision and "," in cfg.precision:
        raise ConfigError("--tune runs one precision: pass one --precision, not a list")
    dataset, model = session.open_dataset(cfg)
    session.check_precisions(cfg, [cfg.precision], model)
    run_dir = RunDirectory(cfg.output, f"{cfg.profile or cfg.model_name}-Offline-tune")
    record = {"config": cfg.to_dict(), "model_path": model}
    lines: list[str] = []
    probe: dict = {}

    def say(line: str) -> None:
        lines.append(line)
        echo(line)
        sys.stdout.flush()

    def run(knobs: Knobs, round_: int, expect: float | None) -> Trial:
        from sut import signals

        signals.check()
        outdir = run_dir.path / f"trial_{len(record.setdefault('trials', [])) + 1:02d}"
        outdir.mkdir(parents=True, exist_ok=True)
        try:
            trial = loaded_trial(cfg, knobs, dataset, model, outdir, probe if not probe else None, expect)
        except BackendFailure as exc:
            if getattr(exc, "hung", False) or not record["trials"]:
                raise  # a hung backend, or the default itself failing: nothing more may run
            trial = Trial(0, knobs, error=str(exc), directory=str(outdir))
        record["trials"].append(dataclasses.asdict(trial))
        return trial

    try:
        tuning = tune(cfg, run, probe, say)
    except HarnessError as exc:
        record["error"] = str(exc)
        run_dir.write_json("tune.json", record)
        run_dir.finish(ok=False)
        raise
    say(text(tuning))
    final = run_dir.root / run_dir.run_id
    record.update(trials=[dataclasses.asdict(t) for t in tuning.trials], verdict=tuning.verdict,
                  skipped=[(dataclasses.asdict(k), why) for k, why in tuning.skipped], notes=tuning.notes,
                  ranking=[{**dataclasses.asdict(r.knobs), "rates": r.rates, "median": r.median,
                            "spread": r.spread, "default": r.default} for r in tuning.ranked],
                  runtime=probe.get("runtime"))
    if tuning.winner:
        toml = fragment(cfg, tuning, probe.get("runtime", ""))
        line = conf_line(cfg, tuning)
        record.update(winner=dataclasses.asdict(tuning.winner.knobs), profile_fragment=toml, user_conf_line=line)
        run_dir.write_text("tune.toml", toml)
        run_dir.write_text("user.conf", line + "\n")
        say(f"profile fragment ({final / 'tune.toml'}):\n{toml.rstrip()}")
        say(f"user.conf line ({final / 'user.conf'}): {line}")
    say(f"saved: {final / 'tune.txt'}, {final / 'tune.json'} (each run's LoadGen logs in trial_NN/)")
    run_dir.write_text("tune.txt", "\n".join(lines) + "\n")
    run_dir.write_json("tune.json", json.loads(json.dumps(record, default=str)))
    run_dir.finish(ok=tuning.error is None or tuning.winner is not None)
    return 0 if tuning.winner is not None else 1
