"""The PyTorch backend's cost per call: ``backend.predict`` vs the same module in a plain loop.

    .venv/bin/python -m benchmarks.pytorch_overhead [--threads 1] [--calls 4000] [--model FILE.pt]

Two TorchScript models on the CPU, each with the same torch threads on both sides:
the keyword-spotting model (``benchmarks/kws_pytorch.py``, converted in a
subprocess so TensorFlow stays out of this process) and a tiny linear model
(490 -> 12) whose inference is short enough to show the wrapper's own cost.
The direct side is ``module(torch.from_numpy(x)).numpy()`` under
``torch.inference_mode``. Calls are paired (direct and predict back to back,
order alternating), so background load hits both sides alike; the figure is
the median of the per-pair differences, with its quartiles. On a shared,
loaded machine the quartiles of a whole model's pairs are wide; the median
difference is the number to read. ``benchmarks/backend_efficiency.py
--runtime pytorch`` puts the backend's Offline and SingleStream figures next to
the other runtimes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def kws_model() -> str:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.kws_pytorch", "convert"], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"benchmarks.kws_pytorch convert failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip().splitlines()[-1]


def tiny_model(folder: Path) -> str:
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(490, 12)).eval()
    path = folder / "tiny.pt"
    torch.jit.save(torch.jit.trace(module, torch.zeros(1, 49, 10, 1)), str(path),
                   _extra_files={"mlperf_edge.json": json.dumps({"input_shape": [49, 10, 1]})})
    return str(path)


def paired(path: str, threads: int, calls: int) -> dict:
    """Per-call seconds of the direct loop and of backend.predict, measured in pairs."""
    import torch

    import backends
    from backends.base import BackendOptions

    backend = backends.create("pytorch", BackendOptions(threads=threads))
    backend.load(path)
    module = torch.jit.load(path)

    def direct(x):
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    rows = np.random.default_rng(0).normal(0, 20, (32, 1, 49, 10, 1)).astype(np.float32)
    for call in (direct, backend.predict):
        for x in rows:
            call(x)
    d, p = np.empty(calls), np.empty(calls)
    for i in range(calls):
        x = rows[i % len(rows)]
        if i % 2:
            t0 = time.perf_counter(); direct(x); t1 = time.perf_counter(); backend.predict(x); t2 = time.perf_counter()  # noqa: E702
            d[i], p[i] = t1 - t0, t2 - t1
        else:
            t0 = time.perf_counter(); backend.predict(x); t1 = time.perf_counter(); direct(x); t2 = time.perf_counter()  # noqa: E702
            p[i], d[i] = t1 - t0, t2 - t1
    backend.close()
    diff = (p - d) * 1e6
    return {"direct_us": float(np.median(d) * 1e6), "predict_us": float(np.median(p) * 1e6),
            "diff_us": float(np.median(diff)), "diff_q": (float(np.percentile(diff, 25)), float(np.percentile(diff, 75))),
            "torch": torch.__version__}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--calls", type=int, default=4000)
    ap.add_argument("--model", help="a TorchScript file with its input description (default: the KWS model)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        models = {"kws TorchScript": args.model or kws_model(), "tiny linear 490->12": tiny_model(Path(tmp))}
        print(f"PyTorch backend overhead per call, {args.threads} thread(s), {args.calls} paired calls, CPU")
        print(f"{'model':<22} {'direct us':>10} {'predict us':>11} {'predict-direct us':>18}  (quartiles)")
        for name, path in models.items():
            r = paired(path, args.threads, args.calls)
            print(f"{name:<22} {r['direct_us']:>10.1f} {r['predict_us']:>11.1f} {r['diff_us']:>18.1f}  "
                  f"({r['diff_q'][0]:.1f} .. {r['diff_q'][1]:.1f})")
        print(f"torch {r['torch']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
