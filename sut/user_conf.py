"""A LoadGen ``user.conf``, checked line by line before anything runs.

LoadGen's own parser (``TestSettings::FromConfig``) stores every
``key = value`` line and then looks up only the keys it knows, for the model
and scenario it was given: a misspelt key, a model name it was not given
(``mobilenet.`` for a run whose LoadGen model is ``resnet50``), a key under a
scenario that never reads it, or ``key=value`` without spaces are all
ignored without a word, and the run still reports VALID. Here each of those
is a ConfigError (exit 2) naming the file, the line and what would be
accepted, found before preprocessing starts.

Rules, one line each (``#`` starts a comment line):

* ``model.Scenario.key = value`` with spaces around ``=`` and nothing after
  the value (LoadGen refuses a trailing comment);
* ``model``: ``*``, this run's LoadGen model name (``mlperf_model``, e.g.
  ``resnet50``) or the profile's own model name (``model_name``, e.g.
  ``mobilenet``), which :func:`for_loadgen` rewrites to the LoadGen name in a
  temporary copy, since LoadGen would ignore it;
* ``Scenario``: ``*``, SingleStream, MultiStream, Offline or Server, and one
  that reads ``key`` (``target_qps`` only for Offline and Server, ...);
* ``key``: one that LoadGen 6.0 reads from a user.conf (:data:`KEYS`);
* ``value``: a decimal number in the key's range (whole numbers where
  LoadGen reads an integer: it would take ``1.5`` as 1 and ``-1`` as 2^64-1);
* the same setting at most once (LoadGen would keep the last silently).
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import re
import tempfile
from typing import Iterator, NamedTuple, Sequence

from sut.errors import ConfigError

SCENARIOS = ("SingleStream", "MultiStream", "Offline", "Server")
ALL = SCENARIOS
LATENCY = ("SingleStream", "MultiStream", "Server")


class Key(NamedTuple):
    """One setting LoadGen reads from a user.conf."""

    scenarios: tuple[str, ...]   # the scenarios whose test reads it
    kind: str                    # "int" (whole number), "float" or "bool" (0 or 1)
    low: float = 0
    low_open: bool = False       # value must be > low (else >= low)
    high: float | None = None
    note: str = ""

    def describe(self) -> str:
        if self.kind == "bool":
            return "0 or 1"
        what = "a whole number" if self.kind == "int" else "a number"
        rng = f"{'>' if self.low_open else '>='} {self.low:g}" + (f" and <= {self.high:g}" if self.high is not None else "")
        return f"{what} {rng}" + (f" ({self.note})" if self.note else "")


#: every key ``TestSettings::FromConfig`` (LoadGen 6.0.17, loadgen/test_settings_internal.cc)
#: reads from a user.conf (conf_type 2), with the scenarios that read it
KEYS: dict[str, Key] = {
    "min_duration": Key(ALL, "int", note="milliseconds"),
    "max_duration": Key(ALL, "int", note="milliseconds, 0 = no limit"),
    "min_query_count": Key(ALL, "int"),
    "max_query_count": Key(ALL, "int", note="0 = no limit"),
    "performance_sample_count_override": Key(ALL, "int", note="0 = the dataset's"),
    "accuracy_sample_count_override": Key(ALL, "int", note="0 = the dataset's"),
    "performance_issue_unique": Key(ALL, "bool"),
    "performance_issue_same": Key(ALL, "bool"),
    "performance_issue_same_index": Key(ALL, "int"),
    "sample_concatenate_permutation": Key(ALL, "bool"),
    "print_timestamps": Key(ALL, "bool"),
    "accuracy_log_rng_seed": Key(ALL, "int"),
    "accuracy_log_sampling_target": Key(ALL, "int"),
    "use_token_latencies": Key(ALL, "bool"),
    "infer_token_latencies": Key(ALL, "bool"),
    "token_latency_scaling_factor": Key(ALL, "int"),
    "target_latency_percentile": Key(LATENCY, "float", 0, True, 100, "a percentile, e.g. 90"),
    "target_latency": Key(LATENCY, "float", 0, True, note="milliseconds; whole ones for Server"),
    "samples_per_query": Key(("MultiStream",), "int", 1),
    "target_qps": Key(("Offline", "Server"), "float", 0, True),
    "coalesce_queries": Key(("Server",), "bool"),
    "max_async_queries": Key(("Server",), "int", note="0 = no limit"),
    "ttft_latency": Key(("Server",), "int", 0, True, note="milliseconds"),
    "tpot_latency": Key(("Server",), "int", 0, True, note="milliseconds"),
}

#: keys LoadGen reads only from its built-in mlperf.conf (a user.conf line is ignored) or the harness sets
REFUSED = {
    "mode": "the test mode is set by --mode / --accuracy, not user.conf",
    **{k: "LoadGen reads it only from its built-in mlperf.conf: a user.conf line is ignored" for k in (
        "qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed", "accuracy_log_probability", "test05",
        "test05_qsl_rng_seed", "test05_sample_index_rng_seed", "test05_schedule_rng_seed")},
    "target_duration": "LoadGen 6 reads no target_duration key (it is ignored even in mlperf.conf)",
}

_INT = re.compile(r"(0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")
_BOM = "\ufeff"


class Line(NamedTuple):
    number: int
    model: str
    scenario: str
    key: str
    value: float


def validate(path: str | None, model_names: Sequence[str], scenario: str) -> dict[str, float]:
    """Check every line of the user.conf at ``path`` (nothing when ``path`` is None).

    ``model_names``: the LoadGen model name first (``cfg.mlperf_model``), then
    other names this run answers to (``cfg.model_name``). Returns the values
    that apply to this model and ``scenario``, by key, with LoadGen's
    precedence (``model.Scenario`` > ``*.Scenario`` > ``model.*`` > ``*.*``).
    """
    if not path:
        return {}
    lines = parse(path, model_names, scenario)
    names = set(model_names)
    rank = {}
    values: dict[str, float] = {}
    for line in lines:
        if line.scenario not in (scenario, "*") or (line.model not in names and line.model != "*"):
            continue
        order = (line.model != "*") + 2 * (line.scenario != "*")
        if order >= rank.get(line.key, -1):
            rank[line.key], values[line.key] = order, line.value
    return values


def parse(path: str, model_names: Sequence[str], scenario: str) -> list[Line]:
    """Every setting line of ``path``; ConfigError at the first bad one."""
    text = _read(path).lstrip(_BOM)
    loadgen_name = model_names[0]
    accepted_models = ["*", *dict.fromkeys(model_names)]
    seen: dict[tuple[str, str, str], int] = {}
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"user.conf {path} line {number}"
        tokens = raw.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        _check_shape(tokens, raw, where)
        name, value_text = tokens[0], tokens[2]
        parts = name.rsplit(".", 2)
        if len(parts) != 3 or not all(parts):
            raise ConfigError(f"{where}: {name!r} is not 'model.Scenario.key' (e.g. "
                              f"{loadgen_name}.{scenario}.min_duration = 60000)")
        model, scen, key = parts
        if model not in accepted_models:
            raise ConfigError(f"{where}: model {model!r} is not this run's{_nearest(model, accepted_models)}; "
                              f"use {', '.join(accepted_models[1:])} or * (LoadGen would ignore the line)")
        if scen not in SCENARIOS and scen != "*":
            raise ConfigError(f"{where}: unknown scenario {scen!r}{_nearest(scen, SCENARIOS)}; use one of "
                              f"{', '.join(SCENARIOS)} or *")
        if key in REFUSED:
            raise ConfigError(f"{where}: {key!r} cannot be set here: {REFUSED[key]}")
        if key not in KEYS:
            raise ConfigError(f"{where}: unknown LoadGen setting {key!r}{_nearest(key, KEYS)} "
                              f"(LoadGen would ignore it and run with its default)")
        spec = KEYS[key]
        if scen != "*" and scen not in spec.scenarios:
            raise ConfigError(f"{where}: LoadGen reads {key!r} only for {', '.join(spec.scenarios)}, not {scen}; "
                              f"use one of those or *")
        value = _value(value_text, spec, where, key)
        if key == "target_latency" and value != int(value) and "Server" in (scen, scenario if scen == "*" else ""):
            raise ConfigError(f"{where}: LoadGen reads Server's target_latency as whole milliseconds "
                              f"({value_text} would be {int(value)} ms); write a whole number")
        ident = (loadgen_name if model in model_names else model, scen, key)
        if ident in seen:
            raise ConfigError(f"{where}: sets {'.'.join(ident)} again (first at line {seen[ident]}); LoadGen "
                              f"keeps only the last one silently: remove one of them")
        seen[ident] = number
        lines.append(Line(number, model, scen, key, value))
    return lines


@contextlib.contextmanager
def for_loadgen(path: str, model_names: Sequence[str], scenario: str) -> Iterator[str]:
    """The path to give ``TestSettings.FromConfig`` for the user.conf at ``path``.

    Validates it (:func:`parse`); lines under another name of this run's
    model (``mobilenet.``) are rewritten to the LoadGen name in a temporary
    copy (also without a UTF-8 BOM), removed on exit; otherwise ``path`` itself.
    """
    lines = parse(path, model_names, scenario)
    loadgen_name = model_names[0]
    text = _read(path)
    if not text.startswith(_BOM) and all(line.model in ("*", loadgen_name) for line in lines):
        yield path
        return
    rewritten = {line.number for line in lines if line.model not in ("*", loadgen_name)}
    out = []
    for number, raw in enumerate(text.lstrip(_BOM).splitlines(), start=1):
        if number in rewritten:
            name, rest = raw.split(None, 1)
            raw = f"{loadgen_name}.{name.rsplit('.', 2)[1]}.{name.rsplit('.', 2)[2]} {rest}"
        out.append(raw)
    fd, copy = tempfile.mkstemp(prefix="user-", suffix=".conf")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(out) + "\n")
        yield copy
    finally:
        os.unlink(copy)


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(f"user.conf not found: {path} (--user-conf)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read user.conf {path}: {exc.strerror or exc} (--user-conf)") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        number = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"user.conf {path} line {number}: byte {data[exc.start]:#04x} is not UTF-8 text; "
                          f"LoadGen keys are plain ASCII") from None
    body = text[len(_BOM):] if text.startswith(_BOM) else text  # an editor's BOM at the start is harmless
    for number, line in enumerate(body.splitlines(), start=1):
        odd = [c for c in line if not (c.isascii() and (c.isprintable() or c in "\t\r"))]
        if odd and not line.lstrip().startswith("#"):
            raise ConfigError(f"user.conf {path} line {number}: character {odd[0]!r} in {line.strip()!r}; "
                              f"LoadGen keys and values are plain ASCII")
    return text


def _check_shape(tokens: list[str], raw: str, where: str) -> None:
    if len(tokens) == 3 and tokens[1] == "=":
        return
    if len(tokens) > 3 and tokens[1] == "=" and tokens[3].startswith("#"):
        raise ConfigError(f"{where}: LoadGen refuses a comment after the value; put it on a line of its own")
    if "=" in raw and (len(tokens) < 3 or tokens[1] != "="):
        raise ConfigError(f"{where}: {raw.strip()!r}: LoadGen needs spaces around '=' "
                          f"('model.Scenario.key = value'); without them it ignores the line or refuses the file")
    raise ConfigError(f"{where}: {raw.strip()!r} is not 'model.Scenario.key = value'")


def _value(text: str, spec: Key, where: str, key: str) -> float:
    pattern = _FLOAT if spec.kind == "float" else _INT
    if not pattern.match(text):
        raise ConfigError(f"{where}: {key} = {text!r}: must be {spec.describe()}")
    value = float(text) if spec.kind == "float" else int(text)
    ok = math.isfinite(value) and (value > spec.low if spec.low_open else value >= spec.low)
    ok = ok and (spec.high is None or value <= spec.high) and (spec.kind != "bool" or value in (0, 1))
    if not ok:
        raise ConfigError(f"{where}: {key} = {text}: must be {spec.describe()}")
    return value


def _nearest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""
