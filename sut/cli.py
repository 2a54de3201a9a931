"""The command line: ``python run.py --profile NAME [options]``."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path

import backends
import datasets
import profiles
from sut import console, signals
from sut.errors import (INTERNAL_ERROR, BackendUnavailable, ConfigError, DatasetError, HarnessError, Interrupted,
                        ResultsError, one_line)
from sut.network import cli as network_cli
from sut.results import inside

log = logging.getLogger(__name__)

EPILOG = """\
examples:
  python run.py                                   # the demo: no downloads, under a minute
  python run.py --profile mobilenet_tflite --model mobilenet_v1_1.0_224_quant.tflite \\
                --dataset-path imagenet/ --accuracy
  python run.py --profile mobilenet_tflite --model m.tflite --dataset-path imagenet/ \\
                --scenario Offline --quick
  python run.py --profile demo --backend null     # measure the harness alone

Settings are merged: built-in defaults -> profile -> these options; LoadGen
settings: built-in mlperf.conf -> --user-conf -> these options. Each run
writes a new directory under --output (never overwriting an earlier one):
<run>/config.json, summary.txt and <system>/<model>/<Scenario>/{performance/run_1,accuracy}.
Exit codes: 0 ok; 1 internal error (a bug: traceback in error.log; also
problems found by --check-submission/--submission); 2 bad option; 3 model;
4 dataset; 5 runtime/device unavailable; 6 backend failed during the run;
7 results cannot be written whole (disk full, read-only, a LoadGen log cut
short); 130 Ctrl-C, 143 SIGTERM (the run stops cleanly: <run>.interrupted).
A run's directory is <run>.partial while it runs, then <run> (complete),
<run>.failed or <run>.interrupted; a .partial whose process died is renamed
<run>.abandoned by the next run. -v prints tracebacks on the terminal.
"""


def parser() -> argparse.ArgumentParser:
    from sut import cli_reference  # the MLPerf reference harness's flags; no prefix matching

    p = cli_reference.Parser(
        prog="run.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Benchmark a model with MLPerf LoadGen on a CPU or an edge accelerator.")
    p.add_argument("--profile", default="demo", type=cli_reference.profile_name,
                   help="profile name or .toml file (default: demo); see --list-profiles")
    p.add_argument("--list-profiles", action="store_true", help="list profiles, backends, datasets and exit")
    p.add_argument("--show-config", action="store_true", help="print the resolved configuration and exit")
    what = p.add_argument_group("what to run")
    what.add_argument("--backend", type=cli_reference.backend_name,
                      help="runtime: null, litert, onnxruntime, openvino, edgetpu, tensorrt, tensorflow, "
                           "or a plugin module:Class")
    what.add_argument("--model", help="model file or directory")
    what.add_argument("--dataset", type=cli_reference.dataset_name,
                      help="dataset family (imagenet, speech_commands, synthetic)")
    what.add_argument("--dataset-path", help="dataset folder (ImageNet: images + val_map.txt)")
    what.add_argument("--count", type=int, help="use only the first N samples")
    how = p.add_argument_group("how LoadGen drives it")
    how.add_argument("--scenario", choices=profiles.SCENARIOS)
    how.add_argument("--accuracy", action="store_true", help="accuracy mode only (score every sample)")
    how.add_argument("--mode", choices=profiles.MODES, help="performance, accuracy or both")
    how.add_argument("--samples-per-query", type=int, help="MultiStream samples per query (LoadGen default 8)")
    how.add_argument("--user-conf", help="LoadGen user.conf layered over the built-in mlperf.conf")
    how.add_argument("--time", type=float, dest="time_s",
                     help="run each performance test for N seconds: LoadGen's min and max duration, as the "
                          "reference harness's --time (it stops issuing at N s; the result is INVALID if the "
                          "min query count or early stopping's count was not reached by then; Offline: one "
                          "query sized for N s at the expected rate, min query count 1 unless given)")
    how.add_argument("--min-duration", type=int, dest="min_duration_ms", help="minimum duration in ms")
    how.add_argument("--min-query-count", type=int)
    how.add_argument("--max-query-count", type=int)
    how.add_argument("--performance-sample-count", type=int)
    how.add_argument("--target-qps", type=float, help="Offline expected / Server target samples per second")
    how.add_argument("--target-latency-ms", type=float, help="SingleStream/MultiStream expected latency, "
                     "Server latency bound")
    how.add_argument("--server-batch-timeout-ms", type=float, dest="server_batch_timeout_ms",
                     help="Server: how long a worker waits for a batch to fill (default 0: it batches "
                          "what is already queued, never waits)")
    how.add_argument("--quick", action="store_true", default=None,
                     help="short runs sized from the warm-up: about a second of LoadGen per test, at most ~10 s, "
                          "VALID where early stopping's query count fits (MultiStream p99 needs 662 queries: on "
                          "a slow model the run is cut and the summary says it is INVALID by design); "
                          "not for submission")
    be = p.add_argument_group("backend")
    be.add_argument("--threads", type=int, help="runtime threads per model instance (0 = runtime default)")
    be.add_argument("--instances", type=int, help="model instances run in parallel (0 = backend's choice)")
    be.add_argument("--max-batchsize", type=int, dest="max_batch_size", help="largest batch per inference")
    be.add_argument("--device", help="device string, e.g. usb:0, pci:0, CPU, GPU, MYRIAD")
    be.add_argument("--precision", help="fp32, fp16, bf16, amp or int8; a comma list (fp32,fp16,int8) runs each "
                    "and prints a comparison table")
    be.add_argument("--backend-option", action="append", metavar="KEY=VALUE", default=[],
                    help="backend-specific option (repeatable); VALUE is parsed as JSON when it can be")
    sub = p.add_argument_group("submission (docs/submission.rst)")
    sub.add_argument("--submission", choices=("open", "closed"), metavar="DIVISION",
                     help="run everything a submission needs (accuracy, performance, TEST01/TEST04 where "
                     "required, for every required scenario) and write the MLPerf tree; DIVISION: open or closed")
    sub.add_argument("--submitter", help="submitter name in the tree (required with --submission)")
    sub.add_argument("--division", choices=("open", "closed"), help="same as --submission DIVISION")
    sub.add_argument("--system-desc", help="JSON file completing the detected system description")
    sub.add_argument("--scenarios", help="comma list of scenarios for --submission (default: what the "
                     "division requires)")
    # --compliance / --no-compliance (argparse.BooleanOptionalAction is Python 3.9+)
    sub.add_argument("--compliance", action="store_true", default=None,
                     help="run TEST01/TEST04 (default: on in closed, off in open)")
    sub.add_argument("--no-compliance", action="store_false", dest="compliance", help="skip TEST01/TEST04")
    sub.add_argument("--check-submission", metavar="DIR", help="check a submission tree and list every problem")
    out = p.add_argument_group("output")
    out.add_argument("--output", help="results root (default: results)")
    out.add_argument("--system", help="system id used in the results tree")
    out.add_argument("--cache-dir", help="preprocessing cache (default ~/.cache/mlperf-edge; 'none' = memory)")
    out.add_argument("--preprocess-workers", type=int,
                     help="preprocessing workers: threads when OpenCV is installed, else processes "
                          "(0 = one per usable core)")
    out.add_argument("--sample-timeout", type=float, dest="sample_timeout_s",
                     help="fail the run when one backend call (one model batch) has not returned for this many "
                          "seconds, or nothing completes that long (default 60); a slow device that keeps "
                          "answering is never failed")
    out.add_argument("--trace", action="store_true", default=None, help="write LoadGen's trace log (slow)")
    out.add_argument("--no-progress", action="store_false", dest="progress", default=None)
    out.add_argument("--report", action="store_true", default=None,
                     help="write report.html with plots into the run directory (the default, except for "
                          "--quick runs, whose report has tables only)")
    out.add_argument("--no-report", action="store_false", dest="report", default=None,
                     help="no report.html or plots (saves seconds per run; per-query latencies are still saved)")
    out.add_argument("-v", "--verbose", action="store_true")
    cli_reference.add_options(p)
    net = p.add_argument_group("network (LoadGen here, SUT nodes started with: run.py serve --listen HOST:PORT)")
    net.add_argument("--nodes", help="comma list of SUT nodes HOST:PORT[,HOST:PORT...] to drive from this LoadGen node")
    net.add_argument("--token-file", help="shared secret (a file only its owner may read), the same on every node")
    net.add_argument("--on-node-failure", choices=("redispatch", "fail"), default="redispatch",
                     help="when a node dies, hangs past --sample-timeout or answers garbage: re-send its "
                          "samples to the other nodes (default) or fail the run naming it")
    tuning = p.add_argument_group("tuning (sut/tune.py)")
    tuning.add_argument("--tune", action="store_true",
                        help="Offline: try threads per instance x instances x batch size in short LoadGen runs, "
                             "repeat the best against the default, print the winner and write it as a profile "
                             "fragment and a user.conf line")
    looks = p.add_argument_group("looking at results")
    looks.add_argument("--compare", nargs="+", metavar="DIR",
                       help="compare result directories (runs, precision sweeps, or a folder of them): print "
                            "a table, write compare.html and plots under --output, and exit")
    return p


def overrides(args: argparse.Namespace) -> dict:
    values = {k: getattr(args, k) for k in (
        "backend", "model", "dataset", "dataset_path", "count", "scenario", "mode", "samples_per_query",
        "user_conf", "min_duration_ms", "min_query_count", "max_query_count", "performance_sample_count",
        "target_qps", "target_latency_ms", "server_batch_timeout_ms", "quick", "threads", "instances", "max_batch_size", "device",
        "precision", "output", "system", "cache_dir", "preprocess_workers", "sample_timeout_s", "trace",
        "progress", "report")}
    if args.accuracy:
        values["mode"] = "accuracy"
    if args.time_s is not None:  # as the reference harness's --time: both bounds
        values["min_duration_ms"] = values["max_duration_ms"] = int(args.time_s * 1000)
    if args.backend_option:
        values["backend_options"] = dict(parse_option(o) for o in args.backend_option)
    from sut import cli_reference

    return cli_reference.overrides(args, values)


def parse_option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ConfigError(f"--backend-option needs KEY=VALUE, got '{text}'")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def list_everything() -> str:
    lines = ["profiles:"]
    lines += [f"  {name:<24} {desc}" for name, desc in profiles.available().items()]
    lines.append("backends: " + ", ".join(backends.available()))
    lines.append("datasets: " + ", ".join(datasets.available()))
    return "\n".join(lines)


#: how to get LoadGen where pip finds no wheel (aarch64; Python 3.8 for 6.0.15 and newer)
LOADGEN_INSTALL = ("pip install 'mlcommons-loadgen>=6.0.16' (or pip install -e . from this checkout); "
                   "where PyPI has no wheel (aarch64: Jetson, Raspberry Pi; Python 3.8) pip builds it "
                   "from source, which needs a C++ compiler and the Python headers first "
                   "(Debian/Ubuntu: sudo apt install build-essential python3-dev)")


#: the first LoadGen with the v6.x round's RNG seeds: older ones write logs the checker rejects
LOADGEN_FOR_SUBMISSION = (6, 0, 16)


def require_loadgen(submission: bool = False) -> None:
    """One line saying how to install LoadGen when it cannot be imported (never a traceback).

    A LoadGen older than :data:`LOADGEN_FOR_SUBMISSION` still measures, with a
    warning; for a submission tree it is an error (its seeds fail the checker).
    """
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError as exc:
        if getattr(exc, "name", None) == "mlperf_loadgen":
            raise BackendUnavailable(f"MLPerf LoadGen (Python module 'mlperf_loadgen') is not installed "
                                     f"for {sys.executable}: {LOADGEN_INSTALL}") from None
        reason = " ".join(str(exc).split())
        raise BackendUnavailable(f"cannot import MLPerf LoadGen ('mlperf_loadgen': {reason}); "
                                 f"reinstall it: {LOADGEN_INSTALL}") from None
    version = loadgen_version()
    if version is None or version >= LOADGEN_FOR_SUBMISSION:
        return
    floor = ".".join(map(str, LOADGEN_FOR_SUBMISSION))
    text = f"MLPerf LoadGen {'.'.join(map(str, version))} is older than {floor}, whose RNG seeds the v6.x checker expects"
    if submission:
        raise BackendUnavailable(f"{text}: submission trees need {floor} or newer; {LOADGEN_INSTALL}")
    log.warning("%s; results are fine to compare, not to submit", text)


def loadgen_version():
    """The installed mlcommons-loadgen as a tuple of ints, or None when pip metadata is missing."""
    import re
    from importlib import metadata

    try:
        text = metadata.version("mlcommons-loadgen")
    except metadata.PackageNotFoundError:
        return None
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def check_submission(root: str) -> int:
    """Print every problem the official checker would report (exit 1 if any),
    then the notes: what it does not check but this harness noticed."""
    from submission import validate

    if not os.path.isdir(root):
        raise ConfigError(f"no submission tree at {root}: pass the directory a --submission run printed")
    found = validate.findings(root)  # one pass: check_tree(root) + check_notes(root)
    problems = [f.line() for f in found if f.problem]
    for problem in problems:
        print(f"- {problem}")
    print(f"{len(problems)} problem(s) in {root}" if problems else f"no problem found in {root}")
    for note in (f.line() for f in found if not f.problem):
        print(f"  note: {note}")
    return 1 if problems else 0


def submit(cfg, args, division: str) -> int:
    from submission import run_submission
    if not args.submitter:
        raise ConfigError("--submission needs --submitter NAME (the directory name in the tree)")
    try:
        result = run_submission(cfg, args.submitter, division, args.system_desc, quick=cfg.quick,
                                scenarios=args.scenarios.split(",") if args.scenarios else None,
                                with_compliance=args.compliance)
    except Exception as exc:
        # a signal ends the test running as a failure of that test: report the signal
        # (when LoadGen is stuck, run.py's exit_code() ends the process with os._exit)
        if signals.requested() and not isinstance(exc, Interrupted):
            raise Interrupted(signals.requested()) from exc
        raise
    signals.check()
    print(f"submission tree: {result.root}")
    for problem in result.problems:
        print(f" - {problem}")
    if cfg.quick:
        print("quick run: not valid for submission (short duration, small dataset)")
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (sut/errors.py). Every
    error is one ``error:`` line on stderr; Ctrl-C / SIGTERM end the run
    cleanly (sut/signals.py)."""
    with signals.installed():
        return _main(argv)


def _main(argv: list[str] | None = None) -> int:
    if network_cli.wanted(argv):  # run.py serve ... / run.py --nodes ...: sut/network
        return network_cli.main(argv)
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    cfg = None
    try:
        if args.compare:  # tables and plots of result directories (sut/compare.py)
            from sut import compare
            return compare.main(args.compare, args.output)
        if args.list_profiles:
            print(list_everything())
            return 0
        if args.check_submission:
            return check_submission(args.check_submission)
        cfg = profiles.resolve(args.profile, overrides(args))
        if args.show_config:
            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        from sut.summary import headline  # only what is set: no model=None

        print(headline(cfg), flush=True)
        division = args.submission or args.division
        require_loadgen(submission=bool(division))
        from sut import session, sweep  # imports LoadGen

        if args.find_peak_performance:  # sut/peak.py: short LoadGen runs, each step printed
            from sut import peak
            return peak.main(cfg)
        if args.tune:  # sut/tune.py: short LoadGen runs per configuration, each printed
            from sut import tune
            return tune.main(cfg)
        if division:
            return submit(cfg, args, division)
        if cfg.precision and "," in cfg.precision:
            rows = sweep.run(cfg, sweep.parse_precisions(cfg.precision), session.execute)
            print(sweep.table(rows, cfg.scenario), end="", flush=True)
            signals.check()  # a signal ends the sweep's run: the table shows what was done
            return 6 if any(r.error for r in rows) else 0
        if cfg.precision:
            sweep.parse_precisions(cfg.precision)
        outcome = session.execute(cfg)
    except BaseException as exc:  # every error, ours or not: one line and its exit code
        if isinstance(exc, SystemExit):
            raise
        return fail(exc, args.verbose, places(args, cfg))
    print(outcome.summary, end="", flush=True)
    if not outcome.ok:
        error = next(t.error for t in outcome.tests if t.error)
        console.error_line(f"error: {one_line(error)}")
        return 6  # a hung LoadGen is still running: run.py's exit_code() ends the process with os._exit
    return 0


def places(args: argparse.Namespace, cfg=None) -> dict[str, str]:
    """Where the harness writes, by option: an OS error there is the user's to fix
    (--output: exit 7, results; --cache-dir: exit 4, the dataset cannot be prepared)."""
    output = getattr(cfg, "output", None) or args.output or "results"
    cache_dir = getattr(cfg, "cache_dir", None) or args.cache_dir
    found = {"--output": output}
    if cache_dir != "none":
        found["--cache-dir"] = cache_dir or str(Path.home() / ".cache" / "mlperf-edge")
    return found


#: errors of a write that a full or read-only disk gives wherever it happens
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def classify(exc: BaseException, where: dict[str, str] | None = None) -> tuple[int, str]:
    """(exit code, message) for an exception that ended the harness."""
    if isinstance(exc, KeyboardInterrupt):
        exc = signals.as_interrupted(exc)
    if isinstance(exc, HarnessError):
        text = one_line(exc)
        directory = getattr(exc, "run_directory", None)
        if isinstance(exc, Interrupted) and directory:
            text += f"; results so far in {directory}"
        return exc.exit_code, text
    if isinstance(exc, OSError) and exc.filename:
        option = next((opt for opt, path in (where or {}).items() if inside(exc.filename, path)), None)
        reason = f"cannot write {exc.filename}: {one_line(exc.strerror or exc)}"
        if option == "--cache-dir":  # as datasets/cache.py says it: a dataset that cannot be prepared
            return DatasetError.exit_code, (f"{reason}; pass --cache-dir DIR on a writable disk with room "
                                            "(or --cache-dir none to keep the samples in memory)")
        if option or exc.errno in STORAGE_ERRNOS:
            return ResultsError.exit_code, f"{reason}; free space there or choose another --output"
    if isinstance(exc, MemoryError):
        return INTERNAL_ERROR, "out of memory (MemoryError); use fewer samples (--count) or a smaller run"
    return INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {one_line(exc)}" if str(exc) else \
        f"internal error: {type(exc).__name__}"


def fail(exc: BaseException, verbose: bool = False, where: dict[str, str] | None = None) -> int:
    """Print the one ``error:`` line for ``exc`` and return its exit code.

    The traceback goes to ``error.log`` in the run directory (``session``
    writes it) or, for an internal error before any run directory exists, to
    a temporary file; ``-v`` prints it on the terminal too. The line names
    where the traceback is only for internal errors (exit 1: a bug to report).
    """
    code, text = classify(exc, where)
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if code == INTERNAL_ERROR:
        path = getattr(exc, "error_log", None) or _temporary_log(trace)
        if path:
            text += f" (traceback: {path})"
    if verbose and not isinstance(exc, (Interrupted, KeyboardInterrupt)):
        try:
            sys.stdout.flush()
            sys.stderr.write(trace)
        except (OSError, ValueError):
            pass
    console.error_line(f"error: {text}")
    return code


def _temporary_log(trace: str) -> str | None:
    try:
        fd, path = tempfile.mkstemp(prefix="mlperf-edge-error-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(trace)
        return path
    except OSError:
        return None


def exit_code(code: int) -> int:
    """What ``run.py`` exits with: ``code`` -- through ``os._exit`` (after
    flushing) when a LoadGen or warm-up thread still runs (a hung backend),
    because a normal interpreter exit then aborts in LoadGen's C++ threads."""
    if signals.busy_threads():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    return code
