"""Harness overhead: the null backend through our SUT vs a bare LoadGen SUT.

Both run in this process, interleaved, with the same LoadGen TestSettings
(built by ``sut.settings.build``, so each test loads mlperf.conf once: trap 6).
The bare SUT is the least a Python LoadGen SUT can do: ``ConstructFastSUT``
answering inside ``issue`` from one preallocated response buffer. Ours is
``sut.runner.run_test`` with ``backends.null.NullBackend`` on an in-memory
``SampleStore`` (the MobileNet-shaped uint8 input ``run.py --backend null``
uses), including the dataset's argmax postprocessing.

Figures are read from LoadGen's detail logs and are medians of ``--repeats``
runs per SUT. Offline and Server are throughput: Offline runs each SUT at an
expected QPS calibrated on that SUT (so both runs are VALID); Server searches
for the highest target QPS each SUT sustains VALID.

Also the shared helpers the other benchmarks use (tables, medians, in-process
runs of our harness on an in-memory dataset).

It first prints the instruction counts of ``benchmarks.instructions`` (the
same cases; ``--quick``: SingleStream only), which repeat exactly whatever
the machine is doing and which the targets hold on, then the times.

    .venv/bin/python -m benchmarks.harness_overhead [--quick] [--repeats N] [--no-instructions]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from backends.base import BackendOptions, ModelInfo, TensorSpec  # noqa: E402
from datasets.base import Dataset, argmax_classes, argmax_writer  # noqa: E402
from datasets.cache import SampleStore  # noqa: E402
from profiles import Config  # noqa: E402

log = logging.getLogger(__name__)

SHARED = Path(os.environ.get("MLPERF_EDGE_SHARED", ROOT.parent / "shared"))
CONF_WARNING = "Multiple conf files"


# --- shared helpers ---------------------------------------------------------------

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def table(title: str, headers: list[str], rows: list[list]) -> str:
    """A plain-text table (also valid reStructuredText 'simple table' body)."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    rule = "  ".join("=" * w for w in widths)
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    out = [title, "", rule, line(headers), rule, *(line(r) for r in cells), rule]
    return "\n".join(out) + "\n"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


class ArrayDataset(Dataset):
    """A dataset that exists only as a preprocessed array (benchmarks only)."""

    name = "array"

    def __init__(self, count: int, label_offset: int = 0):
        super().__init__(None)
        self.labels = [0] * count
        self.sources = [f"sample-{i}" for i in range(count)]
        self.label_offset = label_offset

    def scan(self):
        pass

    def check_model(self, info):
        pass

    def preprocessor(self, spec):
        raise NotImplementedError

    def cache_key(self, spec):
        return {}

    def postprocess(self, outputs, info):
        return argmax_classes(outputs, self.label_offset)

    def response_writer(self, info):
        return argmax_writer(self.label_offset)


def random_store(spec: TensorSpec, count: int, seed: int = 0) -> SampleStore:
    """``count`` random samples of ``spec``'s shape and dtype, in memory."""
    rng = np.random.default_rng(seed)
    shape = (count, *spec.shape)
    if spec.dtype.kind == "f":
        data = rng.uniform(-1, 1, size=shape).astype(spec.dtype)
    else:
        info = np.iinfo(spec.dtype)
        data = rng.integers(info.min, int(info.max) + 1, size=shape, dtype=spec.dtype)
    return SampleStore(data)


@contextlib.contextmanager
def quiet_loadgen():
    """Silence LoadGen's stdout/stderr chatter (it writes from C++)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


@dataclasses.dataclass
class Run:
    """What one LoadGen test logged."""

    scenario: str
    detail: dict

    @property
    def valid(self) -> bool:
        return self.detail.get("result_validity") == "VALID"

    @property
    def p90_us(self):
        v = self.detail.get("result_90.00_percentile_latency_ns")
        return None if v is None else v / 1e3

    @property
    def p99_us(self):
        v = self.detail.get("result_99.00_percentile_latency_ns")
        return None if v is None else v / 1e3

    @property
    def samples_per_s(self):
        return self.detail.get("result_samples_per_second")

    @property
    def scheduled_per_s(self):
        return self.detail.get("result_scheduled_samples_per_sec")

    def check(self) -> None:
        warnings = [w for w in self.detail.get("_warnings", []) if CONF_WARNING in w]
        errors = self.detail.get("_errors", [])
        if warnings or errors:
            raise RuntimeError(f"LoadGen reported: {warnings + errors}")


def config(scenario: str, **values) -> Config:
    """A Config for in-process runs (no profile, no result tree)."""
    return Config(scenario=scenario, progress=False, **values)


def run_ours(cfg: Config, backend, info: ModelInfo, dataset: Dataset, store: SampleStore, workdir: Path,
             estimate=None) -> Run:
    """One performance test through ``sut.runner.run_test``, as ``run.py`` runs it."""
    from sut import runner

    outdir = Path(tempfile.mkdtemp(prefix=f"ours-{cfg.scenario}-", dir=workdir))
    with quiet_loadgen():
        result = runner.run_test(cfg, "performance", backend, info, dataset, store, estimate, outdir)
    if result.error:
        raise RuntimeError(f"our run failed: {result.error}")
    run = Run(cfg.scenario, result.detail)
    run.check()
    return run


def run_bare(cfg: Config, total: int, workdir: Path, response_bytes: int = 4) -> Run:
    """The same TestSettings on a bare FastSUT answering inline from a preallocated buffer."""
    import mlperf_loadgen as lg

    from sut import logs
    from sut import settings as settings_mod

    test_settings = settings_mod.build(cfg, "performance", None)
    perf = min(test_settings.performance_sample_count_override or total, total)
    test_settings.performance_sample_count_override = perf
    buffer = np.zeros(response_bytes, np.uint8)
    address = buffer.ctypes.data
    response = lg.QuerySampleResponse
    complete = lg.QuerySamplesComplete

    def issue(ids, indices):
        complete([response(i, address, response_bytes) for i in ids])

    def flush():
        pass

    def noop(indices):
        pass

    outdir = Path(tempfile.mkdtemp(prefix=f"bare-{cfg.scenario}-", dir=workdir))
    sut = lg.ConstructFastSUT(issue, flush)
    qsl = lg.ConstructQSL(total, perf, noop, noop)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(outdir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False
    with quiet_loadgen():
        lg.StartTestWithLogSettings(sut, qsl, test_settings, log_settings, str(outdir / "audit.config"))
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    run = Run(cfg.scenario, logs.read_detail(outdir / "mlperf_log_detail.txt"))
    run.check()
    return run


# --- the benchmark ----------------------------------------------------------------

@dataclasses.dataclass
class Durations:
    latency_ms: int      # SingleStream, MultiStream
    offline_ms: int
    server_ms: int
    repeats: int
    server_steps: int


def null_parts(samples: int, max_batch_size: int = 1):
    from backends.null import NullBackend

    backend = NullBackend(BackendOptions(max_batch_size=max_batch_size))
    info = backend.load(None)
    return backend, info, ArrayDataset(samples, label_offset=1), random_store(info.input, samples)


def latency_pair(scenario: str, d: Durations, parts, workdir: Path) -> dict:
    """Median p90 (SingleStream) / p99 (MultiStream) of bare and ours, interleaved."""
    backend, info, dataset, store = parts
    # expected latency far below both SUTs so LoadGen always has queries left (trap 8)
    cfg = config(scenario, min_duration_ms=d.latency_ms, min_query_count=700 if scenario == "MultiStream" else 100,
                 target_latency_ms=0.002 if scenario == "SingleStream" else 0.01)
    key = "p90_us" if scenario == "SingleStream" else "p99_us"
    bare, ours = [], []
    for _ in range(d.repeats):
        b = run_bare(cfg, len(store), workdir)
        o = run_ours(cfg, backend, info, dataset, store, workdir)
        bare.append(getattr(b, key) if b.valid else None)
        ours.append(getattr(o, key) if o.valid else None)
    return {"bare": median(bare), "ours": median(ours), "runs": (bare, ours)}


def offline_pair(d: Durations, parts, workdir: Path) -> dict:
    backend, info, dataset, store = parts
    results = {}
    for name in ("bare", "ours"):
        def go(qps, ms):
            cfg = config("Offline", min_duration_ms=ms, min_query_count=1, target_qps=qps)
            if name == "bare":
                return run_bare(cfg, len(store), workdir)
            return run_ours(cfg, backend, info, dataset, store, workdir)
        # calibrate: a short run at a modest rate, then expect 90% of what it did
        rate = go(20000, 300).samples_per_s
        results[name] = rate * 0.9
    bare, ours = [], []
    for _ in range(d.repeats):
        for name, out in (("bare", bare), ("ours", ours)):
            cfg = config("Offline", min_duration_ms=d.offline_ms, min_query_count=1, target_qps=results[name])
            run = run_bare(cfg, len(store), workdir) if name == "bare" else \
                run_ours(cfg, backend, info, dataset, store, workdir)
            out.append(run.samples_per_s)
    return {"bare": median(bare), "ours": median(ours), "runs": (bare, ours)}


def server_peak(name: str, start_qps: float, d: Durations, parts, workdir: Path) -> float | None:
    """Highest target QPS found VALID (doubling, then bisecting ``server_steps`` times)."""
    backend, info, dataset, store = parts

    def valid(qps: float) -> bool:
        cfg = config("Server", min_duration_ms=d.server_ms, min_query_count=500, target_qps=qps,
                     target_latency_ms=10.0)
        run = run_bare(cfg, len(store), workdir) if name == "bare" else \
            run_ours(cfg, backend, info, dataset, store, workdir)
        return run.valid

    low, high = None, start_qps
    while valid(high):
        low, high = high, high * 2
        if high > 2e6:
            return low
    if low is None:
        low = 0.0
    for _ in range(d.server_steps):
        mid = (low + high) / 2
        if valid(mid):
            low = mid
        else:
            high = mid
    return low or None


def server_pair(d: Durations, parts, workdir: Path, start_qps: float) -> dict:
    bare, ours = [], []
    for _ in range(max(1, d.repeats // 2)):
        bare.append(server_peak("bare", start_qps, d, parts, workdir))
        ours.append(server_peak("ours", start_qps, d, parts, workdir))
    return {"bare": median(bare), "ours": median(ours), "runs": (bare, ours)}


def measure(quick: bool = False, repeats: int | None = None, scenarios=None) -> str:
    d = Durations(latency_ms=1000, offline_ms=1000, server_ms=1000, repeats=1, server_steps=2) if quick else \
        Durations(latency_ms=3000, offline_ms=2000, server_ms=1500, repeats=3, server_steps=3)
    if repeats:
        d.repeats = repeats
    scenarios = scenarios or ["SingleStream", "MultiStream", "Offline", "Server"]
    parts = null_parts(64)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        workdir = Path(tmp)
        offline = None
        if "SingleStream" in scenarios:
            r = latency_pair("SingleStream", d, parts, workdir)
            rows.append(["SingleStream p90 latency (us)", r["bare"], r["ours"],
                         None if None in (r["bare"], r["ours"]) else r["ours"] - r["bare"],
                         ratio(r["ours"], r["bare"]), "overhead <= 20 us"])
        if "MultiStream" in scenarios:
            r = latency_pair("MultiStream", d, parts, workdir)
            rows.append(["MultiStream p99 latency (us), 8/query", r["bare"], r["ours"],
                         None if None in (r["bare"], r["ours"]) else r["ours"] - r["bare"],
                         ratio(r["ours"], r["bare"]), ""])
        if "Offline" in scenarios:
            offline = offline_pair(d, parts, workdir)
            rows.append(["Offline samples/s, batch 1", offline["bare"], offline["ours"], None,
                         ratio(offline["ours"], offline["bare"]), "ours/bare >= 0.80"])
            batched = offline_pair(d, null_parts(64, max_batch_size=64), workdir)
            rows.append(["Offline samples/s, batch 64", batched["bare"], batched["ours"], None,
                         ratio(batched["ours"], batched["bare"]), "ours/bare >= 0.80"])
        if "Server" in scenarios:
            start = 2000.0
            r = server_pair(d, parts, workdir, start)
            rows.append(["Server peak VALID samples/s (10 ms bound)", r["bare"], r["ours"], None,
                         ratio(r["ours"], r["bare"]), "ours/bare >= 0.50 (x2 from 2k, then bisect)"])
    title = (f"Harness overhead: null backend through our SUT vs bare FastSUT "
             f"(median of {d.repeats} interleaved runs; 2 shared cores, noisy)")
    return table(title, ["figure", "bare", "ours", "ours-bare", "ours/bare", "target"], rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short runs, one repeat")
    p.add_argument("--repeats", type=int, help="runs per SUT and scenario (median reported)")
    p.add_argument("--scenario", action="append", choices=["SingleStream", "MultiStream", "Offline", "Server"])
    p.add_argument("--no-instructions", action="store_true",
                   help="time only: skip the instruction counts (benchmarks.instructions, needs valgrind)")
    args = p.parse_args(argv)
    if not args.no_instructions:
        # the figures the targets hold on: they repeat whatever the machine is doing
        from benchmarks import instructions

        cases = [c for c in instructions.TARGETS if (c.split()[0] in args.scenario if args.scenario else True)]
        code = instructions.main(["--quick"] if args.quick and not args.scenario else
                                 [arg for case in cases for arg in ("--case", case)])
        if code:
            return code
    print(measure(args.quick, args.repeats, args.scenario))
    return 0


if __name__ == "__main__":
    sys.exit(main())
