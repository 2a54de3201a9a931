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
from pathlib import Path

import backends
import datasets
from backends.base import BackendOptions
from datasets import cache
from profiles import Config
from sut import runner, user_conf
from sut.errors import ConfigError, DatasetError, HarnessError, ModelError
from sut.results import RunDirectory
from sut.summary import summarize  # the readable end of a run

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
                          calibration=(lambda spec: calibration_batches(cfg, dataset, spec)) if dataset else None)


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
    backend = backends.create(cfg.backend, backend_options(cfg))
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
def prepared(cfg: Config, dataset, model, record: dict):
    """Load the backend, check the model fits, preprocess (or reuse the
    cache) and warm up; the backend is closed on exit."""
    backend = backends.create(cfg.backend, backend_options(cfg, dataset))
    with backend:
        info = backend.load(model)
        record.update(backend=backend.describe(), model=info.describe())
        dataset.check_model(info)
        store = cache.prepare(dataset.sources, dataset.preprocessor(info.input), info.input,
                              dataset.cache_key(info.input), cache_root(cfg),
                              cfg.preprocess_workers, cfg.progress)
        estimate = runner.warm_up(backend, info, dataset, store, cfg.samples_per_query or 8, cfg.sample_timeout_s)
        record["warm_up"] = dataclasses.asdict(estimate)
        yield Parts(dataset, backend, info, store, estimate)


def execute(cfg: Config, echo=print) -> Outcome:
    modes = ["accuracy", "performance"] if cfg.mode == "both" else [cfg.mode]
    dataset, model = open_dataset(cfg)
    check_precisions(cfg, [cfg.precision], model)
    run_dir = RunDirectory(cfg.output, f"{cfg.profile or cfg.model_name}-{cfg.scenario}")
    tests: list[runner.TestResult] = []
    record = {"config": cfg.to_dict(), "model_path": model, "python": sys.version.split()[0],
              "platform": platform.platform(), "response_dtype": "float32"}
    try:
        with prepared(cfg, dataset, model, record) as parts:
            for mode in modes:
                outdir = run_dir.test_dir(default_system(cfg), cfg.model_name, cfg.scenario, mode)
                echo(f"running {cfg.scenario} {mode} test ({len(parts.store)} samples) ...")
                result = runner.run_test(cfg, mode, parts.backend, parts.info, dataset, parts.store,
                                         parts.estimate, outdir)
                tests.append(result)
                if not result.ok:
                    break
    except HarnessError as exc:
        record["error"] = str(exc)
        run_dir.write_json("config.json", record)
        run_dir.write_text("summary.txt", f"FAILED: {exc}\n")
        run_dir.finish(ok=False)
        raise
    record["results"] = [_test_record(t) for t in tests]
    outcome = Outcome(run_dir.path, tests, "")
    run_dir.write_json("config.json", record)
    if outcome.hung:  # LoadGen still owns files in the directory: leave it .partial
        outcome.summary = summarize(cfg, tests, run_dir.path, record.get("backend"))
        run_dir.write_text("summary.txt", outcome.summary)
        return outcome
    final = run_dir.finish(ok=outcome.ok)
    outcome.directory = final
    outcome.summary = summarize(cfg, tests, final, record.get("backend"))
    (final / "summary.txt").write_text(outcome.summary)
    return outcome


def cache_root(cfg: Config):
    if cfg.cache_dir == "none":
        return None
    return Path(cfg.cache_dir) if cfg.cache_dir else cache.DEFAULT_CACHE_DIR


def _test_record(t: runner.TestResult) -> dict:
    return {"scenario": t.scenario, "mode": t.mode, "directory": str(t.directory), "validity": t.validity,
            "metric": t.metric, "reasons": t.reasons, "error": t.error,
            "accuracy": t.accuracy.line() if t.accuracy else None}

