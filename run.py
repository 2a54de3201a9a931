#!/usr/bin/env python3
"""Benchmark a model with MLPerf LoadGen: ``python run.py --help``."""

# This file must parse and run its checks on any Python (2.7 and 3.x): the version
# check comes before any project import, and the file has no f-strings or newer syntax.
import os
import sys

if sys.version_info < (3, 8):
    sys.stderr.write("error: this harness needs Python 3.8 or newer, and %s is Python %d.%d; run it with "
                     "python3.8 or newer (e.g. python3 -m venv .venv with a newer python3)\n"
                     % (sys.executable or "this interpreter", sys.version_info[0], sys.version_info[1]))
    sys.exit(1)

import signal


def _interrupted_while_starting(signum, frame):
    # nothing is written yet: say so in one line and exit now (sut.cli installs the real handlers)
    sys.stderr.write("error: interrupted by %s while starting\n" % {2: "SIGINT", 15: "SIGTERM"}.get(signum, signum))
    os._exit(128 + signum)


for _signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_signum, _interrupted_while_starting)

ROOT = os.path.dirname(os.path.abspath(__file__))
# this checkout's packages first: ``datasets`` must be ours, not Hugging Face's
sys.path.insert(0, ROOT)

#: what setup.py installs, by import name -> pip requirement
DEPENDENCIES = {"numpy": "numpy", "PIL": "pillow", "tomli": "tomli"}

try:
    import datasets  # noqa: E402

    if not getattr(datasets, "IS_MLPERF_EDGE_DATASETS", False):
        sys.exit("error: imported another 'datasets' package (%s) instead of %s/datasets"
                 % (datasets.__file__, ROOT))

    from sut.cli import exit_code, main  # noqa: E402
except ImportError as exc:
    missing = (getattr(exc, "name", None) or "").split(".")[0]
    if missing not in DEPENDENCIES:
        raise
    sys.stderr.write("error: the Python package '%s' is not installed for %s; install the harness's "
                     "dependencies: pip install -e . (from %s)\n" % (DEPENDENCIES[missing], sys.executable, ROOT))
    sys.exit(5)

if __name__ == "__main__":
    sys.exit(exit_code(main()))
