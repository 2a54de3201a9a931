"""The LoadGen node's run: ``run.py --nodes HOST:PORT,... [the options of a local run]``.

Like ``sut.session.execute`` but the SUT is LoadGen's query dispatch library
(``lg.ConstructQDL``) in front of remote nodes: this host scans the dataset
(its labels score the accuracy log exactly as a local run does) and holds no
preprocessed samples; the QSL's load/unload have nothing to do here, each
node keeps its whole preprocessed copy. Before any test every node must
report the dataset fingerprint computed here and the same model fingerprint
(that of ``--model`` when this host has the file).
"""

from __future__ import annotations

import logging
import os
import platform
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

import mlperf_loadgen as lg
import numpy as np

from profiles import Config
from sut import runner, session, signals
from sut import settings as settings_mod
from sut.completion import Completer, Watchdog
from sut.errors import BackendFailure, ConfigError, HarnessError, Interrupted
from sut.network import dispatch, fingerprint
from sut.results import RunDirectory
from sut.scenarios import consecutive_runs


#: what ``run.py --nodes`` prints and exits with: the same as a local run's
Outcome = session.Outcome


log = logging.getLogger(__name__)

#: single-sample round trips timed per node before the test (network + node)
PROBE_CALLS = 20


def connect(addresses: list, token, timeout_s: float = dispatch.CONNECT_TIMEOUT_S) -> list:
    nodes = []
    try:
        for address in addresses:
            if address in (n.address for n in nodes):
                raise ConfigError("--nodes names %s twice" % address)
            nodes.append(dispatch.RemoteNode(address, token, timeout_s))
    except BaseException:
        for node in nodes:
            node.close()
        raise
    return nodes


def check_identity(nodes: list, dataset, model) -> dict:
    """ConfigError unless every node has this host's dataset and one model; returns the fingerprints."""
    data_fp = fingerprint.dataset_fingerprint(dataset)
    local_model = fingerprint.model_fingerprint(model) if model else None
    if local_model and local_model.startswith("missing:"):
        local_model = None  # this host need not hold the model file
    first = nodes[0]
    for node in nodes:
        got = node.info["dataset"]
        if got.get("fingerprint") != data_fp or got.get("count") != len(dataset):
            raise ConfigError("node %s holds another dataset (%s samples, fingerprint %s) than this host's "
                              "%s (%d samples, fingerprint %s): give both the same --dataset-path contents "
                              "and --count" % (node.address, got.get("count"), str(got.get("fingerprint"))[:12],
                                               dataset.path, len(dataset), data_fp[:12]))
        want = local_model or first.info["model_fingerprint"]
        if node.info["model_fingerprint"] != want:
            other = "--model %s here" % model if local_model else "node %s" % first.address
            raise ConfigError("node %s runs another model (%s, sha256 %s) than %s (sha256 %s): serve the same "
                              "model file everywhere" % (node.address, node.info.get("model_path"),
                                                         node.info["model_fingerprint"][:12], other, want[:12]))
        if node.width != first.width:
            raise ConfigError("node %s answers rows of %d values, node %s of %d: serve the same profile"
                              % (node.address, node.width, first.address, first.width))
    return {"dataset": data_fp, "model": nodes[0].info["model_fingerprint"]}


def probe(nodes: list, timeout_s: float) -> settings_mod.Estimate:
    """Time single-sample round trips and add up the nodes' throughput: LoadGen's expectations."""
    latencies = []
    for node in nodes:
        times = []
        for i in range(PROBE_CALLS):
            t0 = time.perf_counter()
            try:
                node.predict([i % node.count], timeout_s)
            except Exception as exc:
                raise BackendFailure("node %s failed before the test: %s"
                                     % (node.address, dispatch.describe_failure(exc, timeout_s))) from None
            times.append(time.perf_counter() - t0)
        node.info["round_trip_s"] = statistics.median(times)
        latencies.append(statistics.median(times))
    samples_per_s = sum(float(n.info["speed"]["samples_per_s"]) for n in nodes)
    latency = min(latencies)
    return settings_mod.Estimate(latency_s=latency, query_latency_s=latency, samples_per_s=samples_per_s)


class NetworkSUT:
    """LoadGen's QDL callbacks: queries become work items for the :class:`~dispatch.Dispatcher`."""

    def __init__(self, dispatcher: dispatch.Dispatcher, scenario: str, name: str):
        self.dispatcher, self.scenario, self.name = dispatcher, scenario, name

    def issue(self, samples) -> None:
        try:
            ids = [s.id for s in samples]
            indices = [s.index for s in samples]
            n = len(ids)
            item = n
            if self.scenario == "Offline" and n > 1:
                # items of consecutive indices: a node passes those to its backend as views of its store
                order = consecutive_runs(np.asarray(indices, dtype=np.int64))
                ids, indices = [ids[k] for k in order], [indices[k] for k in order]
                item = self.dispatcher.item_size(n)
            for start in range(0, n, item):
                self.dispatcher.submit(ids[start:start + item], indices[start:start + item])
        except BaseException as exc:  # an exception inside LoadGen's callback breaks LoadGen
            self.dispatcher.completer.fail(exc)

    def flush(self) -> None:
        pass

    def get_name(self) -> str:
        return self.name


def run_test(cfg: Config, mode: str, nodes: list, dataset, estimate, outdir: Path, on_failure: str):
    """One LoadGen test over the nodes; a ``runner.TestResult`` with the dispatch record in ``detail``."""
    result = runner.TestResult(cfg.scenario, mode, outdir)
    test_settings = settings_mod.build(cfg, mode, estimate)
    count = len(dataset)
    perf_count = min(test_settings.performance_sample_count_override or count, count)
    test_settings.performance_sample_count_override = perf_count
    completer = Completer()
    live = [n for n in nodes if not n.dead]
    dispatcher = dispatch.Dispatcher(live, completer, on_failure, cfg.sample_timeout_s)
    name = "network SUT: " + ", ".join("%s (%s)" % (n.address, n.info["host"]["name"]) for n in live)
    sut = NetworkSUT(dispatcher, cfg.scenario, name)
    lg_qdl = lg.ConstructQDL(sut.issue, sut.flush, sut.get_name)
    lg_qsl = lg.ConstructQSL(count, perf_count, _nothing, _nothing)
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(outdir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = cfg.trace
    audit = str(outdir / "audit.config")
    thread = threading.Thread(target=lg.StartTestWithLogSettings,
                              args=(lg_qdl, lg_qsl, test_settings, log_settings, audit), name="loadgen", daemon=True)
    # the nodes' calls time out after --sample-timeout and are re-sent; this
    # watchdog catches what that cannot (every node stuck, a lost item)
    interrupted = None
    # Ctrl-C/SIGTERM while LoadGen runs is a request (sut.signals): every sample
    # is completed empty so that LoadGen ends, then the run stops
    with signals.deferred(), Watchdog(completer, 2 * cfg.sample_timeout_s + 1):
        thread.start()
        failed_at = None
        while thread.is_alive():
            try:
                thread.join(0.05)
            except KeyboardInterrupt:  # no handler of sut.signals installed
                interrupted = signal.SIGINT
            if interrupted is None and signals.requested() is not None:
                interrupted = signals.requested()
            if interrupted is not None and not completer.failed.is_set():
                completer.fail(Interrupted(interrupted))
            if completer.failed.is_set():
                failed_at = failed_at or time.monotonic()
                if time.monotonic() - failed_at > runner.FAILURE_GRACE_S:
                    result.hung = True
                    break
    if interrupted is not None and result.hung:  # LoadGen still runs on its thread: no normal exit
        print("error: interrupted by signal %d; LoadGen did not finish" % interrupted, file=sys.stderr, flush=True)
        os._exit(128 + interrupted)
    result.detail = {"dispatch": {"redispatched_samples": dispatcher.redispatched, "events": dispatcher.events,
                                  "nodes": [n.record() for n in nodes]}}
    if completer.error is not None:
        result.error = runner._one_line(completer.error)
    if result.hung:
        result.error = (result.error or "run failed") + "; LoadGen did not finish, process must exit"
        return result
    dispatcher.close()
    lg.DestroyQSL(lg_qsl)
    lg.DestroyQDL(lg_qdl)
    if interrupted is not None:
        raise Interrupted(interrupted)
    return runner.read_back(result, cfg, dataset, count, outdir)


def _nothing(indices) -> None:
    """The QSL's load/unload: the samples live on the nodes."""


def execute(cfg: Config, addresses: list, token, on_failure: str = "redispatch", echo=print) -> Outcome:
    modes = ["accuracy", "performance"] if cfg.mode == "both" else [cfg.mode]
    dataset, model = session.open_dataset(cfg)
    nodes = connect(addresses, token, min(dispatch.CONNECT_TIMEOUT_S, cfg.sample_timeout_s))
    try:
        fingerprints = check_identity(nodes, dataset, model)
        estimate = probe(nodes, cfg.sample_timeout_s)
        return _run(cfg, modes, nodes, dataset, model, estimate, fingerprints, on_failure, echo)
    finally:
        for node in nodes:
            node.close()


def _run(cfg, modes, nodes, dataset, model, estimate, fingerprints, on_failure, echo):
    run_dir = RunDirectory(cfg.output, "%s-%s-%dnodes" % (cfg.profile or cfg.model_name, cfg.scenario, len(nodes)))
    record = {"config": cfg.to_dict(), "model_path": model, "python": sys.version.split()[0],
              "platform": platform.platform(), "response_dtype": "float32",
              "loadgen_node": {"host": platform.node(), "machine": platform.machine()},
              "number_of_nodes": len(nodes), "on_node_failure": on_failure, "fingerprints": fingerprints,
              "warm_up": {"latency_s": estimate.latency_s, "samples_per_s": estimate.samples_per_s},
              "backend": nodes[0].info.get("backend"), "model": nodes[0].info.get("model")}
    system = cfg.system or "%s-%dnodes-%s" % (nodes[0].info["host"].get("machine") or "cpu", len(nodes), cfg.backend)
    tests = []
    try:
        for mode in modes:
            if all(n.dead for n in nodes):
                break
            outdir = run_dir.test_dir(system, cfg.model_name, cfg.scenario, mode)
            echo("running %s %s test (%d samples) on %d node(s) ..." % (
                cfg.scenario, mode, len(dataset), sum(not n.dead for n in nodes)))
            result = run_test(cfg, mode, nodes, dataset, estimate, outdir, on_failure)
            tests.append(result)
            if not result.ok:
                break
    except HarnessError as exc:
        record["error"] = str(exc)
        run_dir.write_json("config.json", record)
        run_dir.write_text("summary.txt", "FAILED: %s\n" % exc)
        run_dir.finish(ok=False, state="interrupted" if isinstance(exc, Interrupted) else None)
        raise
    record["nodes"] = [n.record() for n in nodes]
    record["results"] = [_test_record(t) for t in tests]
    outcome = Outcome(run_dir.path, tests, "")
    run_dir.write_json("config.json", record)
    if outcome.hung:  # LoadGen still owns files in the directory: leave it as it is
        outcome.summary = summarize(cfg, tests, run_dir.path, record, nodes)
        run_dir.write_text("summary.txt", outcome.summary)
        return outcome
    final = run_dir.finish(ok=outcome.ok)
    outcome.directory = final
    outcome.summary = summarize(cfg, tests, final, record, nodes)
    (final / "summary.txt").write_text(outcome.summary)
    return outcome


def _test_record(t) -> dict:
    return {"scenario": t.scenario, "mode": t.mode, "directory": str(t.directory), "validity": t.validity,
            "metric": t.metric, "reasons": t.reasons, "error": t.error,
            "accuracy": t.accuracy.line() if t.accuracy else None, "dispatch": t.detail.get("dispatch")}


def summarize(cfg: Config, tests: list, directory: Path, record: dict, nodes: list) -> str:
    """The readable end of a run: the lines of a local run's summary, then one per node."""
    backend = record.get("backend") or {}
    lines = ["profile   : %s" % (cfg.profile or "-"),
             "backend   : %s   model: %s" % (cfg.backend, cfg.model or "(dataset default)")]
    if backend.get("runtime"):
        lines.append("runtime   : %s (on the nodes)" % backend["runtime"])
    lines += ["dataset   : %s %s (%s samples)" % (cfg.dataset, cfg.dataset_path or "", cfg.count or "all"),
              "scenario  : %s%s" % (cfg.scenario, "   (quick: not for submission)" if cfg.quick else "")]
    for t in tests:
        if t.error:
            lines.append("%-10s: FAILED - %s" % (t.mode, t.error))
        elif t.mode == "accuracy":
            lines.append("accuracy  : %s" % t.accuracy.line())
        else:
            metric = "%s = %s" % t.metric if t.metric else "no metric"
            lines.append("result    : %s   %s" % (t.validity, metric))
            lines += ["            why: %s" % r for r in t.reasons]
    lines.append("nodes     : %d" % len(nodes))
    for node in nodes:
        state = "FAILED (%s)" % node.reason if node.dead else "ok"
        lines.append("  %-22s %s, %d samples in %d requests, round trip %.0f us: %s" % (
            node.address, node.info["host"]["name"], node.samples, node.requests,
            node.info.get("round_trip_s", 0) * 1e6, state))
    moved = sum((t.detail.get("dispatch") or {}).get("redispatched_samples", 0) for t in tests)
    if moved:
        lines.append("  %d sample(s) re-sent to other nodes after a node failed" % moved)
    lines.append("results   : %s" % directory)
    return "\n".join(lines) + "\n"
