"""One invocation of the harness: build the parts, run the tests, write results.

``execute(cfg)`` is what ``run.py`` calls after resolving the configuration.
It creates the backend and dataset through their registries (never asking
which one it is), preprocesses (or reuses the cache), warms up, runs the
accuracy and/or performance test, scores, and writes ``config.json`` and
``summary.txt`` into a new result directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import platform
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import backends
import datasets
from backends.base import BackendOptions
from datasets import cache
from profiles import Config
from sut import report, user_conf
from sut import results, signals
from sut.errors import (BackendFailure, ConfigError, DatasetError, HarnessError, Interrupted, ModelError,
                        ResultsError, one_line)
from sut.results import RunDirectory, check_loadgen_logs
from sut.summary import summarize  # the readable end of a run

if TYPE_CHECKING:
    from sut import runner  # imports LoadGen: execute() imports it when it runs (a SUT node never does)

#: the traceback of the exception that ended a run, in its directory
ERROR_LOG = "error.log"

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Outcome:
    directory: Path
    tests: list[runner.TestResult]
    summary: str

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tests)

    @property
    def hung(self) -> bool:
        return any(t.hung for t in self.tests)


def default_system(cfg: Config) -> str:
    return cfg.system or f"{platform.machine() or 'cpu'}-{cfg.backend}"


def backend_options(cfg: Config, dataset=None) -> BackendOptions:
    root = cache_root(cfg)
    return BackendOptions(threads=cfg.threads, instances=cfg.instances, max_batch_size=cfg.max_batch_size,
                          device=cfg.device, precision=cfg.precision, extra=dict(cfg.backend_options),
                          cache_dir=str(root) if root else None,
                          calibration=(lambda spec: calibration_batches(cfg, dataset, spec)) if dataset else None,
                          hints=dataset.model_hint() if dataset is not None else {})


def calibration_batches(cfg: Config, dataset, spec) -> list:
    """Calibration samples (:func:`calibration_sources`) preprocessed for
    ``spec``, in batches of ``max_batch_size`` (a short last batch is dropped)."""
    sources = calibration_sources(cfg, dataset)
    count = len(sources)
    size = max(1, min(cfg.max_batch_size, count))
    store = cache.prepare(sources, dataset.preprocessor(spec), spec, dataset.cache_key(spec),
                          cache_root(cfg), cfg.preprocess_workers, cfg.progress)
    return [store.rows(range(i, i + size)) for i in range(0, count - size + 1, size)]


def calibration_sources(cfg: Config, dataset) -> list:
    """Up to ``calibration_count`` samples that are not scored: the last ones of
    the whole dataset after the scored first ``count`` (``--count``).

    Calibrating on scored samples would flatter int8's accuracy, so a dataset
    scored whole has none to give: ConfigError, naming ``--count``.
    """
    if cfg.calibration_count < 1:
        raise ConfigError(f"'calibration_count' must be at least 1, got {cfg.calibration_count}")
    whole = datasets.create(cfg.dataset, cfg.dataset_path, None, cfg.dataset_options)
    whole.cache_root = dataset.cache_root
    whole.scan()
    scored = set(dataset.sources)
    spare = [source for source in whole.sources if source not in scored]
    if not spare:
        raise ConfigError(
            f"int8 calibration needs samples outside the scored set, and all {len(whole)} samples of "
            f"{cfg.dataset} {cfg.dataset_path or ''} are scored: pass --count N below {len(whole)} (calibration "
            f"then takes up to calibration_count={cfg.calibration_count} of the other samples, from the end)")
    chosen = spare[max(0, len(spare) - cfg.calibration_count):]
    log.info("int8 calibration: %d samples (the last of the %d outside the %d scored)",
                len(chosen), len(spare), len(scored))
    return chosen


def check_precisions(cfg: Config, precisions, model) -> None:
    """Refuse, before anything runs, a precision the backend cannot apply to
    ``model`` (ConfigError); a missing runtime raises BackendUnavailable here too."""
    wanted = [p for p in precisions if p]
    if not wanted:
        return
    backend = create_backend(cfg, backend_options(cfg))
    for precision in wanted:
        backend.check_precision(precision, model)


def precheck(cfg: Config, precisions) -> None:
    """:func:`check_precisions` for a configuration (finds its model first)."""
    _, model = open_dataset(cfg)
    check_precisions(cfg, precisions, model)


@dataclasses.dataclass
class Parts:
    """Everything a LoadGen test runs on, loaded and warmed up."""

    dataset: object
    backend: object
    info: object
    store: cache.SampleStore
    estimate: object


def open_dataset(cfg: Config):
    """Scan the dataset and find the model; raises before anything is written."""
    user_conf.validate(cfg.user_conf, (cfg.mlperf_model, cfg.model_name), cfg.scenario)  # before any work
    dataset = datasets.create(cfg.dataset, cfg.dataset_path, cfg.count, cfg.dataset_options)
    if not cfg.dataset_path and dataset.path_hint:
        raise DatasetError(f"profile '{cfg.profile}' runs on the {cfg.dataset} dataset: "
                           f"pass --dataset-path with {dataset.path_hint}")
    dataset.cache_root = cache_root(cfg)
    dataset.scan()
    model = cfg.model or dataset.default_model()
    if model is None and cfg.backend != "null":
        raise ModelError(f"profile '{cfg.profile}' names no model: pass --model PATH")
    return dataset, model


@contextlib.contextmanager
def prepared(cfg: Config, dataset, model, record: dict, loaded=None):
    """Load the backend, check the model fits, preprocess (or reuse the
    cache) and warm up; the backend is closed on exit, unless a thread of
    LoadGen or of the warm-up may still be inside it (a hung backend).
    ``loaded()`` is called once the model is loaded and fits the dataset,
    before the long steps (execute creates the result directory there, so a
    missing runtime or a model that does not fit leaves none behind).

    The body runs with signals :func:`~sut.signals.deferred`: Ctrl-C there
    is a request the LoadGen tests honour, then :func:`~sut.signals.check`."""
    backend = create_backend(cfg, backend_options(cfg, dataset))
    try:
        info = backend.load(model)
        record.update(backend=backend.describe(), model=info.describe())
        dataset.check_model(info)
        if loaded is not None:
            loaded()
        store = cache.prepare(dataset.sources, dataset.preprocessor(info.input), info.input,
                              dataset.cache_key(info.input), cache_root(cfg),
                              cfg.preprocess_workers, cfg.progress)
        with signals.deferred():  # the warm-up thread must not outlive the backend
            from sut import warm_start  # the saved estimate when model, options and machine match

            estimate = warm_start.warm_up(cfg, model, backend, info, dataset, store)
        signals.check()
        record["warm_up"] = dataclasses.asdict(estimate)
        with signals.deferred():
            yield Parts(dataset, backend, info, store, estimate)
    except BaseException as exc:
        if not signals.busy_threads() and not getattr(exc, "hung", False):
            _close_quietly(backend, exc)
        raise
    if signals.busy_threads():
        log.debug("backend left open: a LoadGen or warm-up thread is still inside it")
        return
    backend.close()


def create_backend(cfg: Config, options: BackendOptions):
    """``backends.create``, with anything but a HarnessError from a plugin's
    constructor reported as a backend failure naming it (exit 6)."""
    try:
        return backends.create(cfg.backend, options)
    except HarnessError:
        raise
    except Exception as exc:
        raise BackendFailure(f"backend '{cfg.backend}' could not be created: {type(exc).__name__}: "
                             f"{one_line(exc)}") from exc


def _close_quietly(backend, error: BaseException) -> None:
    """Close after ``error``: a second failure is logged, never hides the first."""
    try:
        backend.close()
    except Exception as exc:
        log.debug("closing the backend after %s also failed: %s", type(error).__name__, exc)


def execute(cfg: Config, echo=print) -> Outcome:
    """One run. Mistakes found before the model is loaded and checked leave
    nothing behind (a full or read-only ``--output`` is found first of all);
    from then on the run has a result directory that ends complete,
    ``.failed`` or ``.interrupted`` (see :mod:`sut.results`), holding
    ``config.json`` and ``summary.txt`` either way, and ``error.log`` (the
    traceback) when an exception ended it; the exception is re-raised with
    ``run_directory`` and ``error_log`` attributes for the CLI's one line."""
    from sut import runner  # imports LoadGen

    signals.check()  # a stop asked between runs (a precision sweep): nothing more starts
    modes = ["accuracy", "performance"] if cfg.mode == "both" else [cfg.mode]
    dataset, model = open_dataset(cfg)
    check_precisions(cfg, [cfg.precision], model)
    results.probe(cfg.output)
    tests: list[runner.TestResult] = []
    record = {"config": cfg.to_dict(), "model_path": model, "python": sys.version.split()[0],
              "platform": platform.platform(), "response_dtype": "float32"}
    current: list = []  # (outdir, mode) of the test running, for judging an exception
    run_dir: RunDirectory | None = None
    with contextlib.ExitStack() as on_exit:
        def start():
            nonlocal run_dir
            run_dir = RunDirectory(cfg.output, f"{cfg.profile or cfg.model_name}-{cfg.scenario}")
            on_exit.enter_context(signals.on_hard_exit(lambda: _interrupted_now(run_dir)))
            run_dir.write_json("config.json", record)

        try:
            with prepared(cfg, dataset, model, record, start) as parts:
                for mode in modes:
                    outdir = run_dir.test_dir(default_system(cfg), cfg.model_name, cfg.scenario, mode)
                    current[:] = [outdir, mode]
                    echo(f"running {cfg.scenario} {mode} test ({len(parts.store)} samples) ...")
                    result = runner.run_test(cfg, mode, parts.backend, parts.info, dataset, parts.store,
                                             parts.estimate, outdir)
                    tests.append(result)
                    verify(result)
                    current.clear()
                    if not result.ok:
                        break
                    signals.check()
        except BaseException as exc:
            if run_dir is None:
                raise
            raise _failed(cfg, run_dir, record, tests, exc, current)
        outcome = Outcome(run_dir.path, tests, "")
        state = "complete" if outcome.ok else "failed"
        try:
            record["state"] = state
            record["results"] = [_test_record(t, run_dir, state) for t in tests]
            outcome.summary = summarize(cfg, tests, run_dir.final_path(state), record.get("backend"))
            run_dir.write_json("config.json", record)
            run_dir.write_text("summary.txt", outcome.summary)
            # latencies.npy, and report.html (plots unless a --quick run, or asked with --report),
            # before the directory gets its final name (a failure is a warning: never fails the run)
            report.write_safely(run_dir.path, record, tests, html=cfg.report is not False,
                                plots=bool(cfg.report) or (cfg.report is None and not cfg.quick),
                                name=run_dir.final_path(state).name)
            final = run_dir.finish(state=state)
        except BaseException as exc:
            raise _failed(cfg, run_dir, record, tests, exc, [])
    outcome.directory = final
    return outcome


def verify(result: runner.TestResult) -> None:
    """Raise unless a finished test can be trusted: Interrupted when a signal
    ended it; ResultsError when LoadGen's logs are missing, cut short or hold
    no verdict (a failed test is reported by its error instead)."""
    if result.interrupted:
        raise Interrupted(result.interrupted)
    if result.error or result.hung:
        return
    problem = check_loadgen_logs(result.directory, result.mode)
    if problem is None and result.mode == "performance" and result.validity not in ("VALID", "INVALID"):
        problem = f"LoadGen logged no verdict in {result.directory} (result_validity: {result.validity!r})"
    if problem is None and result.mode == "accuracy" and result.accuracy is None:
        problem = f"no accuracy was scored from {result.directory}"
    if problem:
        raise ResultsError(problem)


def _failed(cfg: Config, run_dir: RunDirectory, record: dict, tests: list, exc: BaseException,
            current: list) -> BaseException:
    """Record why the run ended, name the directory ``.interrupted`` or
    ``.failed``, and return the exception to raise (KeyboardInterrupt becomes
    Interrupted; an OS error on the results becomes ResultsError; an error
    caused by LoadGen's log being cut short becomes that ResultsError)."""
    if isinstance(exc, KeyboardInterrupt):
        exc = signals.as_interrupted(exc)
    elif not isinstance(exc, HarnessError) and isinstance(exc, Exception):
        # LoadGen wrote logs that a full disk cut short (scoring them then fails): that is the error
        wrote = current and (current[0] / "mlperf_log_detail.txt").exists()
        problem = check_loadgen_logs(*current) if wrote else None
        if problem:
            exc = _chained(ResultsError(problem), exc)
        elif isinstance(exc, OSError) and results.inside(getattr(exc, "filename", None), run_dir.root):
            exc = _chained(ResultsError(f"cannot write {exc.filename}: {one_line(exc.strerror or exc)}; "
                                        "free space there or choose another --output"), exc)
    state = "interrupted" if isinstance(exc, Interrupted) else "failed"
    record.update(state=state, error=one_line(exc) or type(exc).__name__,
                  results=[_test_record(t, run_dir, state) for t in tests])
    if not isinstance(exc, Interrupted):
        exc.error_log = _write_error_log(run_dir, exc)
    summary = f"{state.upper()}: {one_line(exc)}\n" + summarize(cfg, tests, run_dir.final_path(state),
                                                                  record.get("backend"))
    for name, write in (("config.json", lambda: run_dir.write_json("config.json", record)),
                        ("summary.txt", lambda: run_dir.write_text("summary.txt", summary))):
        try:
            write()
        except HarnessError as problem:  # the disk that failed the run may refuse these too
            log.debug("could not write %s: %s", name, problem)
    partial = str(run_dir.path)
    exc.run_directory = run_dir.finish(state=state)
    if isinstance(exc, HarnessError) and len(exc.args) == 1 and partial in str(exc.args[0]):
        # name files where they are now, not under the .partial name that is gone
        exc.args = (str(exc.args[0]).replace(partial, str(exc.run_directory)),)
    return exc


def _chained(new: BaseException, cause: BaseException) -> BaseException:
    new.__cause__ = cause
    new.__traceback__ = cause.__traceback__
    return new


def _write_error_log(run_dir: RunDirectory, exc: BaseException) -> Path | None:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        run_dir.write_text(ERROR_LOG, text)
    except HarnessError:
        return None
    return run_dir.final_path("failed") / ERROR_LOG


def _interrupted_now(run_dir: RunDirectory) -> str:
    """A second signal: name the directory ``.interrupted`` before the process exits."""
    path = run_dir.finish(state="interrupted")
    return f"partial results in {path}"


def cache_root(cfg: Config):
    if cfg.cache_dir == "none":
        return None
    return Path(cfg.cache_dir) if cfg.cache_dir else cache.DEFAULT_CACHE_DIR


def _test_record(t: runner.TestResult, run_dir: RunDirectory, state: str) -> dict:
    """A test for config.json, its directory named as it is once the run has ended in ``state``."""
    directory = run_dir.final_path(state) / Path(t.directory).relative_to(run_dir.path)
    return {"scenario": t.scenario, "mode": t.mode, "directory": str(directory), "validity": t.validity,
            "metric": t.metric, "reasons": t.reasons, "error": t.error,
            "accuracy": t.accuracy.line() if t.accuracy else None}

