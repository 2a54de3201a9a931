"""``report.html`` and PNG plots of one run.

:func:`write` is called at the end of ``session.execute``: it saves each
performance test's per-query latencies (:mod:`sut.latencies`) next to
LoadGen's logs, draws the plots (:mod:`sut.plots`, when matplotlib is
installed) and writes ``report.html`` into the run directory. Everything is
read back from the directory itself (:func:`load_run`), so a report can be
rebuilt for any result directory (:func:`render`) and ``--compare`` reads
runs the same way.

``report.html`` is self-contained: inline CSS, images embedded as base64 PNG,
no script and no reference to anything outside the file, so it opens offline
and survives being mailed. Without matplotlib it still has every table and
says how to get the plots.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from sut import latencies, logs, plots
from sut.errors import ResultsError

log = logging.getLogger(__name__)

REPORT = "report.html"
#: what a run directory's name ends with while it runs or after it failed
SUFFIXES = (".partial", ".failed", ".interrupted")


@dataclasses.dataclass
class TestView:
    """One LoadGen test of a run, as read from its directory."""

    mode: str                      # performance / accuracy
    scenario: str
    directory: Path
    detail: dict[str, Any]
    table: np.ndarray | None = None   # latencies.npy
    accuracy: str | None = None       # accuracy.txt's line

    @property
    def metric(self) -> tuple[str, str] | None:
        return logs.metric(self.detail, self.scenario) if self.scenario in logs.METRICS else None

    @property
    def value(self) -> float | None:
        """The scenario's MLPerf figure as a number (ms for latencies)."""
        key, _, unit = logs.METRICS.get(self.scenario, (None, None, None))
        raw = self.detail.get(key) if key else None
        if raw is None:
            return None
        return float(raw) / 1e6 if unit == "ms" else float(raw)

    @property
    def validity(self) -> str | None:
        return self.detail.get("result_validity")

    @property
    def metric_percentile(self) -> str | None:
        """The percentile label (p90/p99) the scenario's figure is, if it is one."""
        if self.scenario == "SingleStream":
            return "p90"
        if self.scenario in ("MultiStream", "Server"):
            return "p99"
        return None

    def latency_ms(self):
        return None if self.table is None else latencies.latencies_s(self.table) * 1e3


@dataclasses.dataclass
class RunView:
    directory: Path
    record: dict[str, Any]
    tests: list[TestView]
    name: str = ""   # what the report calls the run (default: the directory's name)

    def __post_init__(self):
        self.name = self.name or Path(self.directory).name

    @property
    def performance(self) -> TestView | None:
        return next((t for t in self.tests if t.mode == "performance"), None)

    @property
    def accuracy(self) -> TestView | None:
        return next((t for t in self.tests if t.mode == "accuracy" and t.accuracy), None)

    @property
    def scenario(self) -> str | None:
        test = self.performance or (self.tests[0] if self.tests else None)
        return test.scenario if test else (self.record.get("config") or {}).get("scenario")

    @property
    def precision(self) -> str | None:
        backend = self.record.get("backend") or {}
        return backend.get("precision") or (self.record.get("config") or {}).get("precision")


def load_run(directory: Path) -> RunView:
    """Read a run directory: ``config.json`` (when present) and every LoadGen
    test under it (``<Scenario>/performance/run_1`` and ``<Scenario>/accuracy``)."""
    directory = Path(directory)
    record: dict[str, Any] = {}
    if (directory / "config.json").is_file():
        try:
            record = json.loads((directory / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ResultsError(f"cannot read {directory / 'config.json'}: {exc}") from exc
    tests = []
    for detail_path in sorted(directory.glob("**/mlperf_log_detail.txt")):
        test_dir = detail_path.parent
        if test_dir.name == "accuracy":
            mode, scenario = "accuracy", test_dir.parent.name
        elif test_dir.parent.name == "performance":
            mode, scenario = "performance", test_dir.parent.parent.name
        else:
            continue  # compliance tests and anything else
        detail = logs.read_detail(detail_path)
        scenario = detail.get("effective_scenario") or scenario
        view = TestView(mode, scenario, test_dir, detail)
        if mode == "performance":
            view.table = latencies.load(test_dir)
        elif (test_dir / "accuracy.txt").is_file():
            view.accuracy = (test_dir / "accuracy.txt").read_text().strip().splitlines()[0]
        tests.append(view)
    if not record and not tests:
        raise ResultsError(f"no results in {directory}: expected a run directory (config.json, "
                           f"mlperf_log_detail.txt below it) or a sweep directory (sweep.json)")
    return RunView(directory, record, tests)


# --- writing ---------------------------------------------------------------------

def write(run_dir: Path, record: dict | None = None, tests=None, html: bool = True,
          name: str | None = None, plots: bool = True) -> Path | None:
    """Save the latencies the SUT recorded for ``tests`` (``runner.TestResult``,
    in the order they ran), then (``html``) draw the plots and write
    ``report.html``, naming the run ``name`` (the name its directory will
    have once the run ends; default: the directory's current name)."""
    run_dir = Path(run_dir)
    if tests:
        save_latencies(run_dir, tests)
    return render(run_dir, name, plots) if html else None


def write_safely(run_dir: Path, record: dict | None = None, tests=None, html: bool = True,
                 name: str | None = None, plots: bool = True) -> Path | None:
    """:func:`write`, but a failure is a warning: the report never fails a run."""
    try:
        path = write(run_dir, record, tests, html, name, plots)
    except Exception as exc:  # noqa: BLE001 - the run's results are already safe on disk
        log.warning("could not write the report into %s: %s: %s", run_dir, type(exc).__name__, exc)
        return None
    if path is not None:
        log.info("report: %s", path)
    return path


def save_latencies(run_dir: Path, tests) -> list[Path]:
    """``latencies.npy`` for each performance test, from the recorders its
    Completers filled (one per test, made in the order the tests ran)."""
    recorders = latencies.recent(len(tests))
    if len(recorders) != len(tests):
        log.warning("per-query latencies not saved: %d recorder(s) for %d test(s)", len(recorders), len(tests))
        return []
    saved = []
    for test, recorder in zip(tests, recorders):
        if test.mode != "performance" or test.error:
            continue
        directory = relocate(Path(test.directory), run_dir)
        table = recorder.table()
        expected = latencies.expected_samples(test.detail or {}, test.scenario)
        if expected is not None and int(table["samples"].sum()) != expected:
            log.warning("per-query latencies not saved for %s: recorded %d samples, LoadGen issued %d",
                        directory, int(table["samples"].sum()), expected)
            continue
        if directory.is_dir():
            saved.append(latencies.save(table, directory))
    return saved


def relocate(path: Path, run_dir: Path) -> Path:
    """``path`` inside ``<run>.partial`` moved to the same place in ``run_dir``
    (the run directory is renamed, e.g. to ``<run>`` or ``<run>.failed``, when
    the run ends)."""
    stem = run_dir.name
    for suffix in SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[:-len(suffix)]
    for ancestor in path.parents:
        if ancestor.name in {stem + suffix for suffix in ("", *SUFFIXES)}:
            return run_dir / path.relative_to(ancestor)
    return path


#: why a report has no plots when it was asked for tables only
QUICK_NO_PLOTS = ("a --quick run draws none (they take seconds); pass --report for them, or "
                  "python -c \"from sut import report; report.render('DIR')\" afterwards")


def render(run_dir: Path, name: str | None = None, with_plots: bool = True) -> Path:
    """Draw the plots (unless ``with_plots`` is false: tables only) and write
    ``report.html`` for the run in ``run_dir`` (called ``name`` in the report when given)."""
    run_dir = Path(run_dir)
    view = load_run(run_dir)
    if name:
        view.name = name
    missing = plots.available() if with_plots else QUICK_NO_PLOTS
    images: dict[int, list[tuple[Path, str]]] = {}
    if missing is None:
        perf = [t for t in view.tests if t.mode == "performance"]
        for i, test in enumerate(view.tests):
            if test.mode == "performance":
                prefix = "" if len(perf) == 1 else f"{test.scenario}-{i}-"
                images[i] = draw(test, run_dir, prefix, _title(view, test))
    path = run_dir / REPORT
    path.write_text(to_html(view, images, missing))
    return path


def _title(view: RunView, test: TestView) -> str:
    cfg = view.record.get("config") or {}
    parts = [cfg.get("profile") or view.name, test.scenario]
    if view.precision:
        parts.append(short_precision(view.precision))
    if test.validity:
        parts.append(test.validity)
    return " - ".join(str(p) for p in parts)


def short_precision(applied) -> str | None:
    """``int8 (Q/DQ model /path...)`` -> ``int8``: the precision without its details."""
    if not applied or applied == "-":
        return None
    return str(applied).split(" (")[0].strip()


def rate_line(test: TestView) -> tuple[str, float] | None:
    """LoadGen's throughput figure to draw over the completions, with its name."""
    d = test.detail
    if test.scenario == "Offline" and d.get("result_samples_per_second") is not None:
        return "LoadGen samples per second", float(d["result_samples_per_second"])
    if test.scenario == "Server" and d.get("result_scheduled_samples_per_sec") is not None:
        return "LoadGen scheduled samples per second (the target)", float(d["result_scheduled_samples_per_sec"])
    qps = d.get("result_qps_with_loadgen_overhead")
    if qps is not None:
        per_query = int(d.get("effective_samples_per_query") or 1)
        return "LoadGen QPS with its overhead x samples per query", float(qps) * per_query
    return None


def bound_ms(test: TestView) -> float | None:
    """Server's latency bound in ms (the other scenarios have none)."""
    value = test.detail.get("effective_target_latency_ns") if test.scenario == "Server" else None
    return float(value) / 1e6 if value else None


def draw(test: TestView, directory: Path, prefix: str, title: str) -> list[tuple[Path, str]]:
    """The PNGs of one performance test, each with what it shows."""
    marks = plots.loadgen_percentiles(test.detail)
    label = test.metric_percentile
    out = []
    lat = test.latency_ms()
    weights = None if test.table is None else test.table["samples"]
    offline = test.scenario == "Offline"
    what = ("each sample's time from the Offline query's issue until its queue item completed"
            if offline else "each query's latency")
    marked = ("LoadGen's percentiles (mlperf_log_detail.txt) are marked"
              + (f"; {label}, this scenario's metric, in red" if label else ""))
    if lat is not None and len(lat):
        out.append((plots.histogram(lat, weights, marks, label, title, directory / f"{prefix}latency_histogram.png",
                                   linear=offline),
                    f"Latency histogram: how many samples completed with each latency ({what}, timed by the "
                    f"SUT: latencies.npy), on a log scale when the spread is wide. {marked}; LoadGen times "
                    f"from its own schedule, so its lines sit a little right of the SUT's distribution."))
    if lat is not None and len(lat) or marks:
        out.append((plots.cdf(lat if lat is not None else [], weights, marks, label, title,
                              directory / f"{prefix}latency_cdf.png"),
                    "Latency CDF: the fraction of samples completed within each latency (line: SUT-timed; "
                    "points: the percentiles LoadGen reports, e.g. p90 at 0.9 is the latency 90% of samples "
                    "stayed under). A curve that reaches 1 only far to the right has a tail of slow queries."))
    if test.table is not None and len(test.table):
        out.append((plots.timeline(test.table["issue_s"], lat, test.table["complete_s"], test.table["samples"],
                                   marks, label, rate_line(test), title, directory / f"{prefix}timeline.png",
                                   offline=offline, bound_ms=bound_ms(test)),
                    ("Over the run. Top: samples completed so far against time since the Offline query was "
                     "issued (every sample is issued at once), with the line LoadGen's figure would draw. "
                     if offline else
                     "Over the run. Top: the latency of each query against when it was issued (drift, "
                     "warm-up, stalls and outliers show here), LoadGen's metric as a red line (Server: the "
                     "latency bound dashed). ")
                    + "Bottom: samples completed per second in equal time bins (up to 100, at least 20 "
                      "completions a bin on average), the mean over the run (dashed) and LoadGen's figure (red)."))
    return out


# --- HTML --------------------------------------------------------------------------

STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.VALID { color: #176317; font-weight: bold; } .INVALID { color: #b01c1c; font-weight: bold; }
figure { margin: 1em 0; } figcaption { font-size: 0.9em; color: #444; max-width: 55em; }
img { max-width: 100%; border: 1px solid #ddd; } .note { background: #fff7d6; padding: 0.5em 0.8em; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def e(value) -> str:
    return html.escape("-" if value is None or value == "" else str(value))


def rows_table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def grid_table(headers: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f"<td class='num'>{e(c)}</td>" if i >= numeric_from else f"<td>{e(c)}</td>" for i, c in enumerate(row))
        + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def image_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"<img alt='{e(alt)}' src='data:image/png;base64,{data}'>"


def ms(ns) -> str | None:
    return None if ns is None else f"{float(ns) / 1e6:.3f}"


def loadgen_rows(test: TestView) -> list[tuple[str, Any]]:
    """LoadGen's figures, named as LoadGen names them, with what each means here."""
    d = test.detail
    rows = []
    metric = test.metric
    if metric:
        rows.append(("MLPerf metric", f"{e(metric[0])} = <b>{e(metric[1])}</b>"))
    if test.validity:
        rows.append(("result_validity", f"<span class='{e(test.validity)}'>{e(test.validity)}</span>"))
    for reason in logs.invalid_reasons(d) if test.validity and test.validity != "VALID" else []:
        rows.append(("why INVALID", e(reason)))
    pairs = [
        ("result_query_count", d.get("result_query_count"), "queries LoadGen issued"),
        ("effective_samples_per_query", d.get("effective_samples_per_query"), "samples per query"),
        ("result_samples_per_second", d.get("result_samples_per_second"), "Offline's figure"),
        ("result_scheduled_samples_per_sec", d.get("result_scheduled_samples_per_sec"),
         "the rate LoadGen scheduled queries at: the Server target the run was given, not a peak"),
        ("result_completed_samples_per_sec", d.get("result_completed_samples_per_sec"),
         "the rate queries completed"),
        ("result_qps_with_loadgen_overhead", d.get("result_qps_with_loadgen_overhead"),
         "queries per second including LoadGen's own time between queries"),
        ("result_qps_without_loadgen_overhead", d.get("result_qps_without_loadgen_overhead"),
         "1 / mean latency"),
        ("effective_target_latency_ns", ms(d.get("effective_target_latency_ns")) if test.scenario == "Server" else None,
         "ms: the latency bound a Server query must meet"),
        ("result_overlatency_query_count", d.get("result_overlatency_query_count"),
         "Server queries over the latency bound"),
        ("early_stopping_latency_ss", ms(d.get("early_stopping_latency_ss")),
         "ms: early-stopping estimate of the p90 (SingleStream)"),
        ("early_stopping_latency_ms",
         ms(d.get("early_stopping_latency_ms")) if test.scenario == "MultiStream" else None,
         "ms: early-stopping estimate of the p99 (MultiStream)"),
        ("result_min_duration_met", d.get("result_min_duration_met"), ""),
        ("result_min_queries_met", d.get("result_min_queries_met"), ""),
        ("early_stopping_met", d.get("early_stopping_met"), ""),
    ]
    for key, value, meaning in pairs:
        if value is not None:
            rows.append((key, e(value) + (f" <small>({e(meaning)})</small>" if meaning else "")))
    text = (d.get("early_stopping_result") or "").strip()
    if text:
        rows.append(("early_stopping_result", e(text)))
    return rows


def percentile_table(test: TestView) -> str:
    """LoadGen's latency percentiles beside the same percentiles of the SUT's timing."""
    d = test.detail
    ours = test.latency_ms()
    weights = None if test.table is None else test.table["samples"]
    keys = [("min", "result_min_latency_ns", 0), ("mean", "result_mean_latency_ns", None)]
    keys += [(label, key, float(label[1:])) for label, key in plots.PERCENTILES.items()]
    keys.append(("max", "result_max_latency_ns", 100))
    rows = []
    for label, key, q in keys:
        sut = None
        if ours is not None and len(ours):
            if q is None:
                sut = float(np.average(ours, weights=weights))
            else:
                sut = weighted_percentile(ours, weights, q)
        rows.append([label, ms(d.get(key)), None if sut is None else f"{sut:.3f}"])
    return grid_table(["latency (ms)", "LoadGen (mlperf_log_detail.txt)", "SUT-timed (latencies.npy)"], rows)


def weighted_percentile(values, weights, q: float) -> float:
    """The smallest value at or below which ``q`` percent of the weight lies."""
    order = np.argsort(values, kind="stable")
    v = np.asarray(values, dtype=float)[order]
    w = np.ones(len(v)) if weights is None else np.asarray(weights, dtype=float)[order]
    cum = np.cumsum(w)
    index = int(np.searchsorted(cum, q / 100 * cum[-1], side="left"))
    return float(v[min(index, len(v) - 1)])


def sut_rows(test: TestView) -> list[tuple[str, Any]]:
    table = test.table
    if table is None:
        return [("per-query latencies", "not recorded (no latencies.npy in this test's directory)")]
    span = float(table["complete_s"].max()) if len(table) else 0.0
    samples = int(table["samples"].sum())
    return [("work items timed", e(len(table))),
            ("samples", e(samples)),
            ("first issue to last completion", e(f"{span:.3f} s")),
            ("samples completed per second", e(f"{samples / span:,.1f}" if span > 0 else None)),
            ("file", f"<code>{e(test.directory.name)}/latencies.npy</code> (issue_s, complete_s, samples)")]


def to_html(view: RunView, images: dict[int, list[tuple[Path, str]]], missing: str | None) -> str:
    record = view.record
    cfg = record.get("config") or {}
    backend = record.get("backend") or {}
    title = " - ".join(str(x) for x in (cfg.get("profile") or view.name, view.scenario) if x)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{e(title)}</h1>",
             rows_table([
                 ("run", f"<code>{e(view.name)}</code>"),
                 ("profile", e(cfg.get("profile"))),
                 ("backend", e(cfg.get("backend"))),
                 ("runtime", e(backend.get("runtime"))),
                 ("precision (applied)", e(view.precision)),
                 ("model", e(record.get("model_path") or cfg.get("model"))),
                 ("dataset", e(" ".join(str(x) for x in (cfg.get("dataset"), cfg.get("dataset_path")) if x)
                               + f" ({cfg.get('count') or 'all'} samples)")),
                 ("scenario", e(view.scenario) + (" (quick: not for submission)" if cfg.get("quick") else "")),
                 ("python / platform", e(f"{record.get('python') or '-'} / {record.get('platform') or '-'}")),
             ])]
    if missing:
        parts.append(f"<p class='note'>No plots: {e(missing)}. The tables below are complete without them.</p>")
    for i, test in enumerate(view.tests):
        inside = view.directory in test.directory.parents
        where = test.directory.relative_to(view.directory) if inside else test.directory
        parts.append(f"<h2>{e(test.scenario)} {e(test.mode)} test</h2><p><code>{e(where)}</code></p>")
        if test.mode == "accuracy":
            parts.append(rows_table([("accuracy", e(test.accuracy or "not scored"))]))
            continue
        parts.append(rows_table(loadgen_rows(test)))
        parts.append(percentile_table(test))
        parts.append("<p><small>LoadGen times a query from when its schedule issued it to its completion; the "
                     "SUT times a work item (a query, or part of one) from when the SUT registered it until "
                     "just before completing it, so the SUT's times are a little shorter.</small></p>")
        parts.append(rows_table(sut_rows(test)))
        for path, caption in images.get(i, []):
            parts.append(f"<figure>{image_tag(path, path.name)}<figcaption><b>{e(path.name)}</b>: "
                         f"{e(caption)}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
