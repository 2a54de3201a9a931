"""Peak memory of a run as the dataset grows: the QSL must hold only what LoadGen loads.

Each measurement is a fresh child process (``python -m benchmarks.memory
--child ...``) that memory-maps a preprocessed store of N samples (a .npy
file written beforehand, as ``datasets.cache`` leaves it) and runs one
Offline performance test through ``sut.runner.run_test`` with a given
performance sample count. Its peak RSS is the child's own
``VmHWM``, which the child reads from ``/proc/self/status`` as it ends; its
``ru_maxrss`` is no use here: Linux carries the parent's peak across
fork+exec, and ``RUSAGE_CHILDREN`` is the maximum over all children). The baseline is the same child stopping just before the
test (everything imported, the backend loaded, the store opened).

Expected: RSS above baseline ~ performance sample count x sample size,
whatever N is; about twice that in fact, because the rows the QSL copies
out of the memory-mapped store stay mapped, and those clean file-backed
pages count in RSS ("store pages in RSS MB": file-backed RSS at the end of
the run minus the baseline's; the kernel can drop them under pressure).

    .venv/bin/python -m benchmarks.memory [--quick] [--backend null|litert]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.harness_overhead import SHARED, median, table  # noqa: E402

LITERT_MODEL = SHARED / "models" / "mobilenet" / "mobilenet_v1_0.25_128_quant.tflite"
SHAPES = {"null": (224, 224, 3), "litert": (128, 128, 3)}


def write_store(path: Path, count: int, shape) -> None:
    """A uint8 store of ``count`` samples (row i filled with i % 251), written in chunks."""
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, *shape))
    for start in range(0, count, 256):
        stop = min(count, start + 256)
        data[start:stop] = (np.arange(start, stop) % 251).astype(np.uint8).reshape(-1, 1, 1, 1)
    data.flush()
    del data


def child(store_path: str, backend_name: str, perf_count: int, run: bool) -> int:
    """Body of the child process: open the store, run one Offline test (or not)."""
    import tempfile

    from backends import create
    from backends.base import BackendOptions
    from benchmarks.harness_overhead import ArrayDataset, config, run_ours
    from datasets.cache import SampleStore

    data = np.load(store_path, mmap_mode="r")
    store = SampleStore(data, Path(store_path))
    backend = create(backend_name, BackendOptions())
    info = backend.load(str(LITERT_MODEL) if backend_name == "litert" else None)
    if run:
        cfg = config("Offline", min_duration_ms=300, min_query_count=1, performance_sample_count=perf_count,
                     target_qps=20000 if backend_name == "null" else 500)
        with tempfile.TemporaryDirectory() as tmp:
            result = run_ours(cfg, backend, info, ArrayDataset(len(store), 1), store, Path(tmp))
        loaded = result.detail.get("effective_performance_sample_count")
        print(f"performance_sample_count={loaded}", flush=True)
    backend.close()
    print(f"vmhwm_kb={status_kb('VmHWM')} rssfile_kb={status_kb('RssFile')}", flush=True)
    return 0


def status_kb(key: str) -> int:
    """A kB figure of this process from /proc/self/status (VmHWM = peak RSS)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def peak_rss_mb(store_path: Path, backend: str, perf_count: int, run: bool) -> tuple[float, str, float]:
    """(peak RSS MB, LoadGen's performance sample count, file-backed RSS MB at the end)."""
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", str(store_path), backend, str(perf_count),
           "run" if run else "baseline"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    lines = dict(line.split("=", 1) for line in proc.stdout.split() if "=" in line)
    return (int(lines["vmhwm_kb"]) / 1024, lines.get("performance_sample_count", ""),
            int(lines["rssfile_kb"]) / 1024)


def measure(quick: bool = False, repeats: int | None = None, backend: str = "null") -> str:
    repeats = repeats or (1 if quick else 3)
    shape = SHAPES[backend]
    sample_mb = int(np.prod(shape)) / 2**20
    if quick:
        plan = [(256, 64), (1024, 64), (1024, 256)]
    else:
        plan = [(256, 256), (1024, 256), (4096, 256), (4096, 64), (4096, 1024)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for count in sorted({n for n, _ in plan}):
            write_store(Path(tmp) / f"store-{count}.npy", count, shape)
        for count, perf in plan:
            path = Path(tmp) / f"store-{count}.npy"
            base = median([peak_rss_mb(path, backend, perf, False)[0] for _ in range(repeats)])
            peaks = [peak_rss_mb(path, backend, perf, True) for _ in range(repeats)]
            peak = median([p[0] for p in peaks])
            file_rss = median([p[2] for p in peaks]) - median(
                [peak_rss_mb(path, backend, perf, False)[2] for _ in range(1)])
            rows.append([count, perf, count * sample_mb, perf * sample_mb, base, peak, peak - base,
                         (peak - base) / (perf * sample_mb), file_rss, int(peaks[0][1] or 0)])
    title = (f"Peak RSS of an Offline run ({backend} backend, uint8 {'x'.join(map(str, shape))} samples, "
             f"store memory-mapped; median of {repeats} child processes)")
    return table(title, ["samples N", "perf count", "store MB", "perf MB", "baseline MB", "peak MB",
                         "peak-base MB", "(peak-base)/perf MB", "store pages in RSS MB",
                         "LoadGen perf count"], rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller datasets, one repeat")
    p.add_argument("--repeats", type=int)
    p.add_argument("--backend", choices=sorted(SHAPES), default="null")
    p.add_argument("--child", nargs=4, metavar=("STORE", "BACKEND", "PERF_COUNT", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        store, backend, perf, mode = args.child
        return child(store, backend, int(perf), mode == "run")
    print(measure(args.quick, args.repeats, args.backend))
    return 0


if __name__ == "__main__":
    sys.exit(main())
