"""What recording per-query latencies costs (sut/latencies.py).

The Completer records each finished token with one ``Recorder.add`` call
(three stores into a preallocated C array). This compares our SUT with that
call against the same SUT without it: ``Completer.finish`` recompiled from its
own source minus the recording line, so the figure follows whatever else
``finish`` does today. The null backend (``benchmarks.harness_overhead``) makes
the harness's own per-query work the whole cost, the worst case for the ratio.

Three figures:

* ``add`` alone: nanoseconds per call in a loop (timeit, best of 5).
* end to end, timed: SingleStream and Offline through ``sut.runner.run_test``,
  recording on and off interleaved, medians of ``--repeats`` runs: LoadGen's
  QPS with its overhead (SingleStream, per-query cost = 1/QPS) and samples per
  second (Offline). Noisy on a shared machine: read it with the next one.
* end to end, instructions (``--callgrind``): ``valgrind --tool=callgrind``
  instruction counts of one SingleStream test with N1 and N2 queries, on and
  off; the slope ``(Ir(N2) - Ir(N1)) / (N2 - N1)`` is the cost per query with
  start-up cancelled out, and does not depend on the neighbours' load.

    .venv/bin/python -m benchmarks.latency_recording [--repeats 5] [--callgrind]
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RECORD_CALL = "self.latencies.add("


@contextlib.contextmanager
def recording(on: bool):
    """Run with ``Completer.finish`` as it is (on) or without its recording line (off)."""
    from sut import completion

    if on:
        yield
        return
    original = completion.Completer.finish
    source = textwrap.dedent(inspect.getsource(original))
    lines = source.splitlines(keepends=True)
    kept = [line for line in lines if RECORD_CALL not in line]
    if len(kept) != len(lines) - 1:
        raise SystemExit(f"Completer.finish has {len(lines) - len(kept)} lines with {RECORD_CALL!r}, expected 1")
    namespace: dict = {}
    exec(compile("".join(kept), completion.__file__, "exec"), completion.__dict__, namespace)  # noqa: S102
    completion.Completer.finish = namespace["finish"]
    try:
        yield
    finally:
        completion.Completer.finish = original


def add_ns() -> float:
    from sut.latencies import Recorder

    rec = Recorder()
    n = 200_000
    best = min(timeit.repeat("add(7, 1.5, 2.5, 1)", globals={"add": rec.add}, number=n, repeat=5))
    return best / n * 1e9


def one_run(scenario: str, on: bool, queries: int | None = None, duration_ms: int = 1000):
    from benchmarks import harness_overhead as ho

    parts = ho.null_parts(64)
    if scenario == "SingleStream":
        if queries:
            cfg = ho.config(scenario, min_duration_ms=0, min_query_count=queries, max_query_count=queries,
                            target_latency_ms=0.002)
        else:
            cfg = ho.config(scenario, min_duration_ms=duration_ms, min_query_count=100, target_latency_ms=0.002)
    else:
        cfg = ho.config("Offline", min_duration_ms=duration_ms, min_query_count=1, target_qps=300000)
    with tempfile.TemporaryDirectory(prefix="latrec-") as tmp, recording(on):
        return ho.run_ours(cfg, *parts, Path(tmp))


def timed(repeats: int) -> list[list]:
    from benchmarks.harness_overhead import median

    rows = []
    for scenario, key in (("SingleStream", "result_qps_with_loadgen_overhead"),
                          ("Offline", "result_samples_per_second")):
        figures = {True: [], False: []}
        for _ in range(repeats):
            for on in (False, True):
                figures[on].append(one_run(scenario, on).detail.get(key))
        off, on = median(figures[False]), median(figures[True])
        label = "SingleStream queries/s (LoadGen, with its overhead)" if scenario == "SingleStream" else \
            "Offline samples/s, batch 1"
        rows.append([label, off, on, (off / on - 1) * 100 if off and on else None,
                     " ".join(f"{v:,.0f}" for v in figures[False]) + " | " +
                     " ".join(f"{v:,.0f}" for v in figures[True])])
    return rows


def callgrind_count(on: bool, queries: int) -> int:
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        env = dict(os.environ, PYTHONHASHSEED="0")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
               "--collect-jumps=no", sys.executable, "-m", "benchmarks.latency_recording", "--child",
               "on" if on else "off", str(queries)]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = [line for line in done.stderr.splitlines() if not line.startswith("==")][-5:]
            raise SystemExit(f"callgrind child failed (exit {done.returncode}): {' | '.join(tail)}")
        return int(re.search(r"^summary:\s+(\d+)", out.read_text(), re.M).group(1))


def instructions(n1: int = 200, n2: int = 10200, repeats: int = 1) -> list[list]:
    """Off and on interleaved, ``repeats`` times. Time-driven work (the runner's
    50 ms polls, the watchdog) grows with the wall time, which valgrind
    stretches and the neighbours' load varies: a long N2 dilutes it."""
    rows = []
    for i in range(repeats):
        slopes = {}
        for on in (False, True):
            slopes[on] = (callgrind_count(on, n2) - callgrind_count(on, n1)) / (n2 - n1)
        rows.append([f"SingleStream instructions per query (callgrind slope, #{i + 1})", slopes[False],
                     slopes[True], (slopes[True] / slopes[False] - 1) * 100,
                     f"{slopes[True] - slopes[False]:,.0f} instructions/query for recording ({n1} vs {n2} queries)"])
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="timed runs per variant (medians); callgrind: "
                   "how many times to count each")
    p.add_argument("--callgrind", action="store_true", help="also count instructions with valgrind (minutes)")
    p.add_argument("--no-timed", action="store_true", help="skip the timed runs")
    p.add_argument("--queries", type=int, nargs=2, default=(200, 10200), metavar=("N1", "N2"),
                   help="callgrind: queries in the short and the long run (default 200 10200)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        run = one_run("SingleStream", args.child[0] == "on", queries=int(args.child[1]))
        if run.detail.get("result_query_count") != int(args.child[1]):
            raise SystemExit(f"LoadGen ran {run.detail.get('result_query_count')} queries, not {args.child[1]}")
        return 0
    from benchmarks.harness_overhead import table

    print(f"Recorder.add alone: {add_ns():.0f} ns per call (timeit, best of 5)\n")
    rows = [] if args.no_timed else timed(args.repeats)
    if args.callgrind:
        if shutil.which("valgrind") is None:
            print("error: valgrind is not installed (Debian/Ubuntu: apt install valgrind)", file=sys.stderr)
            return 5
        rows += instructions(*args.queries, repeats=args.repeats)
    print(table("Per-query latency recording: our SUT without / with it (null backend, worst case; "
                "timed: medians, 2 shared cores, noisy)",
                ["figure", "off", "on", "cost %", "runs (off | on) / detail"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
