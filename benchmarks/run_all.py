"""Run the benchmarks and print their tables.

    .venv/bin/python -m benchmarks.run_all [--quick] [--only NAME ...] [--skip NAME ...] [--repeats N]

NAME is one of: harness_overhead, backend_efficiency, preprocessing, memory.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCHMARKS = ("harness_overhead", "backend_efficiency", "preprocessing", "memory")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Run the benchmarks and print their tables.")
    p.add_argument("--quick", action="store_true", help="fast pass: short runs, one repeat")
    p.add_argument("--only", action="append", choices=BENCHMARKS, help="run only these (repeatable)")
    p.add_argument("--skip", action="append", choices=BENCHMARKS, default=[], help="skip these (repeatable)")
    p.add_argument("--repeats", type=int, help="repeats per figure (median reported)")
    args = p.parse_args(argv)
    chosen = [b for b in (args.only or BENCHMARKS) if b not in args.skip]
    print(f"# {platform.node()} {platform.machine()} python {platform.python_version()}, "
          f"{len(__import__('os').sched_getaffinity(0))} cores; {'quick' if args.quick else 'full'} pass\n",
          flush=True)
    failed = []
    for name in chosen:
        module = importlib.import_module(f"benchmarks.{name}")
        start = time.perf_counter()
        try:
            text = module.measure(quick=args.quick, repeats=args.repeats)
        except Exception as exc:  # one broken benchmark must not hide the others' tables
            failed.append(name)
            text = f"{name}: FAILED: {type(exc).__name__}: {exc}\n"
        print(text + f"({name}: {time.perf_counter() - start:.0f} s)\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
