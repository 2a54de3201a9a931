"""PNG plots of a run's latencies and of several runs side by side.

matplotlib is optional (``pip install matplotlib``, or the ``report`` extra):
:func:`available` says whether it can be used, and why not. It is imported
inside the functions that draw, with the Agg backend (no display needed);
every figure has a fixed size in pixels (:data:`SIZE`, :data:`TALL`) so a
report's layout never depends on the data.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DPI = 100
#: width, height in pixels of the single-panel figures
SIZE = (880, 480)
#: width, height of the two-panel figures (timeline, comparison bars)
TALL = (880, 720)
INSTALL = "pip install matplotlib (or pip install -e '.[report]')"
#: most points drawn in a scatter (evenly thinned beyond)
MAX_POINTS = 40000
#: LoadGen's percentile keys in mlperf_log_detail.txt, label -> key
PERCENTILES = {
    "p50": "result_50.00_percentile_latency_ns",
    "p90": "result_90.00_percentile_latency_ns",
    "p95": "result_95.00_percentile_latency_ns",
    "p97": "result_97.00_percentile_latency_ns",
    "p99": "result_99.00_percentile_latency_ns",
    "p99.9": "result_99.90_percentile_latency_ns",
}
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def available() -> str | None:
    """None when plots can be drawn, else why not and how to fix it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"matplotlib is not installed: {INSTALL}"
    return None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _figure(size):
    plt = _pyplot()
    return plt, plt.figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)


def _save(plt, fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png")  # no bbox_inches="tight": keeps the size fixed
    plt.close(fig)
    return path


def loadgen_percentiles(detail: dict) -> dict[str, float]:
    """LoadGen's reported latency percentiles in ms, label -> value (those present)."""
    out = {}
    for label, key in PERCENTILES.items():
        value = detail.get(key)
        if value is not None:
            out[label] = float(value) / 1e6
    return out


def _wide(values_ms) -> bool:
    values = np.asarray(values_ms, dtype=float)
    values = values[values > 0]
    return len(values) > 1 and values.max() / values.min() > 20


def _mark_percentiles(ax, marks: dict[str, float], metric_label: str | None, vertical: bool = True):
    for i, (label, value) in enumerate(marks.items()):
        strong = label == metric_label
        color = "#d62728" if strong else "#555555"
        ax.axvline(value, color=color, lw=1.8 if strong else 0.9, ls="-" if strong else "--", zorder=3)
        y = 0.97 - 0.07 * (i % 6)
        ax.text(value, y, f" {label} {_ms(value)}", transform=ax.get_xaxis_transform(), color=color,
                fontsize=8, va="top", ha="left", fontweight="bold" if strong else "normal", zorder=4)


def _log_axis(ax, axis: str = "x") -> None:
    """A log scale whose ticks read as plain numbers (0.03, not 3x10^-2)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _number(value: float) -> str:
    """3 significant digits, without exponents: 0.0335, 8.19, 1,032, 89,481."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _ms(value_ms: float) -> str:
    if value_ms >= 100:
        return f"{value_ms:.0f} ms"
    if value_ms >= 1:
        return f"{value_ms:.2f} ms"
    return f"{value_ms * 1000:.1f} us"


def histogram(latency_ms, weights, marks: dict[str, float], metric_label: str | None, title: str,
              path: Path, linear: bool = False) -> Path:
    """Latency histogram (samples per bin), LoadGen's percentiles as vertical
    lines. The x axis ends just past the larger of the SUT's and LoadGen's
    99.9th percentile (the body of the distribution; the CDF shows the tail),
    and says how many samples lie beyond."""
    plt, fig = _figure(SIZE)
    ax = fig.add_subplot(1, 1, 1)
    lat = np.asarray(latency_ms, dtype=float)
    w = None if weights is None else np.asarray(weights, dtype=float)
    log_x = False
    if len(lat):
        lo = max(float(lat.min()), 1e-6)
        hi = max(float(np.percentile(lat, 99.9)), *(marks.values() or [0.0])) * 1.15
        inside = lat <= hi
        log_x = not linear and hi / lo > 5
        bins = np.geomspace(lo, hi, 80) if log_x else np.linspace(lo, hi, 80)
        ax.hist(lat[inside], bins=bins, weights=None if w is None else w[inside], color="#1f77b4", alpha=0.85)
        beyond = float(np.sum(~inside if w is None else w[~inside]))
        if beyond:
            ax.text(0.99, 0.97, f"{beyond:,.0f} samples slower than {_ms(hi)}\nnot drawn (max {_ms(lat.max())};"
                    f" see the CDF)", transform=ax.transAxes, ha="right", va="top", fontsize=8, color="#555555")
    if log_x:
        _log_axis(ax, "x")
    log_y = not linear and len(lat) > 0 and float(np.percentile(lat, 99)) > 2 * float(np.median(lat))
    if log_y:  # a long tail: its few samples would not show on a linear scale
        _log_axis(ax, "y")
    _mark_percentiles(ax, marks, metric_label)
    ax.set_xlabel("latency (ms" + (", log scale)" if log_x else ")"))
    ax.set_ylabel("samples" + (" (log scale)" if log_y else ""))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(plt, fig, path)


def _cdf(lat_ms, weights):
    order = np.argsort(lat_ms, kind="stable")
    x = np.asarray(lat_ms, dtype=float)[order]
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)[order]
    y = np.cumsum(w) / max(w.sum(), 1e-12)
    if len(x) > MAX_POINTS:  # the shape survives thinning; keep the tail's last point
        keep = np.unique(np.r_[np.linspace(0, len(x) - 1, MAX_POINTS).astype(int), len(x) - 1])
        x, y = x[keep], y[keep]
    return x, y


def cdf(latency_ms, weights, marks: dict[str, float], metric_label: str | None, title: str, path: Path) -> Path:
    """Cumulative distribution of the latencies (the SUT's own timing, a line)
    with LoadGen's percentiles as points on it (LoadGen's timing)."""
    plt, fig = _figure(SIZE)
    ax = fig.add_subplot(1, 1, 1)
    lat = np.asarray(latency_ms, dtype=float)
    if len(lat):
        x, y = _cdf(lat, weights)
        ax.step(x, y, where="post", color="#1f77b4", lw=1.5, label="SUT-timed (latencies.npy)")
    fractions = {label: float(label[1:]) / 100 for label in marks}
    if marks:
        ax.plot(list(marks.values()), list(fractions.values()), "o", color="#d62728", ms=6,
                label="LoadGen's percentiles (mlperf_log_detail.txt)", zorder=4)
        for label, value in marks.items():
            strong = label == metric_label
            ax.annotate(f"{label} {_ms(value)}", (value, fractions[label]), textcoords="offset points",
                        xytext=(6, -10), fontsize=8, fontweight="bold" if strong else "normal")
    if _wide(np.concatenate([lat, list(marks.values())])):
        _log_axis(ax, "x")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of samples at or below")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(plt, fig, path)


def throughput_series(complete_s, samples, duration_s: float | None = None, bins: int | None = None):
    """(bin centres in s, samples per second per bin) of completions over the
    run; by default 100 bins, fewer when there are under 20 completions a bin."""
    complete_s = np.asarray(complete_s, dtype=float)
    if not len(complete_s):
        return np.array([]), np.array([])
    bins = bins or int(min(100, max(5, len(complete_s) // 20)))
    end = duration_s or float(complete_s.max())
    end = max(end, 1e-6)
    edges = np.linspace(0.0, end, bins + 1)
    counts, _ = np.histogram(complete_s, bins=edges, weights=samples)
    width = edges[1] - edges[0]
    return (edges[:-1] + edges[1:]) / 2, counts / width


def timeline(issue_s, latency_ms, complete_s, samples, marks: dict[str, float], metric_label: str | None,
             rate: tuple[str, float] | None, title: str, path: Path, offline: bool = False,
             bound_ms: float | None = None) -> Path:
    """Top: each query's latency against when it was issued (Offline, whose
    samples are all issued at once: samples completed so far against time).
    Bottom: samples completed per second over the run, LoadGen's rate as a line."""
    plt, fig = _figure(TALL)
    top = fig.add_subplot(2, 1, 1)
    issue_s = np.asarray(issue_s, dtype=float)
    lat = np.asarray(latency_ms, dtype=float)
    if offline:
        order = np.argsort(complete_s, kind="stable")
        done = np.cumsum(np.asarray(samples)[order])
        top.step(np.r_[0.0, np.asarray(complete_s)[order]], np.r_[0, done], where="post", color="#1f77b4",
                 lw=1.5, label="samples completed so far (SUT-timed)")
        if rate is not None and len(done):
            end = float(np.max(complete_s))
            top.plot([0, end], [0, rate[1] * end], color="#d62728", lw=1, ls="--", label=f"at {rate[0]}")
        top.set_xlabel("s since the query was issued")
        top.set_ylabel("samples")
    else:
        step = max(1, len(lat) // MAX_POINTS)
        top.plot(issue_s[::step], lat[::step], ".", ms=2, color="#1f77b4", alpha=0.5, rasterized=True,
                 label="each query (SUT-timed)" + (f", every {step}th" if step > 1 else ""))
        if metric_label in marks:
            top.axhline(marks[metric_label], color="#d62728", lw=1.2,
                        label=f"LoadGen {metric_label} {_ms(marks[metric_label])}")
        if bound_ms:
            top.axhline(bound_ms, color="#d62728", lw=1, ls="--", label=f"latency bound {_ms(bound_ms)}")
        if _wide(np.r_[lat, [bound_ms] if bound_ms else []]):
            _log_axis(top, "y")
        top.set_xlabel("issued at (s since the first query)")
        top.set_ylabel("latency (ms)")
    top.set_title(title, fontsize=10)
    top.grid(alpha=0.3)
    top.legend(loc="upper left" if offline else "upper right", fontsize=8)
    bottom = fig.add_subplot(2, 1, 2)
    x, y = throughput_series(complete_s, samples)
    bottom.plot(x, y, "-", color="#2ca02c", lw=1.2, label=f"samples completed per second ({len(x)} bins)")
    if len(x):
        total = float(np.sum(samples)) / max(float(np.max(complete_s)), 1e-9)
        bottom.axhline(total, color="#555555", ls="--", lw=1, label=f"mean over the run {total:,.0f}/s")
    if rate is not None:
        bottom.axhline(rate[1], color="#d62728", lw=1.2, label=f"{rate[0]} {rate[1]:,.0f}/s")
    bottom.set_xlabel("completed at (s since the first query)")
    bottom.set_ylabel("samples/s")
    bottom.set_ylim(bottom=0)
    bottom.grid(alpha=0.3)
    bottom.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(plt, fig, path)


def compare_bars(groups: list[dict], path: Path) -> Path:
    """One panel per metric (scenario): a bar per run, labelled with its value,
    validity and speed-up against the group's first run; error bars show the
    run-to-run noise where a sweep measured it.

    ``groups``: ``{"title", "unit", "lower_is_better", "bars": [{"label", "value",
    "valid", "speedup", "noise"}]}``.
    """
    plt, fig = _figure(TALL if len(groups) > 1 else SIZE)
    for i, group in enumerate(groups):
        ax = fig.add_subplot(len(groups), 1, i + 1)
        bars = group["bars"]
        values = [b["value"] or 0.0 for b in bars]
        colors = [COLORS[k % len(COLORS)] if b["valid"] else "#bbbbbb" for k, b in enumerate(bars)]
        errors = [(b.get("noise") or 0.0) * (b["value"] or 0.0) for b in bars]
        y = np.arange(len(bars))
        ax.barh(y, values, color=colors, xerr=errors if any(errors) else None, capsize=4)
        ax.set_yticks(y, [b["label"] for b in bars], fontsize=8)
        ax.invert_yaxis()
        top = max(values) if values and max(values) > 0 else 1.0
        for k, b in enumerate(bars):
            text = "no figure" if b["value"] is None else f"{_number(b['value'])} {group['unit']}"
            if not b["valid"]:
                text += "  INVALID" if b["value"] is not None else ""
            if b.get("speedup") is not None:
                text += f"  {b['speedup']:.2f}x"
            ax.text((b["value"] or 0.0) + errors[k] + top * 0.015, k, text, va="center", fontsize=8)
        ax.set_xlim(0, top * 1.45)
        better = "lower is better" if group["lower_is_better"] else "higher is better"
        ax.set_xlabel(f"{group['title']} ({group['unit']}, {better})")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("runs side by side (grey: INVALID or no figure; speed-up against the first bar)", fontsize=10)
    fig.tight_layout()
    return _save(plt, fig, path)


def compare_cdfs(curves: list[dict], path: Path) -> Path:
    """Latency CDFs of several runs on one axis: a line where the SUT recorded
    latencies, LoadGen's percentiles as points otherwise.

    ``curves``: ``{"label", "latency_ms" (or None), "weights", "marks"}``.
    """
    plt, fig = _figure(SIZE)
    ax = fig.add_subplot(1, 1, 1)
    everything = []
    for k, curve in enumerate(curves):
        color = COLORS[k % len(COLORS)]
        lat = curve.get("latency_ms")
        marks = curve.get("marks") or {}
        if lat is not None and len(lat):
            x, y = _cdf(lat, curve.get("weights"))
            ax.step(x, y, where="post", color=color, lw=1.4, label=curve["label"])
            everything.append(x)
            label = None
        else:
            label = f"{curve['label']} (LoadGen percentiles only)"
        if marks:
            ax.plot(list(marks.values()), [float(m[1:]) / 100 for m in marks], "o", color=color, ms=4,
                    label=label)
            everything.append(np.asarray(list(marks.values())))
    if everything and _wide(np.concatenate(everything)):
        _log_axis(ax, "x")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of samples at or below")
    ax.set_title("latency distributions (lines: SUT-timed; points: LoadGen's percentiles)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(plt, fig, path)


def compare_accuracy(points: list[dict], path: Path) -> Path:
    """Accuracy against the performance figure, one labelled point per run
    (the trade-off a precision sweep is about).

    ``points``: ``{"label", "accuracy" (percent), "value", "unit", "title"}``.
    """
    plt, fig = _figure(SIZE)
    ax = fig.add_subplot(1, 1, 1)
    for k, p in enumerate(points):
        ax.plot([p["value"]], [p["accuracy"]], "o", ms=8, color=COLORS[k % len(COLORS)])
        ax.annotate(p["label"], (p["value"], p["accuracy"]), textcoords="offset points", xytext=(7, 4),
                    fontsize=8)
    first = points[0]
    ax.set_xlabel(f"{first['title']} ({first['unit']})")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy against the performance figure, one point per run", fontsize=10)
    ax.margins(0.25)
    accuracies = [p["accuracy"] for p in points]
    ax.set_ylim(max(0.0, min(accuracies) - 2), min(100.5, max(accuracies) + 2) if max(accuracies) <= 100 else None)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(plt, fig, path)
