"""Warm start: the warm-up's speed estimate kept next to the preprocessing cache.

A full warm-up (:func:`sut.runner.warm_up`) times the model for about 0.6 s
to size the LoadGen test. The same model file with the same backend, runtime
version, options and machine runs at the same speed, so the estimate is kept
in ``<cache root>/warm-up/<key>.json`` and reused by the next run, which then
only checks the backend with a few calls (``runner.warm_up`` with no minimum
time: three single-sample calls and three of a queue item's size, each timed
by the watchdog, so a broken or hung backend still fails before LoadGen
starts, and the runtime's first-call work is still done before the test).
Where those calls ran faster than saved, their figure is used (:func:`faster`).

The key, like the preprocessing cache's (:func:`datasets.cache.cache_dir_for`),
names the model file by path, size and modification time (every file of a
model directory), plus: the backend's class and runtime version, the applied
precision, every backend option, the loaded model's description (inputs,
batch sizes, instances), the samples per MultiStream query, the machine
(host name, CPU model, usable cores) and the runner's warm-up constants.
A saved estimate is not reused when:

* it is older than :data:`MAX_AGE_S`, or unreadable, or of other fields;
* the checking calls' throughput (from their fastest call, which a busy
  moment slows least) is over :data:`SLOWER` times off the saved one, either
  way (the device got slower or faster, or the machine much busier or
  quieter than when it was saved; an estimate too low would make an Offline
  test end before its minimum duration): a full warm-up measures again and
  replaces it;
* the backend is the null backend or a plugin (their speed may depend on
  things no key sees), there is no model file, or ``--cache-dir none``.

Writing it is best effort: a cache that cannot be written costs the next run
its full warm-up, never this run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import time
from pathlib import Path

from sut import runner
from sut import settings as settings_mod

log = logging.getLogger(__name__)

#: bump when the key's meaning or the file's layout changes
VERSION = 1
#: a saved estimate older than this is measured again (a week)
MAX_AGE_S = 7 * 24 * 3600.0
#: the checking calls' throughput this many times under or over the saved one: measure again
SLOWER = 2.0
#: the subdirectory of the cache root
DIRECTORY = "warm-up"


def warm_up(cfg, model, backend, info, dataset, store) -> settings_mod.Estimate:
    """The estimate for ``session.prepared``: saved when the key matches (after
    a few checking calls), else a full :func:`runner.warm_up`, then saved."""
    from sut.session import cache_root

    per_query = cfg.samples_per_query or 8
    path = estimate_path(cfg, model, backend, info, cache_root(cfg))
    saved = load(path) if path else None
    if saved is not None:
        check = runner.warm_up(backend, info, dataset, store, per_query, cfg.sample_timeout_s, min_time_s=0.0)
        # their throughput comes from the fastest call (noise only adds time): a busy
        # moment does not throw the saved estimate away, a slower or faster device does
        if saved.samples_per_s / SLOWER <= check.samples_per_s <= saved.samples_per_s * SLOWER:
            estimate = faster(saved, check)
            log.info("warm-up: reused %s from %s (checking calls: %.1f samples/s)", estimate, path,
                     check.samples_per_s)
            return estimate
        log.info("warm-up: checking calls ran %.1f samples/s, over %gx off the saved %.1f: measuring again",
                 check.samples_per_s, SLOWER, saved.samples_per_s)
    estimate = runner.warm_up(backend, info, dataset, store, per_query, cfg.sample_timeout_s)
    if path:
        save(path, estimate)
    return estimate


def faster(saved: settings_mod.Estimate, check: settings_mod.Estimate) -> settings_mod.Estimate:
    """The saved estimate, each speed the faster of it and the checking calls'
    (never slower than what this run just measured: an Offline test sized for
    too slow a device ends before its minimum duration)."""
    values = {}
    for field in dataclasses.fields(saved):
        mine, now = getattr(saved, field.name), getattr(check, field.name)
        if field.name.endswith("per_s") and now:
            values[field.name] = max(mine, now)
        elif "latency" in field.name and now:
            values[field.name] = min(mine, now)
        else:
            values[field.name] = mine
    return dataclasses.replace(saved, **values)


def reusable(backend, model) -> bool:
    """Built-in backends with a model file: the null backend and plugins measure every time."""
    module = type(backend).__module__
    return bool(model) and module.startswith("backends.") and getattr(backend, "name", "") != "null" \
        and os.path.exists(model)


def estimate_path(cfg, model, backend, info, root) -> Path | None:
    """Where the estimate for this model, backend, options and machine is kept (None: not reused)."""
    if root is None or not reusable(backend, model):
        return None
    try:
        key = estimate_key(cfg, model, backend, info)
    except (OSError, TypeError, ValueError) as exc:
        log.debug("warm-up estimate not reused: %s", exc)
        return None
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return Path(root) / DIRECTORY / f"{digest}.json"


def estimate_key(cfg, model, backend, info) -> dict:
    options = backend.options
    return {
        "version": VERSION,
        "model": model_identity(model),
        "backend": f"{type(backend).__module__}.{type(backend).__qualname__}",
        "runtime": backend.version(),
        "precision": backend.applied_precision(),
        "options": {"threads": options.threads, "instances": options.instances,
                    "max_batch_size": options.max_batch_size, "device": options.device,
                    "precision": options.precision, "extra": dict(options.extra)},
        "model_info": info.describe(),
        "samples_per_query": cfg.samples_per_query or 8,
        "machine": machine(),
        "warm_up": {name: getattr(runner, name, None) for name in
                    ("HARNESS_S_PER_SAMPLE", "WARM_UP_ITEM_S", "WARM_UP_MAX_ITEM")},
        "fields": [f.name for f in dataclasses.fields(settings_mod.Estimate)],
    }


def model_identity(model) -> list:
    """(path, size, mtime) of the model file, or of every file in a model directory."""
    path = Path(model)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out = []
    for f in files:
        st = f.stat()
        out.append([os.path.abspath(f), st.st_size, st.st_mtime_ns])
    return out


def machine() -> dict:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    return {"host": platform.node(), "arch": platform.machine(), "cpu": cpu_model(), "cores": cores}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Hardware", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load(path: Path) -> settings_mod.Estimate | None:
    try:
        data = json.loads(path.read_text())
        if time.time() - float(data["saved"]) > MAX_AGE_S:
            return None
        fields = {f.name for f in dataclasses.fields(settings_mod.Estimate)}
        values = data["estimate"]
        numbers = {k: float(v) for k, v in values.items()}
        if set(numbers) != fields or not all(math.isfinite(v) and v >= 0 for v in numbers.values()):
            return None
        if numbers.get("latency_s", 0) <= 0 or numbers.get("samples_per_s", 0) <= 0:
            return None
        return settings_mod.Estimate(**numbers)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(path: Path, estimate: settings_mod.Estimate) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"saved": time.time(), "estimate": dataclasses.asdict(estimate)}))
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("warm-up estimate not saved to %s: %s", path, exc)
        try:
            tmp.unlink()
        except OSError:
            pass
