"""Backend efficiency: our harness vs each CPU runtime called directly.

For every installed CPU runtime and each shared MobileNet file it can run,
with the same runtime threads and model instances on both sides:

* Offline samples/s through ``sut.runner.run_test`` vs the runtime's own best
  plain loop (one Python thread per instance calling the runtime on its own
  interpreter/session/request; OpenVINO with several instances: its
  ``AsyncInferQueue``), target ours/direct >= 0.95;
* SingleStream p90 through LoadGen vs the p90 of timing single calls to the
  runtime, target within 5%.

A third column, ``backend.predict`` called in a plain loop, separates the
backend wrapper's cost from the SUT's. For SingleStream a fourth, the runtime
called directly inside a bare LoadGen SUT (answering inline, no harness),
separates what any LoadGen SUT pays from what ours adds. A Python SUT leaves
tens of microseconds between two inferences (completing the query, LoadGen's
bookkeeping, issuing the next), where the timed loop leaves ~2 us, and a
runtime whose thread pool parks its workers sooner than that runs the next
inference slower: LiteRT's XNNPACK pool parks within ~30 us (a 30 us pause
between calls made the 0.25 MobileNet's p90 25-60% longer with 2 threads on 2
shared cores; no change with 1 thread), OpenVINO's after ~100-300 us; ONNX
Runtime's showed no effect up to 1 ms.

Inputs are random samples of the model's own input dtype/shape in a
``SampleStore`` (speed does not depend on image content). Each repeat
measures every side once, in alternating order (reversed every other
repeat, so a side is not always the one that follows a LoadGen run); the
ratio columns are medians of the per-repeat ratios, which a slow drift in
background load moves less than a ratio of medians.

    .venv/bin/python -m benchmarks.backend_efficiency [--quick] [--repeats N]
        [--runtime litert] [--config 2x1]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.harness_overhead import (SHARED, ArrayDataset, Run, config, median,  # noqa: E402
                                         quiet_loadgen, random_store, ratio, run_ours, table)
from sut.errors import HarnessError

log = logging.getLogger(__name__)

MOBILENET = SHARED / "models" / "mobilenet"
MODELS = {
    "litert": ["mobilenet_v1_1.0_224_quant.tflite", "mobilenet_v1_0.25_128_quant.tflite"],
    "onnxruntime": ["mobilenet_v1_1.0_224_quant_qdq_nchw.onnx"],
    "openvino": ["mobilenet_v1_1.0_224_quant.tflite", "mobilenet_v1_0.25_128_quant.tflite",
                 "openvino_ir/mobilenet_v1_0.25_128_quant.xml"],
    # no PyTorch MobileNet is shared: the KWS model as TorchScript, made by benchmarks/kws_pytorch.py
    "pytorch": ["kws_ref_model TorchScript"],
}
SAMPLES = 32


# --- the runtimes called directly ------------------------------------------------------
# Each maker returns a list (one per instance) of ``predict(x) -> output`` callables
# built the way the runtime's own examples do, with the harness's thread count.

def direct_litert(path: str, threads: int, instances: int):
    from ai_edge_litert.interpreter import Interpreter

    calls = []
    for _ in range(instances):
        kwargs = {"num_threads": threads} if threads > 0 else {}
        interp = Interpreter(model_path=path, **kwargs)
        interp.allocate_tensors()
        i_in, i_out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]

        def call(x, interp=interp, i_in=i_in, i_out=i_out):
            interp.set_tensor(i_in, x)
            interp.invoke()
            return interp.get_tensor(i_out)
        calls.append(call)
    return calls


def direct_onnxruntime(path: str, threads: int, instances: int):
    import onnxruntime as ort

    calls = []
    for _ in range(instances):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        feed, out = sess.get_inputs()[0].name, [sess.get_outputs()[0].name]
        calls.append(lambda x, sess=sess, feed=feed, out=out: sess.run(out, {feed: x})[0])
    return calls


def _openvino_compiled(path: str, threads: int, instances: int):
    import openvino as ov

    core = ov.Core()
    props = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads > 0:
        props["INFERENCE_NUM_THREADS"] = threads
    core.set_property("CPU", props)
    config = {"PERFORMANCE_HINT": "LATENCY" if instances == 1 else "THROUGHPUT"}
    if instances > 1:
        config["PERFORMANCE_HINT_NUM_REQUESTS"] = instances
    return ov, core.compile_model(core.read_model(path), "CPU", config)


def direct_openvino(path: str, threads: int, instances: int):
    """Sync infer requests fed the leanest public way: a Tensor sharing the sample's
    memory set on the request (``infer({0: x})`` spends ~20 us more in OpenVINO's
    Python input dispatcher, as much as the harness's whole per-sample cost)."""
    ov, compiled = _openvino_compiled(path, threads, instances)
    calls = []
    for _ in range(instances):
        request = compiled.create_infer_request()

        def call(x, request=request, tensor=ov.Tensor):
            request.set_input_tensor(tensor(x, shared_memory=True))
            request.infer(share_outputs=True)
            return request.get_output_tensor(0).data
        calls.append(call)
    return calls


def openvino_async_rate(path: str, threads: int, instances: int, rows: np.ndarray, seconds: float) -> float:
    """OpenVINO's own best throughput loop: an AsyncInferQueue of ``instances`` jobs."""
    ov, compiled = _openvino_compiled(path, threads, instances)
    queue = ov.AsyncInferQueue(compiled, instances)
    done, n = 0, len(rows)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        queue.start_async({0: rows[done % n:done % n + 1]}, share_inputs=True)
        done += 1
    queue.wait_all()
    return done / (time.perf_counter() - start)


def direct_pytorch(path: str, threads: int, instances: int):
    """The TorchScript module called under ``torch.inference_mode`` (thread-local, so entered
    per call), instances sharing the module as the backend's do."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    module = torch.jit.load(path)

    def call(x):
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()
    return [call] * instances


def model_path(runtime: str, model_file: str) -> str:
    """A shared model file, or (PyTorch) the KWS TorchScript converted and cached by benchmarks/kws_pytorch.py."""
    if runtime == "pytorch":  # converted in a subprocess: TensorFlow stays out of the timed process
        import subprocess

        proc = subprocess.run([sys.executable, "-m", "benchmarks.kws_pytorch", "convert"], capture_output=True,
                              text=True, cwd=ROOT, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmarks.kws_pytorch convert failed: {proc.stderr.strip()[-500:]}")
        return proc.stdout.strip().splitlines()[-1]
    return str(MOBILENET / model_file)


DIRECT = {"litert": direct_litert, "onnxruntime": direct_onnxruntime, "openvino": direct_openvino,
          "pytorch": direct_pytorch}


def loop_rate(calls, rows: np.ndarray, seconds: float) -> float:
    """Samples/s of one thread per callable, each looping over single-sample views."""
    counts = [0] * len(calls)
    n = len(rows)
    stop = time.perf_counter() + seconds

    def work(k, call):
        i = k
        while time.perf_counter() < stop:
            call(rows[i % n:i % n + 1])
            i += 1
        counts[k] = i - k

    for call in calls:
        call(rows[:1])  # warm
    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(k, c)) for k, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def loadgen_direct_p90(call, rows: np.ndarray, seconds: float, workdir: Path) -> float | None:
    """p90 seconds of SingleStream through a bare LoadGen SUT that calls the runtime inline.

    What LoadGen itself adds to the runtime (its bookkeeping, and the gap it
    leaves between queries): the reference for our harness's own cost. The
    response is the runtime's raw output, not postprocessed.
    """
    import mlperf_loadgen as lg

    from sut import logs
    from sut import settings as settings_mod

    singles = [rows[i:i + 1] for i in range(len(rows))]
    response, complete = lg.QuerySampleResponse, lg.QuerySamplesComplete

    def issue(ids, indices):
        for sample_id, index in zip(ids, indices):
            out = call(singles[index])
            complete([response(sample_id, out.ctypes.data, out.nbytes)])

    call(singles[0])  # warm
    cfg = config("SingleStream", min_duration_ms=int(seconds * 1000), min_query_count=64,
                 target_latency_ms=expected_latency_ms(call, rows))
    test_settings = settings_mod.build(cfg, "performance", None)
    test_settings.performance_sample_count_override = len(rows)
    outdir = Path(tempfile.mkdtemp(prefix="lg-direct-", dir=workdir))
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(outdir)
    log_settings.log_output.copy_summary_to_stdout = False
    sut = lg.ConstructFastSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(len(rows), len(rows), lambda indices: None, lambda indices: None)
    with quiet_loadgen():
        lg.StartTestWithLogSettings(sut, qsl, test_settings, log_settings, str(outdir / "audit.config"))
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    run = Run("SingleStream", logs.read_detail(outdir / "mlperf_log_detail.txt"))
    run.check()
    return run.p90_us / 1e6 if run.p90_us else None


def expected_latency_ms(call, rows: np.ndarray, calls: int = 8) -> float:
    """Half the fastest of a few calls: LoadGen then generates more SingleStream
    queries than the run needs (too few ends it early with an error)."""
    times = []
    for i in range(calls):
        x = rows[i % len(rows):i % len(rows) + 1]
        t0 = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3 * 0.5


def latency_p90(call, rows: np.ndarray, seconds: float, min_calls: int = 64) -> float:
    """p90 seconds of single calls (the runtime's own single-sample latency)."""
    n, times = len(rows), []
    call(rows[:1])
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < seconds:
        x = rows[len(times) % n:len(times) % n + 1]
        t0 = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 90))


# --- one runtime x model x config ----------------------------------------------------------

@dataclasses.dataclass
class Row:
    runtime: str
    model: str
    config: str
    direct_rate: float | None = None
    predict_rate: float | None = None
    ours_rate: float | None = None
    rate_ratio: float | None = None        # median of per-repeat ours/direct
    direct_p90: float | None = None
    lg_direct_p90: float | None = None
    ours_p90: float | None = None
    p90_ratio: float | None = None         # median of per-repeat ours/direct
    p90_lg_ratio: float | None = None      # median of per-repeat ours/(LoadGen + direct)
    note: str = ""


class Sides:
    """Every side's figure per repeat, measured in alternating order."""

    def __init__(self):
        self.values: dict[str, list] = {}

    def measure(self, steps: dict, repeat: int) -> None:
        """Run ``steps`` (name -> fn) in order, reversed on odd repeats; record each result."""
        names = list(steps) if repeat % 2 == 0 else list(reversed(steps))
        for name in names:
            self.values.setdefault(name, []).append(steps[name]())

    def median(self, name: str):
        return median(self.values.get(name, []))

    def paired_ratio(self, top: str, bottom: str):
        """Median of per-repeat ratios (None where either side is missing)."""
        return median([ratio(a, b) for a, b in zip(self.values[top], self.values[bottom])])


def measure_one(runtime: str, model_file: str, threads: int, instances: int, seconds: float, repeats: int,
                workdir: Path) -> Row:
    import backends
    from backends.base import BackendOptions
    from sut import runner

    path = model_path(runtime, model_file)
    row = Row(runtime, model_file, f"{threads}x{instances}")
    backend = backends.create(runtime, BackendOptions(threads=threads, instances=instances))
    with backend:
        info = backend.load(path)
        store = random_store(info.input, SAMPLES)
        rows = np.ascontiguousarray(store.data)
        dataset = ArrayDataset(SAMPLES, label_offset=1)
        direct = DIRECT[runtime](path, threads, instances)
        runner.warm_up(backend, info, dataset, store, 8, timeout_s=60)
        predict_calls = [lambda x, k=k: backend.predict(x, k) for k in range(info.instances)]
        sides, invalid = Sides(), []

        def direct_rate():
            if runtime == "openvino" and instances > 1:
                return openvino_async_rate(path, threads, instances, rows, seconds)
            return loop_rate(direct, rows, seconds)

        def ours_rate():
            # LoadGen expects the direct loop's rate (measured first or last in this repeat)
            expected = (sides.values.get("direct/s") or [None])[-1] or loop_rate(direct, rows, 0.2)
            cfg = config("Offline", min_duration_ms=int(seconds * 1000), min_query_count=1,
                         target_qps=expected, threads=threads, instances=instances)
            return run_ours(cfg, backend, info, dataset, store, workdir).samples_per_s

        def ours_p90():
            cfg = config("SingleStream", min_duration_ms=int(seconds * 1000), min_query_count=64,
                         target_latency_ms=expected_latency_ms(direct[0], rows),
                         threads=threads, instances=instances)
            run = run_ours(cfg, backend, info, dataset, store, workdir)
            if not run.valid:
                invalid.append(run)
            return run.p90_us / 1e6 if run.p90_us else None

        for repeat in range(repeats):
            sides.measure({"direct/s": direct_rate, "predict/s": lambda: loop_rate(predict_calls, rows, seconds),
                           "ours/s": ours_rate}, repeat)
            sides.measure({"direct p90": lambda: latency_p90(direct[0], rows, seconds),
                           "lg+direct p90": lambda: loadgen_direct_p90(direct[0], rows, seconds, workdir),
                           "ours p90": ours_p90}, repeat)
        if invalid:
            row.note = "SingleStream INVALID in a run"
    row.direct_rate, row.predict_rate, row.ours_rate = (sides.median(k) for k in ("direct/s", "predict/s", "ours/s"))
    row.rate_ratio = sides.paired_ratio("ours/s", "direct/s")
    row.direct_p90, row.lg_direct_p90, row.ours_p90 = (
        sides.median(k) for k in ("direct p90", "lg+direct p90", "ours p90"))
    row.p90_ratio = sides.paired_ratio("ours p90", "direct p90")
    row.p90_lg_ratio = sides.paired_ratio("ours p90", "lg+direct p90")
    return row


def installed(runtime: str) -> str | None:
    """None when usable, else why not."""
    import backends
    from backends.base import BackendOptions
    try:
        backends.create(runtime, BackendOptions())
    except (HarnessError, ImportError) as exc:
        return str(exc).splitlines()[0]
    return None


def measure(quick: bool = False, repeats: int | None = None, runtimes=None, configs=None) -> str:
    seconds = 1.0 if quick else 1.5
    repeats = repeats or (1 if quick else 3)
    configs = configs or (["2x1"] if quick else ["2x1", "1x2"])
    runtimes = runtimes or list(MODELS)
    out_rows, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="bench-backend-") as tmp:
        for runtime in runtimes:
            why = installed(runtime)
            if why:
                skipped.append(f"{runtime}: {why}")
                continue
            for model_file in MODELS[runtime]:
                if runtime != "pytorch" and not (MOBILENET / model_file).exists():
                    skipped.append(f"{runtime} {model_file}: not in {MOBILENET}")
                    continue
                for cfg in configs:
                    threads, instances = (int(v) for v in cfg.split("x"))
                    r = measure_one(runtime, model_file, threads, instances, seconds, repeats, Path(tmp))
                    out_rows.append([
                        r.runtime, r.model.replace("mobilenet_v1_", "").replace("openvino_ir/", "IR "),
                        r.config, r.direct_rate, r.predict_rate, r.ours_rate, r.rate_ratio,
                        *(None if v is None else v * 1e3 for v in (r.direct_p90, r.lg_direct_p90, r.ours_p90)),
                        r.p90_ratio, r.p90_lg_ratio, r.note])
    title = (f"Backend efficiency: ours vs the runtime called directly, random inputs "
             f"(median of {repeats}; ratios: median of per-repeat ratios; threads x instances; "
             f"2 shared cores, noisy)\n"
             "targets: Offline ours/direct >= 0.95; SingleStream p90 ours/direct <= 1.05 "
             "(lg+direct: the runtime inside a bare LoadGen SUT)")
    text = table(title, ["runtime", "model", "thr x inst", "direct/s", "predict/s", "ours/s", "ours/direct",
                         "direct p90 ms", "lg+direct p90 ms", "ours p90 ms", "ours/direct", "ours/lg+direct",
                         "note"], out_rows)
    if skipped:
        text += "not measured: " + "; ".join(skipped) + "\n"
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one repeat, one config (2 threads x 1 instance)")
    p.add_argument("--repeats", type=int)
    p.add_argument("--runtime", action="append", choices=list(MODELS))
    p.add_argument("--config", action="append", help="THREADSxINSTANCES, e.g. 2x1 (repeatable)")
    args = p.parse_args(argv)
    print(measure(args.quick, args.repeats, args.runtime, args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
