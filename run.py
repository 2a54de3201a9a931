#!/usr/bin/env python3
"""Benchmark a model with MLPerf LoadGen: ``python run.py --help``."""

import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
# this checkout's packages first: ``datasets`` must be ours, not Hugging Face's
sys.path.insert(0, ROOT)

import datasets  # noqa: E402

if not getattr(datasets, "IS_MLPERF_EDGE_DATASETS", False):
    sys.exit(f"error: imported another 'datasets' package ({datasets.__file__}) instead of {ROOT}/datasets")

from sut.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
