"""Run one profile at several precisions and compare them in one table.

``python run.py --profile resnet50_tensorrt --precision fp32,fp16,int8`` runs
the whole profile once per precision (each a normal run with its own result
directory) and prints throughput or latency, accuracy and the speed-up
against the first precision: the comparison users otherwise make by hand.
"""

from __future__ import annotations

import dataclasses

from profiles import Config
from sut import logs
from sut.errors import HarnessError

PRECISIONS = ("fp32", "fp16", "int8")


def parse_precisions(text: str) -> list[str]:
    from sut.errors import ConfigError

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


def run(cfg: Config, precisions: list[str], execute, echo=print) -> list[SweepRow]:
    rows = []
    for precision in precisions:
        echo(f"== precision {precision} ==")
        row = SweepRow(precision)
        try:
            outcome = execute(dataclasses.replace(cfg, precision=precision))
        except HarnessError as exc:
            row.error = str(exc)
            rows.append(row)
            continue
        row.directory = str(outcome.directory)
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
        rows.append(row)
    return rows


def table(rows: list[SweepRow], scenario: str) -> str:
    latency = logs.METRICS[scenario][2] == "ms"
    base = next((r.value for r in rows if r.value), None)
    header = f"{'precision':<10} {'result':<8} {logs.METRICS[scenario][1]:<30} {'accuracy':<10} speed-up"
    lines = [header, "-" * len(header)]
    for r in rows:
        if r.error:
            lines.append(f"{r.precision:<10} FAILED   {r.error}")
            continue
        speedup = "-"
        if base and r.value:
            speedup = f"{(base / r.value if latency else r.value / base):.2f}x"
        lines.append(f"{r.precision:<10} {r.validity:<8} {r.metric:<30} {r.accuracy:<10} {speedup}")
    return "\n".join(lines) + "\n"
