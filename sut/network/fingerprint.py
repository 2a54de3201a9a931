"""Identities of a model and a dataset, compared between the LoadGen node and every SUT node.

The dataset fingerprint covers what decides the score: the dataset family, the
samples in order (the last two parts of each path, the file size) and their
labels. File contents are not hashed (a 50,000-image set would take minutes);
the preprocessed copy each node makes is keyed by ``datasets.cache`` as in a
local run.
"""

from __future__ import annotations

import hashlib
import json
import os

from backends.base import file_sha256


def dataset_fingerprint(dataset) -> str:
    entries = []
    for source, label in zip(dataset.sources, dataset.labels):
        source = str(source)
        try:
            size = os.path.getsize(source)
        except OSError:
            size = -1
        tail = "/".join(source.replace(os.sep, "/").split("/")[-2:])
        entries.append([tail, size, int(label)])
    text = json.dumps({"dataset": dataset.name, "count": len(entries), "samples": entries}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def model_fingerprint(path) -> str:
    """sha256 of a model file, of a directory's files (names and contents), or
    ``"none"`` (a backend that needs no model file)."""
    if not path:
        return "none"
    path = str(path)
    if os.path.isfile(path):
        return file_sha256(path)
    if os.path.isdir(path):
        h = hashlib.sha256()
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                h.update(os.path.relpath(full, path).replace(os.sep, "/").encode() + b"\0")
                h.update(file_sha256(full).encode())
        return h.hexdigest()
    return "missing:" + os.path.basename(path)
