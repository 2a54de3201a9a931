"""Is ``--tune``'s winner real? Its Offline samples/s against the default
configuration and against the runtime's own plain loop with the winner's threads.

Each repeat measures, in alternating order (reversed every other repeat):

* ``winner``: an Offline performance test through the harness (``run.py``'s
  path: the backend loaded and warmed up with the winner's threads,
  instances and batch size, then ``sut.runner.run_test``);
* ``default``: the same with the profile's own configuration;
* ``plain loop``: the runtime called directly in a plain loop, one Python
  thread per instance, each its own session with the winner's threads
  (``benchmarks.backend_efficiency``'s ``direct_*`` and ``loop_rate``), on
  the same preprocessed samples, one sample per call;
* ``plain 1 session`` (when the winner has several instances): one thread
  calling one session with all of the winner's threads. ``best plain`` is
  the faster of the two plain loops in each repeat.

Prints each repeat, then medians with their spread ((max - min) / median)
and the ratios (medians of the per-repeat ratios).

    .venv/bin/python -m benchmarks.tune_check --threads 1 --instances 2 --batch 1 [--repeats 5] [--seconds 5]
        [-- run.py options naming the profile, model and dataset]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_ARGS = ["--profile", "mobilenet_onnxruntime", "--model",
                "/work/shared/models/mobilenet/mobilenet_v1_1.0_224_quant_qdq_nchw.onnx",
                "--dataset-path", "/work/shared/data/imagenet-mini", "--scenario", "Offline"]


def spread(values) -> float:
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else 0.0


def main(argv=None) -> int:
    import profiles
    from benchmarks.backend_efficiency import DIRECT, loop_rate
    from sut import cli, session, tune

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--instances", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("rest", nargs="*")
    a = ap.parse_args(argv)
    args = cli.parser().parse_args(a.rest or DEFAULT_ARGS)
    cfg = profiles.resolve(args.profile, cli.overrides(args))
    cfg = dataclasses.replace(cfg, progress=False, min_duration_ms=int(a.seconds * 1000), min_query_count=1)
    dataset, model = session.open_dataset(cfg)
    winner = tune.Knobs(a.threads, a.instances, a.batch)
    default = tune.Knobs(cfg.threads, max(1, cfg.instances or 1), cfg.max_batch_size)
    workdir = Path(tempfile.mkdtemp(prefix="tune-check-"))

    # the samples the harness runs, for the plain loop
    with session.prepared(dataclasses.replace(cfg, threads=winner.threads, instances=winner.instances,
                                              max_batch_size=winner.batch), dataset, model, {}) as parts:
        rows = parts.store.rows(range(min(len(parts.store), 64)))
        runtime = parts.backend.version()
    calls = DIRECT[cfg.backend](model, winner.threads, winner.instances)
    # the same threads in one session: the other plain loop a user would write
    total = winner.threads * winner.instances
    one = DIRECT[cfg.backend](model, total, 1) if winner.instances > 1 and total > 0 else None

    def plain() -> float:  # one sample per call (backend_efficiency's loop)
        return loop_rate(calls, rows, a.seconds)

    def ours(knobs) -> float:
        outdir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
        trial = tune.loaded_trial(cfg, knobs, dataset, model, outdir)
        if trial.error:
            raise SystemExit(f"error: {trial.error}")
        return trial.samples_per_s

    sides = {"winner": lambda: ours(winner), "default": lambda: ours(default), "plain loop": plain}
    if one is not None:
        sides["plain 1 session"] = lambda: loop_rate(one, rows, a.seconds)
    results = {name: [] for name in sides}
    loads = []
    for k in range(a.repeats):
        order = list(sides) if k % 2 == 0 else list(sides)[::-1]
        for name in order:
            loads.append(os.getloadavg()[0])
            results[name].append(sides[name]())
        print(f"repeat {k + 1}: " + "  ".join(f"{n} {results[n][-1]:.1f}" for n in sides), flush=True)
    print(f"\nOffline samples/s, {cfg.backend} ({runtime}), {a.repeats} alternated repeats of {a.seconds:g} s, "
          f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")
    print(f"  winner  = {winner.label()}\n  default = {default.label()}\n"
          f"  plain loop = {winner.instances} thread(s) x its own session of {winner.threads} thread(s), "
          "one sample per call" + (f"\n  plain 1 session = one thread calling one session of {total} threads"
                                   if one is not None else ""))
    if one is not None:  # the runtime's best plain loop with these threads, repeat by repeat
        results["best plain"] = [max(x, y) for x, y in zip(results["plain loop"], results["plain 1 session"])]
    for name, values in results.items():
        print(f"  {name:<15} median {statistics.median(values):8.1f}  spread {spread(values) * 100:5.1f}%  "
              f"runs {' '.join(f'{v:.1f}' for v in values)}")
    for a_name, b_name in (("winner", "default"), ("winner", "plain loop"), ("winner", "best plain")):
        if b_name not in results:
            continue
        ratios = [x / y for x, y in zip(results[a_name], results[b_name])]
        print(f"  {a_name} / {b_name}: median {statistics.median(ratios):.2f}x "
              f"(per repeat {min(ratios):.2f}-{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
