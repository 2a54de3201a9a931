"""Profiles: named, ready configurations stored as TOML files in this folder.

Configuration is plain data merged in three layers, each validated:
``Config`` defaults -> the profile file -> command-line options. Unknown keys
are rejected with the list of accepted ones. The resolved configuration is
printed and saved with the results.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping

from sut.compat import TOMLDecodeError, load_toml
from sut import limits, user_conf
from sut.errors import ConfigError

PROFILE_DIR = Path(__file__).resolve().parent
SCENARIOS = ("SingleStream", "MultiStream", "Offline", "Server")
MODES = ("performance", "accuracy", "both")


@dataclasses.dataclass
class Config:
    """Everything one run needs. Field comments are shown by ``run.py --list-profiles -v``."""

    profile: str = ""
    description: str = ""
    # what runs
    backend: str = "null"
    model: str | None = None
    model_name: str = "model"          # directory name in the results tree
    mlperf_model: str = "resnet50"     # model name for mlperf.conf / user.conf keys
    dataset: str = "imagenet"
    dataset_path: str | None = None
    dataset_options: dict = dataclasses.field(default_factory=dict)
    count: int | None = None           # use the first N samples
    # how LoadGen drives it
    scenario: str = "SingleStream"
    mode: str = "performance"          # performance | accuracy | both
    samples_per_query: int | None = None  # MultiStream; LoadGen default 8
    user_conf: str | None = None
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None  # LoadGen stops issuing queries after this (--time sets both)
    min_query_count: int | None = None
    max_query_count: int | None = None
    performance_sample_count: int | None = None
    target_qps: float | None = None    # Offline expected / Server target QPS
    target_latency_ms: float | None = None  # SingleStream/MultiStream expected, Server bound
    quick: bool = False                # short (VALID) runs to try things; not for submission
    # backend
    threads: int = 0
    instances: int = 0
    max_batch_size: int = 1
    device: str | None = None
    precision: str | None = None
    calibration_count: int = 500       # int8 calibration: first N dataset samples
    backend_options: dict = dataclasses.field(default_factory=dict)
    # harness
    output: str = "results"
    system: str = ""                   # system id in the results tree (default: detected)
    cache_dir: str | None = None       # preprocessing cache (default ~/.cache/mlperf-edge)
    preprocess_workers: int = 0        # 0 = one per core
    sample_timeout_s: float = 60.0     # a sample unanswered this long fails the run
    server_batch_timeout_ms: float = 0.0   # Server: wait this long for a batch to fill (0: batch what is queued)
    trace: bool = False                # LoadGen trace log (slow, large)
    audit_conf: str | None = None      # LoadGen audit.config to apply (a compliance test); None: none
    progress: bool = True
    # report.html in each run directory: None = with plots except for --quick runs (tables only: the
    # plots take seconds), true = always with plots, false = none (latencies.npy is saved either way)
    report: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def available() -> dict[str, str]:
    """Profile name -> description."""
    return {p.stem: _read(p).get("description", "") for p in sorted(PROFILE_DIR.glob("*.toml"))}


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return load_toml(f)
    except (OSError, TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read profile {path}: {exc}") from exc


def load_profile(name_or_path: str) -> dict[str, Any]:
    """A profile's raw values, by name (``mobilenet_tflite``) or path to a .toml file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROFILE_DIR / f"{name_or_path}.toml"
    if not path.exists():
        raise ConfigError(
            f"unknown profile '{name_or_path}'; choose one of: {', '.join(available())} or give a .toml file"
        )
    values = _read(path)
    values.setdefault("profile", path.stem)
    return values


def merge(base: Config, values: Mapping[str, Any], source: str) -> Config:
    """Return ``base`` updated with ``values``; unknown keys or bad types raise ConfigError."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in {source}; "
            f"accepted keys: {', '.join(FIELDS)}"
        )
    updates = {k: _coerce(k, v, source) for k, v in values.items()}
    for key, value in updates.items():  # tables merge key by key across layers
        if isinstance(value, dict):
            updates[key] = {**getattr(base, key), **value}
    merged = dataclasses.replace(base, **updates)
    validate(merged, source)
    return merged


def _coerce(key: str, value: Any, source: str) -> Any:
    if value is None:
        return None
    default = FIELDS[key].default
    if FIELDS[key].default_factory is not dataclasses.MISSING:  # dict fields
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' in {source} must be a table/dict, got {value!r}")
        return dict(value)
    kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}
    annotation = str(FIELDS[key].type)
    want = type(default) if default is not None else (bool if "bool" in annotation else
                                                      int if "int" in annotation else
                                                      float if "float" in annotation else str)
    if want is bool and not isinstance(value, bool) or not isinstance(value, kinds[want]) or (
            want is not bool and isinstance(value, bool)):
        raise ConfigError(f"'{key}' in {source} must be {want.__name__}, got {value!r}")
    return want(value)


@dataclasses.dataclass(frozen=True)
class Bound:
    """The accepted range of one numeric setting (``None``: no bound on that side)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False   # low itself is refused (> low rather than >= low)
    note: str = ""           # what special values mean, e.g. "0 = automatic"

    def accepts(self, value) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        low = None if self.low is None else f"{'>' if self.low_open else '>='} {_number(self.low)}"
        high = None if self.high is None else f"<= {_number(self.high)}"
        text = " and ".join(t for t in (low, high) if t) or "any finite number"
        return text + (f" ({self.note})" if self.note else "")


def _number(value) -> str:
    """``604,800,000`` for whole numbers, ``0.5`` for others; a huge value shortened."""
    if value == MAX_COUNT:
        return "2^63-1"
    if isinstance(value, float) and not value.is_integer() or not math.isfinite(value):
        return f"{value:g}"
    return f"{int(value):,}" if abs(value) < 1e21 else f"{value:.3g}"


#: the most model instances a backend is asked for (each is a model copy and a thread)
MAX_INSTANCES = 64
#: the most runtime threads per instance and preprocessing workers
MAX_THREADS = 1024
#: the largest batch per inference
MAX_BATCH_SIZE = 65536
#: the longest test: a week, in milliseconds
MAX_DURATION_MS = 7 * 24 * 3600 * 1000
#: LoadGen's counts are 64-bit
MAX_COUNT = 2**63 - 1

#: accepted range of every numeric Config field (``None`` values are "not set": LoadGen's or the backend's default)
RANGES: dict[str, Bound] = {
    "count": Bound(1),
    "samples_per_query": Bound(1, 65536),
    "min_duration_ms": Bound(0, MAX_DURATION_MS, note="milliseconds; --time is in seconds"),
    "max_duration_ms": Bound(0, MAX_DURATION_MS, note="milliseconds, 0 = no limit; --time is in seconds"),
    "min_query_count": Bound(0, limits.MAX_GENERATED_SAMPLES),
    "max_query_count": Bound(0, MAX_COUNT, note="0 = no limit"),
    "performance_sample_count": Bound(1, MAX_COUNT),
    "target_qps": Bound(0, low_open=True),
    "target_latency_ms": Bound(0, low_open=True),
    "threads": Bound(0, MAX_THREADS, note="0 = the runtime's default"),
    "instances": Bound(0, MAX_INSTANCES, note="0 = the backend's choice"),
    "max_batch_size": Bound(1, MAX_BATCH_SIZE),
    "calibration_count": Bound(1),
    "preprocess_workers": Bound(0, MAX_THREADS, note="0 = one per core"),
    "sample_timeout_s": Bound(0, low_open=True),
    "server_batch_timeout_ms": Bound(0),
}

#: the command-line option of a field, where it differs from ``--field-name``
FLAGS = {
    "min_duration_ms": "--min-duration (or --time in seconds)",
    "max_duration_ms": "--time (in seconds)",
    "max_batch_size": "--max-batchsize",
    "sample_timeout_s": "--sample-timeout",
    "calibration_count": "calibration_count (profile key)",
}


def option_name(key: str) -> str:
    """How the user spells a field: ``--target-qps / target_qps``."""
    flag = FLAGS.get(key, "--" + key.replace("_", "-"))
    return flag if flag.startswith(key) else f"{flag} / {key}"


def validate(cfg: Config, source: str = "the configuration") -> None:
    """Check every value of ``cfg``; ConfigError names the option, the value and the accepted range."""
    if cfg.scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario '{cfg.scenario}'; choose one of: {', '.join(SCENARIOS)}")
    if cfg.mode not in MODES:
        raise ConfigError(f"unknown mode '{cfg.mode}'; choose one of: {', '.join(MODES)}")
    for key, bound in RANGES.items():
        value = getattr(cfg, key)
        if value is not None and not bound.accepts(value):
            what = "a finite number " if "float" in str(FIELDS[key].type) else "a whole number "
            raise ConfigError(f"{option_name(key)} must be {what}{bound.describe()}, got {_number(value)} (from {source})")
    if cfg.max_query_count and cfg.min_query_count is not None and cfg.min_query_count > cfg.max_query_count:
        raise ConfigError(f"--min-query-count {cfg.min_query_count} is above --max-query-count "
                          f"{cfg.max_query_count} (from {source}): raise the maximum or lower the minimum")
    max_ms = getattr(cfg, "max_duration_ms", None)
    if max_ms and cfg.min_duration_ms is not None and cfg.min_duration_ms > max_ms:
        raise ConfigError(f"the minimum duration {cfg.min_duration_ms} ms is above the maximum {max_ms} ms "
                          f"(from {source}): raise the maximum or lower the minimum")


def check_query_budget(cfg: Config, user_values: Mapping[str, Any] | None = None) -> None:
    """The part of :func:`sut.limits.check_query_budget` known before the warm-up:
    an explicit rate (``--target-qps``, ``--target-latency-ms``) with the duration."""
    if cfg.mode == "accuracy":
        return
    settings = limits.config_settings(cfg, dict(user_values or {}))
    if settings is not None:
        limits.check_query_budget(cfg.scenario, settings)


def resolve(profile: str | None, overrides: Mapping[str, Any]) -> Config:
    """Defaults -> profile -> overrides (``None`` values in overrides are ignored)."""
    cfg = Config()
    if profile:
        cfg = merge(cfg, load_profile(profile), f"profile '{profile}'")
    cli = {k: v for k, v in overrides.items() if v is not None}
    cfg = merge(cfg, cli, "the command line")
    # user.conf and the query budget are checked here, before anything is
    # preprocessed or loaded (both read only files, never LoadGen)
    values = user_conf.validate(cfg.user_conf, (cfg.mlperf_model, cfg.model_name), cfg.scenario)
    check_query_budget(cfg, values)
    return cfg
