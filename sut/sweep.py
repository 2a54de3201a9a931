"""Run one profile at several precisions and compare them in one table.

``python run.py --profile resnet50_tensorrt --precision fp32,fp16,int8`` runs
the whole profile once per precision (each a normal run with its own result
directory) and prints throughput or latency, accuracy and the speed-up
against the first precision: the comparison users otherwise make by hand.

Honesty rules:

* Every precision is checked against the backend before the first run
  (``Backend.check_precision``): one the backend cannot apply to the model
  ends the sweep with ConfigError (exit 2) and no result directory.
* Each row shows what the runtime actually ran (``Backend.applied_precision``,
  read back from the run's ``config.json``), not only what was asked for.
* Run-to-run noise is measured: after the last precision, the baseline (the
  first precision with a performance figure) runs its performance test once
  more. The noise is the relative difference between its two figures, at
  least :data:`NOISE_FLOOR`; a speed-up within ``1 ± noise`` is marked ``~``
  ("within noise"): it does not show that the precision is faster or slower.
  (A single repeat is a rough estimate, but it is measured on the same
  machine, configuration and time span as the rows it judges.)
* The table is saved as ``sweep.txt`` and ``sweep.json`` (rows with their
  result directories and applied precisions, the noise and the repeat) in a
  new directory ``<output>/<time>-<name>-<scenario>-sweep``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from profiles import Config
from sut import logs
from sut.errors import ConfigError, HarnessError, Interrupted

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16", "amp", "int8")
#: the smallest run-to-run noise assumed, whatever the repeat shows (relative)
NOISE_FLOOR = 0.02


def parse_precisions(text: str) -> list[str]:
    values = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in values if p not in PRECISIONS]
    if bad or not values:
        raise ConfigError(f"unknown precision {', '.join(bad) or repr(text)}; choose from {', '.join(PRECISIONS)}")
    return values


@dataclasses.dataclass
class SweepRow:
    precision: str
    validity: str = "-"
    value: float | None = None       # the scenario's metric, as a number
    metric: str = "-"
    accuracy: str = "-"
    error: str | None = None
    directory: str = ""
    applied: str = "-"               # what the runtime ran (Backend.applied_precision)


class Sweep(list):
    """The rows, plus the measured noise and where the table was saved."""

    noise: float | None = None       # relative run-to-run noise (None: not measured)
    repeat: SweepRow | None = None   # the baseline's second performance run
    saved: Path | None = None        # directory holding sweep.txt / sweep.json


def run(cfg: Config, precisions: list[str], execute, echo=print, check=None) -> Sweep:
    """Check every precision, run each, repeat the baseline, save the table.

    ``check(cfg, precisions)`` raises before anything runs (default:
    :func:`sut.session.precheck`); ``execute(cfg)`` is one normal run.
    """
    if check is None:
        from sut.session import precheck as check
    check(cfg, precisions)
    rows = Sweep()
    for precision in precisions:
        echo(f"== precision {precision} ==")
        rows.append(_run_one(cfg, precision, execute))
    base = next((r for r in rows if r.value), None)
    if base is not None and sum(1 for r in rows if r.value) > 1:
        echo(f"== precision {base.precision} again (performance only: run-to-run noise) ==")
        repeat = _run_one(dataclasses.replace(cfg, mode="performance"), base.precision, execute)
        rows.repeat = repeat
        if repeat.value:
            rows.noise = max(NOISE_FLOOR, abs(repeat.value / base.value - 1))
    rows.saved = save(rows, cfg)
    return rows


def _run_one(cfg: Config, precision: str, execute) -> SweepRow:
    row = SweepRow(precision)
    try:
        outcome = execute(dataclasses.replace(cfg, precision=precision))
    except Interrupted:
        raise  # Ctrl-C / SIGTERM stops the whole sweep (KeyboardInterrupt is never caught here either)
    except HarnessError as exc:
        row.error = str(exc)
        return row
    row.directory = str(outcome.directory)
    row.applied = _applied_precision(Path(outcome.directory))
    for test in outcome.tests:
        if test.error:
            row.error = test.error
        elif test.accuracy:
            row.accuracy = f"{test.accuracy.percent:.3f}%"
        elif test.mode == "performance":
            row.validity = test.validity or "-"
            key, _, _ = logs.METRICS[cfg.scenario]
            raw = test.detail.get(key)
            row.value = float(raw) if raw is not None else None
            row.metric = test.metric[1] if test.metric else "-"
    return row


def _applied_precision(directory: Path) -> str:
    """The backend's applied precision recorded in the run's config.json."""
    try:
        record = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return "-"
    return str((record.get("backend") or {}).get("precision") or "-")


def speedup(row: SweepRow, base: float | None, latency: bool) -> float | None:
    if not base or not row.value:
        return None
    return base / row.value if latency else row.value / base


def within_noise(value: float | None, noise: float | None) -> bool:
    return value is not None and noise is not None and abs(value - 1) <= noise


def table(rows: list[SweepRow], scenario: str) -> str:
    latency = logs.METRICS[scenario][2] == "ms"
    base_row = next((r for r in rows if r.value), None)
    base = base_row.value if base_row else None
    noise = getattr(rows, "noise", None)
    header = f"{'precision':<10} {'result':<8} {logs.METRICS[scenario][1]:<30} {'accuracy':<10} speed-up"
    lines = [header, "-" * len(header)]
    for r in rows:
        if r.error:
            lines.append(f"{r.precision:<10} FAILED   {r.error}")
            continue
        value = speedup(r, base, latency)
        text = "-" if value is None else f"{value:.2f}x"
        if r is not base_row and within_noise(value, noise):
            text += " ~ (within noise)"
        lines.append(f"{r.precision:<10} {r.validity:<8} {r.metric:<30} {r.accuracy:<10} {text}")
    repeat = getattr(rows, "repeat", None)
    if repeat is not None and base_row is not None:
        if noise is not None:
            lines.append(f"run-to-run noise: {100 * noise:.1f}% ({base_row.precision} measured twice: "
                         f"{base_row.metric}, then {repeat.metric}; at least {100 * NOISE_FLOOR:g}%); "
                         f"'~' marks a speed-up within 1 +/- noise")
        else:
            lines.append(f"run-to-run noise: not measured (the repeat of {base_row.precision} "
                         f"failed: {repeat.error or 'no figure'})")
    for r in [*rows, *([repeat] if repeat is not None else [])]:
        if r.directory or r.applied != "-":
            label = f"{r.precision} (repeat)" if r is repeat else r.precision
            lines.append(f"{label}: ran {r.applied}; {r.directory or '-'}")
    saved = getattr(rows, "saved", None)
    if saved is not None:
        lines.append(f"saved: {saved / 'sweep.txt'}, {saved / 'sweep.json'}")
    return "\n".join(lines) + "\n"


def to_json(rows: list[SweepRow], scenario: str) -> dict[str, Any]:
    latency = logs.METRICS[scenario][2] == "ms"
    base_row = next((r for r in rows if r.value), None)
    noise = getattr(rows, "noise", None)
    repeat = getattr(rows, "repeat", None)

    def row_dict(r: SweepRow, is_base: bool) -> dict[str, Any]:
        value = speedup(r, base_row.value if base_row else None, latency)
        return {**dataclasses.asdict(r), "speedup": value,
                "within_noise": (not is_base) and within_noise(value, noise)}

    return {"scenario": scenario, "metric": logs.METRICS[scenario][1], "unit": logs.METRICS[scenario][2],
            "baseline": base_row.precision if base_row else None,
            "noise": noise, "noise_floor": NOISE_FLOOR,
            "rows": [row_dict(r, r is base_row) for r in rows],
            "repeat": dataclasses.asdict(repeat) if repeat is not None else None}


def save(rows: Sweep, cfg: Config) -> Path | None:
    """Write sweep.txt and sweep.json into a new directory under ``cfg.output``."""
    from sut.results import RunDirectory

    try:
        directory = RunDirectory(cfg.output, f"{cfg.profile or cfg.model_name}-{cfg.scenario}-sweep")
        rows.saved = directory.root / directory.run_id  # its name once finished, as the table says
        directory.write_text("sweep.txt", table(rows, cfg.scenario))
        directory.write_json("sweep.json", to_json(rows, cfg.scenario))
        return directory.finish(ok=True)
    except (HarnessError, OSError) as exc:
        log.error("could not save the sweep table: %s", exc)
        rows.saved = None
        return None
