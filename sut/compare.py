"""``python run.py --compare DIR...``: several runs side by side.

Each DIR is a run directory (``config.json`` and LoadGen's logs below it), a
precision sweep's directory (``sweep.json``: its rows' run directories, in
the sweep's order, with the run-to-run noise the sweep measured), or a folder
holding such directories (``results/``: every finished run in it, oldest
first). The comparison is printed as a table and saved, with plots when
matplotlib is installed, in a new ``<output>/<time>-compare/`` directory:
``compare.txt``, ``compare.html`` (self-contained, like ``report.html``),
``compare_metric.png``, ``compare_cdf.png`` and, when runs were scored,
``compare_accuracy.png``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path

from sut import logs, plots, report
from sut.errors import ResultsError

log = logging.getLogger(__name__)

PARTIAL, FAILED = ".partial", ".failed"


@dataclasses.dataclass
class Entry:
    """One run in the comparison."""

    label: str
    run: report.RunView
    noise: float | None = None     # relative run-to-run noise, from a sweep
    applied: str | None = None     # precision the runtime ran (sweep row)

    @property
    def test(self):
        return self.run.performance

    @property
    def accuracy_percent(self) -> float | None:
        acc = self.run.accuracy
        match = re.search(r"(\d+(?:\.\d+)?)%", acc.accuracy) if acc else None
        return float(match.group(1)) if match else None


def collect(paths: list[str]) -> list[Entry]:
    """The runs named by ``paths`` (see the module docstring), in order."""
    entries: list[Entry] = []
    for text in paths:
        path = Path(text)
        if not path.is_dir():
            raise ResultsError(f"--compare: no directory {text}")
        if (path / "sweep.json").is_file():
            entries += from_sweep(path)
        elif (path / "config.json").is_file() or any(path.glob("**/mlperf_log_detail.txt")) \
                and not _children(path):
            entries.append(Entry(path.name, report.load_run(path)))
        else:
            children = _children(path)
            if not children:
                raise ResultsError(f"--compare: no results in {text}: pass run directories (config.json), "
                                   f"sweep directories (sweep.json) or a folder holding them")
            for child in children:
                entries += from_sweep(child) if (child / "sweep.json").is_file() else \
                    [Entry(child.name, report.load_run(child))]
    if not entries:
        raise ResultsError(f"--compare: no runs found in {' '.join(paths)}")
    return entries


def _children(path: Path) -> list[Path]:
    """Finished run and sweep directories directly inside ``path``, by name (= time)."""
    return sorted(c for c in path.iterdir() if c.is_dir() and not c.name.endswith(PARTIAL)
                  and ((c / "config.json").is_file() or (c / "sweep.json").is_file()))


def from_sweep(directory: Path) -> list[Entry]:
    try:
        sweep = json.loads((directory / "sweep.json").read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read {directory / 'sweep.json'}: {exc}") from exc
    noise = sweep.get("noise")
    entries = []
    rows = [(row, "") for row in sweep.get("rows", [])]
    if sweep.get("repeat"):
        rows.append((sweep["repeat"], " repeat"))
    for row, suffix in rows:
        run_dir = _find(row.get("directory"), directory)
        applied = report.short_precision(row.get("applied"))
        label = f"{row.get('precision')}{suffix} (ran {applied or '-'})"
        if run_dir is None:
            log.warning("sweep %s: the %s run's directory %s is gone", directory, row.get("precision"),
                        row.get("directory") or "(none: it failed)")
            continue
        entries.append(Entry(label, report.load_run(run_dir), noise=noise, applied=applied))
    return entries


def _find(recorded: str | None, sweep_dir: Path) -> Path | None:
    """A sweep row's run directory: where it was, or beside the sweep (moved trees)."""
    if not recorded:
        return None
    path = Path(recorded)
    for candidate in (path, sweep_dir.parent / path.name):
        if candidate.is_dir():
            return candidate
    return None


# --- the table -----------------------------------------------------------------------

HEADERS = ["run", "scenario", "runtime", "precision", "result", "metric", "p50 ms", "p90 ms", "p99 ms",
           "samples/s", "accuracy", "speed-up"]


def speedups(entries: list[Entry]) -> list[float | None]:
    """Each run's speed-up against the first run of the same scenario with a figure."""
    firsts: dict[str, float] = {}
    out = []
    for entry in entries:
        test = entry.test
        value = test.value if test else None
        if test is None or value is None:
            out.append(None)
            continue
        base = firsts.setdefault(test.scenario, value)
        latency = logs.METRICS[test.scenario][2] == "ms"
        out.append(base / value if latency else value / base)
    return out


def rows(entries: list[Entry]) -> list[list]:
    table = []
    for entry, speedup in zip(entries, speedups(entries)):
        test = entry.test
        d = test.detail if test else {}
        runtime = (entry.run.record.get("backend") or {}).get("runtime")
        rate = d.get("result_samples_per_second") or d.get("result_completed_samples_per_sec")
        if rate is None and d.get("result_qps_with_loadgen_overhead") is not None:
            rate = float(d["result_qps_with_loadgen_overhead"]) * int(d.get("effective_samples_per_query") or 1)
        table.append([
            entry.label, entry.run.scenario or "-", runtime or "-",
            entry.applied or report.short_precision(entry.run.precision) or "-",
            (test.validity if test else None) or "-",
            f"{test.metric[0]} = {test.metric[1]}" if test and test.metric else "-",
            report.ms(d.get("result_50.00_percentile_latency_ns")) or "-",
            report.ms(d.get("result_90.00_percentile_latency_ns")) or "-",
            report.ms(d.get("result_99.00_percentile_latency_ns")) or "-",
            "-" if rate is None else f"{float(rate):,.1f}",
            _accuracy_cell(entry),
            "-" if speedup is None else f"{speedup:.2f}x" + (" ~" if _within(speedup, entry.noise) else ""),
        ])
    return table


def _accuracy_cell(entry: Entry) -> str:
    if entry.run.accuracy is None:
        return "-"
    percent = entry.accuracy_percent
    return entry.run.accuracy.accuracy if percent is None else f"{percent:.3f}%"


def _within(speedup: float, noise: float | None) -> bool:
    return noise is not None and speedup != 1.0 and abs(speedup - 1) <= noise


def text_table(entries: list[Entry]) -> str:
    cells = [[str(c) for c in row] for row in rows(entries)]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(HEADERS)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    out = [line(HEADERS), line(["-" * w for w in widths]), *(line(r) for r in cells)]
    notes = ["metric: the scenario's MLPerf figure as LoadGen names it; p50/p90/p99: LoadGen's latency "
             "percentiles; speed-up: against the first run of the same scenario"]
    noise = next((e.noise for e in entries if e.noise is not None), None)
    if noise is not None:
        notes.append(f"'~': within the run-to-run noise the sweep measured ({100 * noise:.1f}%)")
    for entry in entries:
        notes.append(f"{entry.label}: {entry.run.directory}")
    return "\n".join(out + [""] + notes) + "\n"


# --- plots and HTML ------------------------------------------------------------------

def draw(entries: list[Entry], directory: Path) -> list[tuple[Path, str]]:
    images = []
    groups: dict[str, dict] = {}
    for entry, speedup in zip(entries, speedups(entries)):
        test = entry.test
        if test is None or test.scenario not in logs.METRICS:
            continue
        _, name, unit = logs.METRICS[test.scenario]
        group = groups.setdefault(test.scenario, {"title": f"{test.scenario}: {name}", "unit": unit,
                                                   "lower_is_better": unit == "ms", "bars": []})
        group["bars"].append({"label": entry.label, "value": test.value, "valid": test.validity == "VALID",
                              "speedup": speedup, "noise": entry.noise})
    if groups:
        images.append((plots.compare_bars(list(groups.values()), directory / "compare_metric.png"),
                       "Each run's MLPerf figure (as LoadGen names it), one panel per scenario; the label "
                       "gives the value and the speed-up against the panel's first run. Grey bars are "
                       "INVALID runs; error bars are the run-to-run noise a precision sweep measured "
                       "(a difference inside them is not shown to be real)."))
    curves = []
    for entry in entries:
        test = entry.test
        if test is None:
            continue
        marks = plots.loadgen_percentiles(test.detail)
        if test.table is None and not marks:
            continue
        curves.append({"label": entry.label, "latency_ms": test.latency_ms(), "marks": marks,
                       "weights": None if test.table is None else test.table["samples"]})
    if curves:
        images.append((plots.compare_cdfs(curves, directory / "compare_cdf.png"),
                       "The latency distributions of the runs on one axis: the fraction of samples completed "
                       "within each latency (lines: SUT-timed, from latencies.npy; points: LoadGen's "
                       "percentiles). A curve further left is faster; a curve that rises late has a tail."))
    points = []
    for entry in entries:
        test, accuracy = entry.test, entry.accuracy_percent
        if test is not None and test.value is not None and accuracy is not None:
            _, name, unit = logs.METRICS[test.scenario]
            points.append({"label": entry.label, "accuracy": accuracy, "value": test.value, "unit": unit,
                           "title": f"{test.scenario}: {name}"})
    if points and len({p["unit"] for p in points}) == 1:
        images.append((plots.compare_accuracy(points, directory / "compare_accuracy.png"),
                       "Accuracy (from accuracy.txt) against the performance figure, one point per run: what "
                       "a lower precision costs in accuracy and buys in speed."))
    return images


def to_html(entries: list[Entry], images: list[tuple[Path, str]], missing: str | None) -> str:
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>runs compared</title>",
             f"<style>{report.STYLE}</style></head><body><h1>{len(entries)} runs compared</h1>",
             report.grid_table(HEADERS, rows(entries), numeric_from=6)]
    noise = next((e.noise for e in entries if e.noise is not None), None)
    parts.append("<p><small>metric: the scenario's MLPerf figure as LoadGen names it; p50/p90/p99: LoadGen's "
                 "latency percentiles (mlperf_log_detail.txt); speed-up: against the first run of the same "
                 "scenario" + (f"; '~': within the {100 * noise:.1f}% run-to-run noise the sweep measured"
                               if noise is not None else "") + ".</small></p>")
    parts.append(report.rows_table([(e.label, f"<code>{report.e(e.run.directory)}</code>") for e in entries]))
    if missing:
        parts.append(f"<p class='note'>No plots: {report.e(missing)}. The table is complete without them.</p>")
    for path, caption in images:
        parts.append(f"<figure>{report.image_tag(path, path.name)}<figcaption><b>{report.e(path.name)}</b>: "
                     f"{report.e(caption)}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write(entries: list[Entry], directory: Path) -> Path:
    """compare.txt, the PNGs and compare.html in ``directory``; returns the HTML's path."""
    directory = Path(directory)
    (directory / "compare.txt").write_text(text_table(entries))
    missing = plots.available()
    images = draw(entries, directory) if missing is None else []
    path = directory / "compare.html"
    path.write_text(to_html(entries, images, missing))
    return path


def main(paths: list[str], output: str | None = None, echo=print) -> int:
    """The ``--compare`` command: print the table, save it with the plots."""
    from sut.results import RunDirectory

    entries = collect(paths)
    echo(text_table(entries), end="")
    out = RunDirectory(output or "results", "compare")
    write(entries, out.path)
    final = out.finish(ok=True)
    echo(f"saved: {final / 'compare.html'} (and compare.txt"
         + (", PNG plots)" if plots.available() is None else f"; no plots: {plots.available()})"))
    return 0
