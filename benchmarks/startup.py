"""Warm start: from launching ``run.py`` to LoadGen's first query, and where the time goes.

Each repeat launches a fresh Python that runs ``run.py``'s command line with a
few functions wrapped to note the wall-clock time (``time.time()``, the same
clock in both processes) when they start and end:

* ``python``: the launch until the child's first line runs (interpreter start);
* ``imports``: the harness's modules (``sut.cli``, ``sut.session``: LoadGen, NumPy);
* ``config``: from there until the backend is created (profile, dataset scan);
* ``runtime import``: the backend's constructor (imports its runtime);
* ``model load``: ``Backend.load``;
* ``cache open``: ``datasets.cache.prepare`` (the preprocessing cache, present);
* ``warm-up``: what ``session.prepared`` does to measure the speed;
* ``to first query``: from the warm-up's end to LoadGen's first ``issue``.

The wrapping adds microseconds. Repeats are sequential; the table gives the
median of each part and its spread (min-max). The caches must be present: the
script runs the command once first, untimed. ``--compare`` alternates, in
each repeat (order reversed every other one), a start with the saved warm-up
estimate removed (the full warm-up: what every start did before
:mod:`sut.warm_start`) and one that reuses it.

    .venv/bin/python -m benchmarks.startup [--repeats 5] [--compare] [-- run.py options]

``--reference DIR --reference-args "..."`` adds the MLPerf reference harness
(``main.py`` of ``vision/classification_and_detection/python``) to the
alternation, with the same parts where it has them: its module imports, its
backend's creation (runtime import), its dataset's constructor (it checks
its preprocessed cache), ``backend.load``, the warm-up (its 5 predictions, to
``ConstructSUT``) and LoadGen's first ``issue_queries``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_ARGS = ["--profile", "mobilenet_tflite", "--model",
                "/work/shared/models/mobilenet/mobilenet_v1_1.0_224_quant.tflite",
                "--dataset-path", "/work/shared/data/imagenet-mini", "--scenario", "SingleStream", "--quick"]

CHILD = r"""
import json, os, sys, time
marks = {"python": time.time()}
sys.path.insert(0, os.environ["STARTUP_ROOT"])
os.chdir(os.environ["STARTUP_ROOT"])
import datasets
from sut import cli, session, runner
from datasets import cache
import mlperf_loadgen as lg
marks["imports"] = time.time()

def wrap(owner, name, key):
    real = getattr(owner, name)
    def timed(*a, **k):
        marks.setdefault(key + "_start", time.time())
        try:
            return real(*a, **k)
        finally:
            marks.setdefault(key + "_end", time.time())
    setattr(owner, name, timed)

real_create = session.create_backend
def create_backend(*a, **k):
    marks.setdefault("create_start", time.time())
    backend = real_create(*a, **k)
    marks.setdefault("create_end", time.time())
    wrap(backend, "load", "load")
    return backend
session.create_backend = create_backend
wrap(cache, "prepare", "cache")
wrap(runner, "warm_up", "runner_warm_up")
try:
    from sut import warm_start
    wrap(warm_start, "warm_up", "warm_start")
    real_path = warm_start.estimate_path
    def estimate_path(*a, **k):
        path = real_path(*a, **k)
        marks["estimate_path"] = str(path) if path else None
        return path
    warm_start.estimate_path = estimate_path
except ImportError:
    pass

real_construct = lg.ConstructFastSUT
def construct(issue, flush):
    def first(*a):
        marks.setdefault("first_issue", time.time())
        return issue(*a)
    return real_construct(first, flush)
lg.ConstructFastSUT = construct
try:
    code = cli.main(sys.argv[1:])
finally:
    with open(os.environ["STARTUP_MARKS"], "w") as f:
        json.dump(marks, f)
sys.exit(code)
"""

REFERENCE_CHILD = r"""
import json, os, sys, time
marks = {"python": time.time()}
sys.path.insert(0, os.environ["STARTUP_REFERENCE"])
sys.argv[0] = os.path.join(os.environ["STARTUP_REFERENCE"], "main.py")
import main, imagenet
import mlperf_loadgen as lg
marks["imports"] = time.time()

def wrap(owner, name, key):
    real = getattr(owner, name)
    def timed(*a, **k):
        marks.setdefault(key + "_start", time.time())
        try:
            return real(*a, **k)
        finally:
            marks.setdefault(key + "_end", time.time())
    setattr(owner, name, timed)

real_get = main.get_backend
def get_backend(*a, **k):
    marks.setdefault("create_start", time.time())
    backend = real_get(*a, **k)
    marks.setdefault("create_end", time.time())
    wrap(backend, "load", "load")
    return backend
main.get_backend = get_backend
wrap(imagenet.Imagenet, "__init__", "cache")
real_construct = lg.ConstructSUT
def construct(issue, flush):
    marks.setdefault("runner_warm_up_end", time.time())
    def first(*a):
        marks.setdefault("first_issue", time.time())
        return issue(*a)
    return real_construct(first, flush)
lg.ConstructSUT = construct
try:
    main.main()
finally:
    marks["runner_warm_up_start"] = marks.get("load_end")
    with open(os.environ["STARTUP_MARKS"], "w") as f:
        json.dump(marks, f)
"""

PARTS = ("python", "imports", "config", "runtime import", "model load", "cache open", "warm-up", "to first query")


def parts(launch: float, m: dict) -> dict:
    """Seconds per part from the marks of one run."""
    warm_start = m.get("warm_start_start", m.get("runner_warm_up_start"))
    warm_end = m.get("warm_start_end", m.get("runner_warm_up_end"))
    out = {
        "python": m["python"] - launch,
        "imports": m["imports"] - m["python"],
        "config": m["create_start"] - m["imports"],
        "runtime import": m["create_end"] - m["create_start"],
        "model load": m["load_end"] - m["load_start"],
        "cache open": m["cache_end"] - m["cache_start"],
        "warm-up": warm_end - warm_start,
        "to first query": m["first_issue"] - warm_end,
    }
    out["total"] = m["first_issue"] - launch
    return out


def once(args: list[str], env: dict, child: str = CHILD) -> dict:
    marks_path = Path(env["STARTUP_MARKS"])
    launch = time.time()
    subprocess.run([sys.executable, "-c", child, *args], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, cwd=env.get("STARTUP_CWD"))
    marks = json.loads(marks_path.read_text())
    out = parts(launch, marks)
    out["estimate_path"] = marks.get("estimate_path")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--output", default="/tmp/startup-results")
    ap.add_argument("--compare", action="store_true",
                    help="alternate starts without and with the saved warm-up estimate")
    ap.add_argument("--reference", metavar="DIR",
                    help="also time the MLPerf reference harness: DIR is vision/classification_and_detection/"
                         "python of mlcommons/inference; --reference-args are its options")
    ap.add_argument("--reference-args", default="", help="the reference main.py's options, one string")
    ap.add_argument("--reference-path", default="", help="PYTHONPATH for the reference (e.g. a tflite_runtime shim)")
    ap.add_argument("rest", nargs="*", help="run.py options (after --)")
    a = ap.parse_args(argv)
    args = (a.rest or DEFAULT_ARGS) + ["--output", a.output, "--no-progress"]
    env = dict(os.environ, STARTUP_ROOT=str(ROOT), STARTUP_MARKS=f"/tmp/startup-marks-{os.getpid()}.json")
    first = once(args, env)  # untimed: the caches are present afterwards
    saved = [Path(first["estimate_path"])] if first.get("estimate_path") else []
    sides = {"full warm-up": [], "saved estimate": []} if a.compare else {"as is": []}
    if a.reference:
        ref_env = dict(env, STARTUP_REFERENCE=a.reference, STARTUP_CWD=a.reference,
                       PYTHONPATH=os.pathsep.join(p for p in (a.reference_path, env.get("PYTHONPATH")) if p))
        ref_args = a.reference_args.split()
        once(ref_args, ref_env, REFERENCE_CHILD)  # untimed: its preprocessing cache is present afterwards
        sides["reference"] = []
    loads = []
    for k in range(a.repeats):
        order = list(sides) if k % 2 == 0 else list(sides)[::-1]
        for side in order:
            if side == "full warm-up":
                for path in saved:
                    path.unlink(missing_ok=True)
            loads.append(os.getloadavg()[0])
            if side == "reference":
                sides[side].append(once(ref_args, ref_env, REFERENCE_CHILD))
            else:
                sides[side].append(once(args, env))
    print(f"warm start to LoadGen's first query, {a.repeats} runs per side (load average "
          f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs): run.py {' '.join(args)}")
    for side, runs in sides.items():
        print(f"{side}:\n  {'part':<16} {'median':>8}  {'min':>7}  {'max':>7}")
        for name in PARTS + ("total",):
            values = [r[name] for r in runs]
            print(f"  {name:<16} {statistics.median(values):>7.3f}s  {min(values):>6.3f}s  {max(values):>6.3f}s")
        print("  totals: " + " ".join(f"{r['total']:.3f}" for r in runs))
    names = list(sides)
    for i, one in enumerate(names):
        for other in names[i + 1:]:
            ratios = [x["total"] / y["total"] for x, y in zip(sides[one], sides[other])]
            print(f"{one} / {other}, per repeat: {' '.join(f'{x:.2f}' for x in ratios)} "
                  f"(median {statistics.median(ratios):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
