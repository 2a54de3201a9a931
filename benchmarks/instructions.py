"""Harness overhead in instructions: figures that repeat whatever the machine is doing.

Time on a shared 2-core machine swings by 10-50 % with the neighbours' load;
the number of instructions a piece of code executes does not. Each figure
here is counted by ``valgrind --tool=callgrind`` in a child process, as a
slope: the child runs the same LoadGen test with N1 and with N2 queries (or
samples), and ``(Ir(N2) - Ir(N1)) / (N2 - N1)`` is the cost of one more --
interpreter start, imports, model load and LoadGen's set-up cancel out.

Two kinds of figure:

* **end to end**, per query (SingleStream, MultiStream) or per sample
  (Offline): the null backend through our SUT (``sut.runner.run_test``, as
  ``run.py`` runs it) against a bare LoadGen FastSUT that answers inline from
  one preallocated buffer (``benchmarks.harness_overhead.run_bare``), both in
  the same LoadGen build and settings.
* **steps**, per call: each piece of our per-query path alone in a loop
  (sample lookup, predict call, postprocess, response objects, the
  Completer's bookkeeping, the Watchdog's per-call marks), so a regression shows where it
  came from. Steps do not add up to the end-to-end figure exactly: that also
  holds LoadGen's own work and thread hand-offs.

``PYTHONHASHSEED=0`` is set in the children so dict and set layouts repeat,
and ``OPENBLAS_NUM_THREADS=1``: NumPy's idle BLAS threads spin for a while
after each call, which counts time, not work.
Only the threads that issue or complete queries are counted (callgrind
``--separate-threads``): the others run on a clock, not per query -- our run
loop's and watchdog's polls, LoadGen's log writer -- and their counts follow
the wall time, which the machine's load changes (check: ``--repeat 2`` with
the other core loaded gives the same counts within 1 %). Both sides lose
LoadGen's log writer equally.

    .venv/bin/python -m benchmarks.instructions            # ~5 min on 2 cores
    .venv/bin/python -m benchmarks.instructions --quick    # end to end SingleStream only
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: targets from issue 14 (instructions per query/sample, ours over bare)
TARGETS = {"SingleStream": 2.0, "MultiStream": 2.0, "Server": 2.0, "Offline b1": 1.5, "Offline b64": 1.5}


# --- children ------------------------------------------------------------------------

def child_end_to_end(kind: str, case: str, n: int) -> None:
    """One LoadGen test of ``n`` queries (latency cases) or samples (Offline)."""
    from benchmarks import harness_overhead as ho

    batch = 64 if case == "Offline b64" else 1
    parts = ho.null_parts(64, max_batch_size=batch)
    if case in ("SingleStream", "MultiStream"):
        cfg = ho.config(case, min_duration_ms=0, min_query_count=n, max_query_count=n,
                        target_latency_ms=0.002 if case == "SingleStream" else 0.02)
    elif case == "Server":  # a rate the SUT keeps up with under valgrind: no queue builds up
        cfg = ho.config(case, min_duration_ms=0, min_query_count=n, target_qps=400,
                        target_latency_ms=1000)
    else:  # Offline: one query of n samples (expected qps x 1 s)
        cfg = ho.config("Offline", min_duration_ms=1000, min_query_count=1, target_qps=n)
    with tempfile.TemporaryDirectory(prefix="instructions-") as tmp:
        run = ho.run_bare(cfg, 64, Path(tmp)) if kind == "bare" else ho.run_ours(cfg, *parts, Path(tmp))
    done = run.detail.get("result_query_count") if case in ("SingleStream", "MultiStream") else \
        run.detail.get("result_samples_per_second") and n
    if case == "Server":
        done = run.detail.get("result_query_count", n)  # (not every LoadGen logs it for Server)
    if case in ("SingleStream", "MultiStream", "Server") and done != n:
        raise SystemExit(f"{kind} {case}: LoadGen ran {done} queries, not {n}")


def _steps():
    """name -> (setup() -> call) for each step of our per-query path, called once per iteration."""
    from benchmarks import harness_overhead as ho
    from sut.completion import Calls, Completer, ResponseSlots
    from sut.qsl import QuerySampleLibrary

    backend, info, dataset, store = ho.null_parts(64)
    qsl = QuerySampleLibrary(store, 64)
    qsl.load(list(range(64)))
    one = qsl.single(3)
    outputs = backend.predict(one, 0)
    writer = dataset.response_writer(info)
    slots = ResponseSlots()

    def completer_call():
        import sut.completion as completion

        completion.lg = _NoLoadGen()  # bookkeeping only: LoadGen's own call is in the end-to-end figure
        completer = Completer()
        objects = slots.objects([7])

        def call():
            completer.complete(completer.start([7]), objects)
        return call

    def watchdog_call():
        calls = Calls(1)

        def call():  # what Predictor does around every backend call
            calls.running[0] = 1
            calls.running[0] = 0
            calls.done[0] += 1
        return call

    return {
        "sample lookup (qsl.single)": lambda: (lambda: qsl.single(3)),
        "predict call (null backend)": lambda: (lambda: backend.predict(one, 0)),
        "postprocess (response writer: argmax, 1 row)": lambda: (lambda: writer.write(outputs, slots.buffer(1, 1))),
        "response objects (ResponseSlots.objects, 1 id)": lambda: (lambda: slots.objects([7])),
        "completion bookkeeping (Completer start+complete)": completer_call,
        "watchdog marks (Calls, per backend call)": watchdog_call,
    }


class _NoLoadGen:
    """Stands in for mlperf_loadgen in the Completer step (no test is running)."""

    @staticmethod
    def QuerySampleResponse(*args):
        return args

    @staticmethod
    def QuerySamplesComplete(responses):
        pass


def child_step(name: str, n: int) -> None:
    call = _steps()[name]()
    for _ in range(n):
        call()


# --- parent ----------------------------------------------------------------------

#: a thread counts when it issues or completes queries (LoadGen's StartTest, QuerySamplesComplete);
#: the others wait and poll on a clock (our run loop and watchdog, LoadGen's log writer, BLAS)
WORK_SYMBOLS = re.compile(r"mlperf::(?:loadgen::)?(?:StartTest|QuerySamplesComplete)\b|QuerySamplesComplete")
#: LoadGen's log writer runs as this std::thread (its file also names QuerySamplesComplete: the log
#: lambdas defined there run on it)
CLOCK_SYMBOLS = re.compile(r"mlperf::logging::Logger\*> > >::_M_run\(\)")


def count(args: list[str], work_threads: bool = True) -> int:
    """Instructions (callgrind's Ir) of ``python -m benchmarks.instructions --child <args>``,
    summed over the threads that do per-query work (:data:`WORK_SYMBOLS`), or over all of them
    (``work_threads=False``: the step loops run on the main thread and call no LoadGen)."""
    with tempfile.TemporaryDirectory(prefix="callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        # one BLAS thread: OpenBLAS's idle threads spin for a time, not per query
        env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        cmd = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={out}",
               "--dump-instr=no", "--collect-jumps=no", sys.executable, "-m", "benchmarks.instructions",
               "--child", *args]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = [line for line in done.stderr.splitlines() if not line.startswith("==")][-5:]
            raise SystemExit(f"child {' '.join(args)} failed (exit {done.returncode}): {' | '.join(tail)}")
        total = 0
        for thread in sorted(Path(tmp).glob("callgrind.out-*")):
            text = thread.read_text(errors="replace")
            if not work_threads or (WORK_SYMBOLS.search(text) and not CLOCK_SYMBOLS.search(text)):
                total += int(re.search(r"^summary:\s+(\d+)", text, re.M).group(1))
        if not total:
            raise SystemExit(f"child {' '.join(args)}: no thread issued or completed a query")
        return total


def slope(args_for, n1: int, n2: int, work_threads: bool = True) -> float:
    return (count(args_for(n2), work_threads) - count(args_for(n1), work_threads)) / (n2 - n1)


def end_to_end(cases: list[str]) -> list[list]:
    rows = []
    for case in cases:
        n1, n2 = {"MultiStream": (100, 600), "Server": (200, 1200)}.get(case, (200, 2200))
        if case.startswith("Offline"):
            n1, n2 = 1000, 21000
        figures = {}
        for kind in ("bare", "ours"):
            figures[kind] = slope(lambda n: ["e2e", kind, case, str(n)], n1, n2)
        unit = "sample" if case.startswith("Offline") else "query"
        ratio = figures["ours"] / figures["bare"]
        rows.append([f"{case} (per {unit})", figures["bare"], figures["ours"], figures["ours"] - figures["bare"],
                     ratio, f"<= {TARGETS[case]:.1f}x: {'met' if ratio <= TARGETS[case] else 'NOT met'}"])
    return rows


def steps() -> list[list]:
    return [[name, slope(lambda n: ["step", name, str(n)], 1000, 11000, work_threads=False)] for name in _steps()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="end to end SingleStream only")
    p.add_argument("--case", action="append", choices=list(TARGETS), help="end to end this case only (repeatable)")
    p.add_argument("--repeat", type=int, default=1, help="measure everything this many times (all printed)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "e2e":
            child_end_to_end(rest[0], rest[1], int(rest[2]))
        else:
            child_step(rest[0], int(rest[1]))
        return 0
    if shutil.which("valgrind") is None:
        print("error: valgrind is not installed (Debian/Ubuntu: apt install valgrind)", file=sys.stderr)
        return 5
    from benchmarks.harness_overhead import table

    cases = args.case or (["SingleStream"] if args.quick else list(TARGETS))
    results = []
    for i in range(args.repeat):
        t0 = time.monotonic()
        rows = end_to_end(cases)
        print(table(f"Instructions per query/sample, null backend: ours vs a bare LoadGen FastSUT "
                    f"(callgrind slopes; run {i + 1})", ["figure", "bare", "ours", "ours-bare", "ours/bare",
                                                        "target"], rows))
        step_rows = [] if args.quick or args.case else steps()
        if step_rows:
            print(table("Instructions per call of each step of our per-query path", ["step", "instructions"],
                        step_rows))
        print(f"({time.monotonic() - t0:.0f} s)\n", flush=True)
        results.append({"end_to_end": rows, "steps": step_rows})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
