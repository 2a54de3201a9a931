"""Datasets: one module per family, found through one registry.

Note on the name: Hugging Face's ``datasets`` package has the same top-level
name. This project is never installed into site-packages as top-level
packages (``setup.py`` installs dependencies and extras only), so it cannot
shadow Hugging Face's for other programs; ``run.py`` and the tests put the
repository root first on ``sys.path`` so the harness always loads this one.
``tests/test_packaging.py`` checks both directions.
"""

from __future__ import annotations

import importlib
import importlib.util

from datasets.base import Accuracy, Dataset
from sut import compat
from sut.errors import ConfigError

ENTRY_POINT_GROUP = "mlperf_edge.datasets"
#: marker that lets run.py verify it imported this package, not a namesake
IS_MLPERF_EDGE_DATASETS = True

BUILTIN = {
    "imagenet": "datasets.imagenet:ImageNet",
    "speech_commands": "datasets.speech_commands:SpeechCommands",
    "synthetic": "datasets.synthetic:SyntheticImages",
}

__all__ = ["Accuracy", "Dataset", "available", "create"]


def available() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in compat.entry_points(ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return {n: t for n, t in found.items() if importlib.util.find_spec(t.split(":")[0]) is not None}


def create(name: str, path: str | None, count: int | None = None, options=None) -> Dataset:
    targets = available()
    if name not in targets:
        raise ConfigError(f"unknown dataset '{name}'; choose one of: {', '.join(sorted(targets))}")
    module_name, class_name = targets[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(path, count, options)
