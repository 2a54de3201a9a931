"""LoadGen over the network: what the transport costs, on loopback.

Not a test: prints a table. Everything runs on this machine as separate
processes, the way a user runs it (``run.py serve`` nodes, ``run.py --nodes``
LoadGen node, and ``run.py`` locally for comparison):

* Offline samples/s over 1 and 2 nodes (each node ``--threads T``) against a
  local run with the same total threads (T and 2T);
* SingleStream p90 latency over one node against local, and the difference:
  the network's cost per query (gRPC round trip, both processes' Python).

Each configuration runs ``--repeats`` times, interleaved; the table gives the
median and the spread (min-max). On a small machine the nodes, the LoadGen
node and the local run share the same cores, so 2 nodes cannot beat local
here: on real hosts each node brings its own. ``--backend null`` (the default
second pass) measures the transport alone: the model answers at once.

    .venv/bin/python -m benchmarks.network [--quick] [--repeats N] [--threads T] [--skip-mobilenet]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MLPERF_EDGE_SHARED", ROOT.parent / "shared"))
MODEL = SHARED / "models" / "mobilenet" / "mobilenet_v1_1.0_224_quant.tflite"
DATA = SHARED / "data" / "imagenet-mini"
READY = re.compile(r"^serving .* on (\S+); boot id")


class Node:
    def __init__(self, args, cache):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "serve", "--listen", "127.0.0.1:0",
                                      "--no-progress", "--cache-dir", cache, *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.address, lines = None, []
        for line in self.proc.stdout:
            lines.append(line)
            match = READY.match(line.strip())
            if match:
                self.address = match.group(1)
                break
        if self.address is None:
            raise SystemExit("a node did not start:\n" + "".join(lines))
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # keep the pipe drained

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run(args, cache, output) -> dict:
    """One run.py run; LoadGen's detail log of its (last) test as a dict."""
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), *args, "--no-progress", "--cache-dir", cache,
                           "--output", output], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemExit("run.py %s failed:\n%s%s" % (" ".join(args), done.stdout, done.stderr))
    directory = next(line.split(":", 1)[1].strip() for line in done.stdout.splitlines()
                     if line.startswith("results   :"))
    detail = sorted(Path(directory).rglob("mlperf_log_detail.txt"))[-1]
    sys.path.insert(0, str(ROOT))
    from sut import logs

    return logs.read_detail(detail)


def spread(values, scale=1.0, digits=1):
    values = [v * scale for v in values]
    fmt = "%%.%df" % digits
    return "%s (%s-%s)" % (fmt % statistics.median(values), fmt % min(values), fmt % max(values))


def bench(label, model_args, threads, repeats, quick, cache, output):
    nodes = [Node([*model_args, "--threads", str(threads)], cache) for _ in range(2)]
    offline = ["--scenario", "Offline", "--quick", "--time", "1" if quick else "3"]
    single = ["--scenario", "SingleStream", "--quick", *([] if quick else ["--time", "2"])]
    configs = {
        "offline local %dT" % threads: [*model_args, *offline, "--threads", str(threads)],
        "offline 1 node x %dT" % threads: [*model_args, *offline, "--nodes", nodes[0].address],
        "offline local %dT" % (2 * threads): [*model_args, *offline, "--threads", str(2 * threads)],
        "offline 2 nodes x %dT" % threads: [*model_args, *offline, "--nodes", ",".join(n.address for n in nodes)],
        "singlestream local": [*model_args, *single, "--threads", str(threads)],
        "singlestream 1 node": [*model_args, *single, "--nodes", nodes[0].address],
    }
    got = {name: [] for name in configs}
    try:
        for _ in range(repeats):
            for name, args in configs.items():
                detail = run(args, cache, output)
                key = "result_samples_per_second" if name.startswith("offline") else "result_90.00_percentile_latency_ns"
                got[name].append(float(detail[key]))
    finally:
        for node in nodes:
            node.stop()
    rows = []
    for name in configs:
        if name.startswith("offline"):
            rows.append((name, spread(got[name]), "samples/s"))
        else:
            rows.append((name, spread(got[name], 1e-3, 0), "us p90"))
    o = lambda k: statistics.median(got[k])  # noqa: E731
    rows.append(("ratio 1 node / local %dT" % threads,
                 "%.2f" % (o("offline 1 node x %dT" % threads) / o("offline local %dT" % threads)), ""))
    rows.append(("ratio 2 nodes / local %dT" % (2 * threads),
                 "%.2f" % (o("offline 2 nodes x %dT" % threads) / o("offline local %dT" % (2 * threads))), ""))
    rows.append(("ratio 2 nodes / 1 node",
                 "%.2f" % (o("offline 2 nodes x %dT" % threads) / o("offline 1 node x %dT" % threads)), ""))
    rows.append(("network cost per query (p90 node - local)",
                 "%.0f" % ((o("singlestream 1 node") - o("singlestream local")) / 1e3), "us"))
    width = max(len(r[0]) for r in rows)
    print("\n%s (median (min-max) of %d runs)" % (label, repeats))
    for name, value, unit in rows:
        print("  %-*s  %-28s %s" % (width, name, value, unit))
    sys.stdout.flush()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one short pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="runtime threads per node (local runs: same total)")
    p.add_argument("--skip-mobilenet", action="store_true")
    p.add_argument("--skip-null", action="store_true")
    args = p.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    try:
        import grpc
    except ImportError:
        print("skipped: grpcio is not installed (pip install -e '.[network]')")
        return 0
    from importlib import metadata

    print("python %s, grpcio %s, mlcommons-loadgen %s, %d CPUs; all processes on this machine, over loopback" % (
        sys.version.split()[0], grpc.__version__, metadata.version("mlcommons-loadgen"), os.cpu_count()))
    with tempfile.TemporaryDirectory(prefix="bench-network-") as tmp:
        cache, output = os.path.join(tmp, "cache"), os.path.join(tmp, "results")
        if not DATA.exists():
            print("skipped: needs %s" % DATA)
            return 0
        if not args.skip_mobilenet:
            if MODEL.exists():
                try:
                    from ai_edge_litert import __version__ as litert
                except ImportError:
                    litert = "tflite-runtime/other"
                bench("MobileNet 1.0 224 quant, LiteRT %s, imagenet-mini" % litert,
                      ["--profile", "mobilenet_tflite", "--model", str(MODEL), "--dataset-path", str(DATA)],
                      args.threads, repeats, args.quick, cache, output)
            else:
                print("MobileNet skipped: needs %s" % MODEL)
        if not args.skip_null:
            bench("null backend (the transport alone), imagenet-mini inputs",
                  ["--backend", "null", "--dataset", "imagenet", "--dataset-path", str(DATA)],
                  args.threads, repeats, args.quick, cache, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
