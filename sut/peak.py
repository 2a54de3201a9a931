"""``--find-peak-performance``: the highest target a run stays VALID at.

``python run.py --profile P --model M --dataset-path D --scenario Server
--find-peak-performance`` loads the model and warms up once, then runs short
LoadGen performance tests (each a whole LoadGen run with its own logs) at
different targets and prints each step: the target, VALID/INVALID, the rate
achieved, the 99th percentile latency. It ends with the highest VALID target
and the ``user.conf`` line that reuses it.

* **Server**: bracket, then bisect the target QPS. The first target is half
  the warm-up throughput; VALID doubles it and INVALID halves it until the two
  are bracketed, then the geometric midpoint is tried until the bracket is
  within :data:`TOLERANCE` (or :data:`MAX_STEPS` runs). The answer is then
  confirmed by a run :data:`CONFIRM_LENGTH` times longer (a short step can
  miss the machine's slow moments), lowered while that run is INVALID. A
  step that would take over :data:`STEP_MAX_S` is not run, nor any step after
  :data:`SEARCH_BUDGET_S`. The ceiling is the
  warm-up throughput times :data:`CEILING`: a Server cannot answer faster
  than the machine computes, and a runaway target would make LoadGen
  generate an enormous query set. The latency bound is the real one
  (mlperf.conf, user.conf or ``--target-latency-ms``; ``--quick`` raises it
  as it does for a quick run).
* **Offline**: the expected QPS that makes a run last what was asked for
  (``--time`` / ``--min-duration``; else about a second per step). LoadGen
  generates ``expected QPS x min duration x 1.1`` samples, so a run whose
  expected QPS is the achieved rate lasts ~1.1 x the minimum; each step sets
  the next expected QPS to the rate the last one achieved, until a VALID run
  lasts between 1 and :data:`OFFLINE_LONGEST` times the minimum duration.
* **SingleStream / MultiStream** have no target to search (LoadGen issues
  each query when the previous one is answered, so every run measures the
  peak): one run, and the user.conf ``target_latency`` (LoadGen's expected
  latency, which sizes the query set) that suits the latency it measured.

Unless ``--min-duration``/``--time``/``--min-query-count`` say otherwise,
each step is short (:data:`STEP_MIN_DURATION_MS`, :data:`STEP_MIN_QUERIES`
queries: enough for early stopping with no late query). A target VALID in a
short step holds for a full-length run only if the machine keeps the same
pace for minutes: the Server answer is confirmed by a longer run, and a
normal (10 minute) run is the final word.

Results go to ``<output>/<time>-<name>-<scenario>-peak/``: ``step_NN/`` (each
step's LoadGen logs), ``peak.txt`` (what was printed) and ``peak.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Callable

from profiles import Config
from sut import logs
from sut.errors import ConfigError, HarnessError

log = logging.getLogger(__name__)

#: stop bisecting when the highest VALID and lowest INVALID targets are this close (relative)
TOLERANCE = 0.05
#: at most this many LoadGen runs in one search
MAX_STEPS = 12
#: the Server search never tries more than the warm-up throughput times this
CEILING = 1.25
#: the Server search gives up below this target (QPS)
FLOOR_QPS = 0.5
#: a step's minimum duration and query count unless the command line sets them
STEP_MIN_DURATION_MS = 1000
STEP_MIN_QUERIES = 500
#: Offline: a VALID step lasting at most this many times its minimum duration ends the search
OFFLINE_LONGEST = 1.3
#: a Server step expected to last longer than this (its queries at its target) is not run:
#: the search stops going down (low targets take long: 500 queries at 5 QPS is 100 s)
STEP_MAX_S = 30.0
#: no new step starts after the search has run this long
SEARCH_BUDGET_S = 300.0
#: Server: the answer is confirmed by a run this many times longer than a step; if that run is
#: INVALID, the target is lowered by CONFIRM_BACKOFF and confirmed again, at most CONFIRM_TRIES times
CONFIRM_LENGTH = 5
CONFIRM_BACKOFF = 0.85
CONFIRM_TRIES = 3
#: SingleStream/MultiStream: the recommended expected latency is the mean latency times this
#: (LoadGen runs out of queries before the minimum duration if it expects a slower SUT)
EXPECTED_LATENCY_FACTOR = 0.9


@dataclasses.dataclass
class Step:
    number: int
    target: float                     # QPS tried (Server target, Offline expected); 0 for SS/MS
    validity: str = "FAILED"          # VALID / INVALID / FAILED
    achieved: float | None = None     # samples per second LoadGen measured
    p99_ms: float | None = None       # 99th percentile latency
    late: int | None = None           # Server: queries over the latency bound
    queries: int | None = None
    duration_s: float | None = None
    bound_ms: float | None = None     # Server latency bound
    mean_ms: float | None = None
    reasons: list = dataclasses.field(default_factory=list)
    confirm: bool = False             # a longer run checking the search's answer
    error: str | None = None
    hung: bool = False
    directory: str = ""

    @property
    def valid(self) -> bool:
        return self.validity == "VALID"


@dataclasses.dataclass
class Peak:
    scenario: str
    steps: list
    best: Step | None = None
    conf_line: str | None = None
    note: str = ""
    directory: Path | None = None
    stopped: str = ""                 # why the search stopped early ("" if it converged)
    unconfirmed: Step | None = None   # Server: the short steps' answer that no longer run confirmed

    @property
    def error(self) -> str | None:
        return next((s.error for s in self.steps if s.error), None)

    @property
    def hung(self) -> bool:
        return any(s.hung for s in self.steps)


# --- the searches (pure: ``run(target) -> Step``) -----------------------------------

def search_server(run: Callable[[float], Step], start: float, ceiling: float,
                  max_steps: int = MAX_STEPS, tolerance: float = TOLERANCE,
                  affordable: Callable[[float], bool] = lambda target: True) -> list[Step]:
    """Bracket then bisect; returns the steps in order. Stops at the first
    failure, after ``max_steps``, or before a target ``affordable`` refuses
    (too long a step, or the time budget spent)."""
    steps: list[Step] = []
    low = high = None  # highest VALID, lowest INVALID target
    target = min(start, ceiling)
    while len(steps) < max_steps and affordable(target):
        step = run(target)
        steps.append(step)
        if step.error:
            break
        if step.valid:
            low = target if low is None else max(low, target)
        else:
            high = target if high is None else min(high, target)
        if low is not None and high is not None:
            if high <= low * (1 + tolerance):
                break
            target = math.sqrt(low * high)
        elif low is not None:  # all VALID so far: go up
            if low >= ceiling:
                break
            target = min(low * 2, ceiling)
        else:  # all INVALID so far: go down
            if high <= FLOOR_QPS:
                break
            target = max(high / 2, FLOOR_QPS)
    return steps


def search_offline(run: Callable[[float], Step], start: float, min_duration_s: float,
                   max_steps: int = 5) -> list[Step]:
    """Expected QPS := the rate the last step achieved, until a VALID step lasts
    between 1 and :data:`OFFLINE_LONGEST` times ``min_duration_s``."""
    steps: list[Step] = []
    target = start
    while len(steps) < max_steps:
        step = run(target)
        steps.append(step)
        if step.error or not step.achieved:
            break
        if step.valid and step.duration_s is not None and step.duration_s <= OFFLINE_LONGEST * min_duration_s:
            break
        target = step.achieved
    return steps


def confirm_server(run_long: Callable[[float], Step], best: Step | None,
                   affordable: Callable[[float], bool] = lambda target: True) -> Step | None:
    """Run ``best``'s target again, longer; lower it by :data:`CONFIRM_BACKOFF`
    while that is INVALID. Returns the confirmed step, or None."""
    if best is None:
        return None
    target = best.target
    for _ in range(CONFIRM_TRIES):
        if not affordable(target):
            return None
        step = run_long(target)
        if step.error:
            return None
        if step.valid:
            return step
        target *= CONFIRM_BACKOFF
    return None


def best_step(steps: list[Step]) -> Step | None:
    """Server: the VALID step with the highest target (SS/MS: the VALID one)."""
    valid = [s for s in steps if s.valid]
    return max(valid, key=lambda s: (s.target, s.number)) if valid else None


def offline_best(steps: list[Step], min_duration_s: float) -> Step | None:
    """Offline: the last VALID step that lasted 1 to :data:`OFFLINE_LONGEST` times
    ``min_duration_s``; failing that, the VALID step that lasted least."""
    valid = [s for s in steps if s.valid and s.duration_s is not None]
    fits = [s for s in valid if s.duration_s <= OFFLINE_LONGEST * min_duration_s]
    if fits:
        return fits[-1]
    return min(valid, key=lambda s: s.duration_s) if valid else None


# --- one step: a LoadGen run on prepared parts ----------------------------------------

def step_config(cfg: Config, target: float | None, length: int = 1) -> Config:
    """The configuration of one step: a performance test at ``target`` (None:
    keep it), short unless the command line set the duration or query count;
    ``length`` times longer for a confirmation."""
    changes = {"mode": "performance",
               "min_duration_ms": length * (STEP_MIN_DURATION_MS if cfg.min_duration_ms is None
                                            else cfg.min_duration_ms),
               "min_query_count": length * (STEP_MIN_QUERIES if cfg.min_query_count is None
                                            else cfg.min_query_count)}
    if target is not None:
        changes["target_qps"] = target
    if cfg.scenario in ("SingleStream", "MultiStream") and cfg.min_query_count is None:
        # early stopping's least for a VALID run: 64 SingleStream (p90), 662 MultiStream (p99) queries
        changes["min_query_count"] = 100 if cfg.scenario == "SingleStream" else 662
    return dataclasses.replace(cfg, **changes)


def read_step(number: int, target: float, result, directory: Path) -> Step:
    """A :class:`Step` from a ``runner.TestResult``."""
    step = Step(number, target, directory=str(directory))
    step.error = result.error
    step.hung = bool(getattr(result, "hung", False))
    detail = result.detail or {}
    if result.error:
        return step
    step.validity = result.validity or "INVALID"
    step.reasons = list(result.reasons)
    number_of = logs.number
    if result.scenario == "Server":
        step.achieved = number_of(detail, "result_completed_samples_per_sec")
        late = number_of(detail, "result_overlatency_query_count")
        step.late = int(late) if late is not None else None
    elif result.scenario == "Offline":
        step.achieved = number_of(detail, "result_samples_per_second")
    else:
        step.achieved = number_of(detail, "result_qps_with_loadgen_overhead")
    key = ("result_99.00_percentile_per_query_latency_ns" if result.scenario == "MultiStream"
           else "result_99.00_percentile_latency_ns")
    p99 = number_of(detail, key)
    step.p99_ms = p99 / 1e6 if p99 is not None else None
    mean = number_of(detail, "result_mean_query_latency_ns" if result.scenario == "MultiStream"
                     else "result_mean_latency_ns")
    step.mean_ms = mean / 1e6 if mean is not None else None
    bound = number_of(detail, "effective_target_latency_ns")
    step.bound_ms = bound / 1e6 if bound else None
    queries = number_of(detail, "result_query_count")
    step.queries = int(queries) if queries is not None else None
    step.duration_s = logs.run_duration_s(detail)
    return step


def find(cfg: Config, parts, root: Path, echo=print) -> Peak:
    """Run the search for ``cfg.scenario`` on prepared ``parts``
    (:class:`sut.session.Parts`), each step's logs under ``root/step_NN``."""
    from sut import runner

    import time

    peak = Peak(cfg.scenario, [])
    estimate = parts.estimate
    rate = getattr(estimate, "samples_per_s", None) or 1.0
    began = time.monotonic()
    queries = step_config(cfg, None).min_query_count

    def affordable(target: float, length: int = 1) -> bool:
        if time.monotonic() - began > SEARCH_BUDGET_S:
            peak.stopped = f"the search's time budget ({SEARCH_BUDGET_S:g} s) is spent"
            return False
        if length * queries / target > length * STEP_MAX_S:
            peak.stopped = (f"a step at {target:.1f} QPS would take {queries / target:.0f} s ({queries} queries), "
                            f"more than {STEP_MAX_S:g} s")
            return False
        return True

    def run(target: float | None, length: int = 1) -> Step:
        number = len(peak.steps) + 1
        outdir = root / f"step_{number:02d}"
        outdir.mkdir(parents=True, exist_ok=True)
        result = runner.run_test(step_config(cfg, target, length), "performance", parts.backend, parts.info,
                                 parts.dataset, parts.store, estimate, outdir)
        step = read_step(number, target or 0.0, result, outdir)
        step.confirm = length > 1
        peak.steps.append(step)
        echo(format_step(step, cfg.scenario))
        return step

    echo(header(cfg, rate))
    if cfg.scenario == "Server":
        start = cfg.target_qps or rate / 2
        search_server(run, start, max(rate * CEILING, start), affordable=affordable)
        found = best_step(peak.steps)
        if found is not None and not peak.error:
            echo(f"confirming {found.target:.1f} QPS with a run {CONFIRM_LENGTH}x as long "
                 f"(lowered by {100 * (1 - CONFIRM_BACKOFF):g}% while INVALID, at most {CONFIRM_TRIES} times)")
            peak.best = confirm_server(lambda t: run(t, CONFIRM_LENGTH), found,
                                       lambda t: affordable(t, CONFIRM_LENGTH))
            peak.unconfirmed = found if peak.best is None else None
        else:
            peak.best = found
    elif cfg.scenario == "Offline":
        min_s = step_config(cfg, None).min_duration_ms / 1000
        search_offline(run, cfg.target_qps or rate, min_s)
        peak.best = offline_best(peak.steps, min_s)
    else:
        run(None)
        peak.best = best_step(peak.steps)
    peak.conf_line = conf_line(cfg, peak.best)
    peak.note = conclusion(cfg, peak)
    return peak


# --- what is printed --------------------------------------------------------------

def header(cfg: Config, rate: float) -> str:
    step = step_config(cfg, None)
    length = f"steps of at least {step.min_duration_ms} ms and {step.min_query_count} queries"
    if cfg.scenario == "Server":
        what = (f"Server: the highest target QPS that stays VALID, from {cfg.target_qps or rate / 2:.1f} "
                f"(warm-up throughput {rate:.1f} samples/s; tries at most {rate * CEILING:.1f})")
    elif cfg.scenario == "Offline":
        what = (f"Offline: the expected QPS that makes a run last {step.min_duration_ms / 1000:g} s "
                f"(its minimum duration) to {OFFLINE_LONGEST:g}x that")
    else:
        what = (f"{cfg.scenario}: no target to search (LoadGen sends each query when the previous one "
                f"is answered, so one run measures the peak)")
    columns = (f"{'step':>4}  {'target QPS':>10}  {'result':<8} {'achieved/s':>10}  {'p99 latency':>12}  "
               f"{'late':>9}  {'duration':>8}")
    load = machine_load()
    return f"find peak performance, {what}; {length}{load}\n{columns}"


def machine_load() -> str:
    """'; load average 10.7 on 2 CPUs (busy: expect noisy steps)' where the OS tells."""
    try:
        load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    except (AttributeError, OSError):
        return ""
    busy = " (busy: expect noisy steps)" if load > cpus else ""
    return f"; load average {load:.1f} on {cpus} CPUs{busy}"


def format_step(step: Step, scenario: str) -> str:
    if step.error:
        return f"{step.number:>4}  {step.target:>10.1f}  FAILED   {step.error}"
    target = f"{step.target:>10.1f}" if step.target else f"{'-':>10}"
    achieved = f"{step.achieved:>10.1f}" if step.achieved is not None else f"{'-':>10}"
    p99 = f"{step.p99_ms:>9.2f} ms" if step.p99_ms is not None else f"{'-':>12}"
    late = f"{step.late}/{step.queries}" if step.late is not None and step.queries else "-"
    duration = f"{step.duration_s:>6.1f} s" if step.duration_s is not None else f"{'-':>8}"
    line = f"{step.number:>4}  {target}  {step.validity:<8} {achieved}  {p99}  {late:>9}  {duration}"
    if step.confirm:
        line += "  confirm"
    if not step.valid and step.reasons:
        line += f"  ({step.reasons[0].split(':')[0]})"
    return line


def conf_line(cfg: Config, best: Step | None) -> str | None:
    """The user.conf line that reuses the result (LoadGen's key names)."""
    if best is None:
        return None
    model = cfg.mlperf_model
    if cfg.scenario in ("Server", "Offline"):
        return f"{model}.{cfg.scenario}.target_qps = {_round_down(best.target)}"
    if best.mean_ms:
        return f"{model}.{cfg.scenario}.target_latency = {_round_down(best.mean_ms * EXPECTED_LATENCY_FACTOR)}"
    return None


def _round_down(value: float, digits: int = 5) -> str:
    """``value`` to ``digits`` significant digits, rounded down (a target a little
    below the VALID one, never above)."""
    if value <= 0:
        return "0"
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    text = f"{math.floor(value * scale) / scale:.{max(0, digits - 1 - math.floor(math.log10(value)))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def conclusion(cfg: Config, peak: Peak) -> str:
    best, steps = peak.best, peak.steps
    if peak.error:
        return f"search stopped: step {steps[-1].number} failed: {peak.error}"
    if best is None and peak.unconfirmed is not None:
        short = peak.unconfirmed
        return (f"no target confirmed: {short.target:.1f} QPS was VALID in a short step (step {short.number}) "
                f"but the longer runs down to {short.target * CONFIRM_BACKOFF ** (CONFIRM_TRIES - 1):.1f} QPS "
                f"were INVALID: the machine's pace changes (load average above); rerun on a quiet machine")
    if best is None:
        if cfg.scenario == "Server" and steps:
            lowest = min(steps, key=lambda s: s.target)
            few = all(s.late is not None and s.queries and s.late <= 0.03 * s.queries
                      for s in steps if s.target <= 2 * lowest.target)
            why = (" (a few late queries at every low rate: latency spikes, not load; a busy machine "
                   "shows them, see the load average above)" if few else "")
            stop = f"; stopped: {peak.stopped}" if peak.stopped else ""
            return (f"no VALID target down to {lowest.target:.1f} QPS: {lowest.late}/{lowest.queries} queries "
                    f"over the {lowest.bound_ms or 0:g} ms bound there{why}{stop}; rerun on a quiet machine, "
                    f"raise the bound (--target-latency-ms) or make single queries faster")
        return f"no VALID run: {'; '.join(steps[-1].reasons) if steps else 'no step ran'}"
    if cfg.scenario == "Server":
        invalid = [s.target for s in steps if not s.valid and s.target > best.target]
        above = f"; lowest INVALID target {min(invalid):.1f}" if invalid else "; no INVALID target below the ceiling"
        stop = f"; stopped early: {peak.stopped}" if peak.stopped else ""
        how = (f"confirmed by a run {CONFIRM_LENGTH}x as long as a step" if best.confirm
               else "found with short steps")
        return (f"highest VALID target: {best.target:.1f} QPS (step {best.number}: completed "
                f"{best.achieved or 0:.1f} samples/s, p99 {best.p99_ms or 0:.2f} ms within the "
                f"{best.bound_ms or 0:g} ms bound), {how}{above}{stop}. A full-length run (10 min) sees "
                f"more of the machine's slow moments: check it with --target-qps {_round_down(best.target)}")
    if cfg.scenario == "Offline":
        duration = f"{best.duration_s:.1f} s" if best.duration_s is not None else "?"
        longest = OFFLINE_LONGEST * step_config(cfg, None).min_duration_ms / 1000
        if best.duration_s is not None and best.duration_s > longest:
            duration += f" (no step ended within {longest:g} s: the rate varied between steps)"
        return (f"expected QPS {best.target:.1f}: step {best.number} was VALID at {best.achieved or 0:.1f} "
                f"samples/s and lasted {duration} for a {step_config(cfg, None).min_duration_ms / 1000:g} s "
                f"minimum; the same expected QPS suits a longer --time (LoadGen scales the sample count)")
    return (f"{cfg.scenario} measured its peak in one run (mean latency {best.mean_ms or 0:.3f} ms); the "
            f"user.conf line sets LoadGen's expected latency a little below it, so a long run generates "
            f"enough queries to fill its minimum duration")


def text(peak: Peak) -> str:
    lines = [f"result: {peak.note}"]
    if peak.conf_line:
        lines.append(f"user.conf line to reuse: {peak.conf_line}")
    return "\n".join(lines)


# --- the command ------------------------------------------------------------------

def main(cfg: Config, echo=print) -> int:
    """``run.py --find-peak-performance``: load and warm up once, search, save,
    print; returns the exit status (0: a VALID target was found)."""
    from sut import session
    from sut.results import RunDirectory

    if cfg.mode != "performance":
        raise ConfigError("--find-peak-performance searches performance runs: drop --accuracy / --mode")
    if cfg.precision and "," in cfg.precision:
        raise ConfigError("--find-peak-performance runs one precision: pass one --precision, not a list")
    dataset, model = session.open_dataset(cfg)
    session.check_precisions(cfg, [cfg.precision], model)
    run_dir = RunDirectory(cfg.output, f"{cfg.profile or cfg.model_name}-{cfg.scenario}-peak")
    record = {"config": cfg.to_dict(), "model_path": model}
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        echo(line)
        sys.stdout.flush()

    try:
        with session.prepared(cfg, dataset, model, record) as parts:
            peak = find(cfg, parts, run_dir.path, say)
    except HarnessError as exc:
        record["error"] = str(exc)
        run_dir.write_json("peak.json", record)
        run_dir.finish(ok=False)
        raise
    say(text(peak))
    record.update(scenario=peak.scenario, steps=[dataclasses.asdict(s) for s in peak.steps],
                  best=dataclasses.asdict(peak.best) if peak.best else None, user_conf_line=peak.conf_line,
                  result=peak.note)
    if peak.hung:  # LoadGen still runs a step on its thread: nothing more may happen
        run_dir.write_json("peak.json", record)
        print(f"error: {peak.error}", file=sys.stderr, flush=True)
        os._exit(6)
    final_name = run_dir.root / run_dir.run_id
    say(f"saved: {final_name / 'peak.txt'}, {final_name / 'peak.json'} (each step's LoadGen logs in step_NN/)")
    run_dir.write_text("peak.txt", "\n".join(lines) + "\n")
    run_dir.write_json("peak.json", json.loads(json.dumps(record, default=str)))
    peak.directory = run_dir.finish(ok=peak.error is None)
    if peak.error:
        print(f"error: {peak.error}", file=sys.stderr, flush=True)
        return 6
    return 0 if peak.best is not None else 1
