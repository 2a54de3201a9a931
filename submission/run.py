"""One submission: every required run, compliance verification, the tree, the check.

``run_submission(cfg, submitter, division, ...)`` loads the backend and the
dataset once, then for each scenario runs the accuracy test, the
performance test and (closed, or when asked) TEST01 and TEST04 through
``sut.runner.run_test``, each into its own folder under ``<root>/full_logs``.
It verifies the compliance runs, writes the tree (:mod:`submission.tree`),
checks it (:mod:`submission.validate`) and writes ``<root>/STATUS.txt``.
The root is a new run directory under ``cfg.output`` (``.partial`` while
running, ``.failed`` after an error), never an earlier one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from profiles import Config
from submission import compliance, rules, system_desc, validate
from submission.tree import Tree, user_conf_text
from sut import signals
from sut.errors import BackendFailure, ConfigError, Interrupted

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
TESTS = ("accuracy", "performance", "TEST01", "TEST04")
QUICK_LABEL = "QUICK RUN: NOT VALID FOR SUBMISSION (short runs on purpose; the problems are listed below)"


@dataclasses.dataclass
class SubmissionResult:
    root: Path
    problems: list[str]           # everything check_tree found, plus system fields to fill
    quick: bool
    verdicts: dict[str, str]      # "<Scenario>/TEST01/verify_accuracy.txt" -> "TEST PASS" / "TEST FAIL"
    notes: list[str] = dataclasses.field(default_factory=list)  # what only our checker looks at

    @property
    def ok(self) -> bool:
        return not self.problems


def plan(cfg: Config, division: str, scenarios: list[str] | None, with_compliance: bool | None,
         system_type: str = "edge") -> tuple[rules.ModelRules, str, list[str], bool]:
    """(rules, model directory name, scenarios, compliance?) or ConfigError, before anything runs."""
    if division not in rules.DIVISIONS:
        raise ConfigError(f"unknown division '{division}'; choose one of: {', '.join(rules.DIVISIONS)}")
    model_rules = rules.BY_MLPERF_MODEL.get(cfg.mlperf_model)
    if model_rules is None:
        raise ConfigError(f"no submission rules for mlperf_model '{cfg.mlperf_model}'; "
                          f"known: {', '.join(rules.BY_MLPERF_MODEL)}")
    if system_type not in rules.SYSTEM_TYPES:
        raise ConfigError(f"system_type '{system_type}' (--system-desc) is not one the checker accepts; "
                          f"choose one of: {', '.join(rules.SYSTEM_TYPES)}")
    required: tuple[str, ...] | None = ()
    if division == "closed":
        if model_rules.official not in rules.CLOSED_MODELS or cfg.model_name not in ("resnet", "resnet50"):
            raise ConfigError(
                f"the closed division has no benchmark for model '{cfg.model_name}' "
                f"(v6.1 closed image classification is ResNet50 only; MobileNet was closed only in v0.5, "
                f"keyword spotting never): use division 'open'")
        model_dir = model_rules.official
        required = rules.required_scenarios(model_rules, system_type)
        if required is None:
            raise ConfigError(f"closed {model_dir} is no benchmark for system_type '{system_type}' in {rules.VERSION}; "
                              f"set \"system_type\" to \"edge\" or \"datacenter,edge\" in --system-desc")
        default_scenarios = list(required)
    else:
        model_dir = cfg.model_name
        default_scenarios = [cfg.scenario]
    chosen = list(scenarios or default_scenarios)
    unknown = [s for s in chosen if s not in rules.SCENARIOS]
    if unknown:
        raise ConfigError(f"unknown scenario {', '.join(unknown)}; choose from: {', '.join(rules.SCENARIOS)}")
    if division == "closed":
        refused = [s for s in chosen if s not in required]
        if refused:
            raise ConfigError(f"scenario {', '.join(refused)} is not allowed for system_type '{system_type}' "
                              f"in the closed division; allowed: {', '.join(required)}"
                              + (" (Server needs \"system_type\": \"datacenter,edge\" in --system-desc)"
                                 if "Server" in refused else ""))
        missing = [s for s in required if s not in chosen]
        if missing:
            raise ConfigError(f"closed {system_type} {model_dir} needs scenarios {', '.join(missing)} too")
    bound = rules.latency_bound_ns(model_rules, "Server")
    if "Server" in chosen and bound and cfg.target_latency_ms is not None and cfg.target_latency_ms * 1e6 > bound:
        raise ConfigError(f"--target-latency-ms {cfg.target_latency_ms:g} is looser than the {model_rules.official} "
                          f"Server bound {bound / 1e6:g} ms the checker enforces; give at most {bound / 1e6:g}")
    return model_rules, model_dir, chosen, (division == "closed") if with_compliance is None else with_compliance


#: quick Server runs of a tree: at most this rate and a quarter of the measured capacity, so that
#: the benchmark's own latency bound (ResNet50: 15 ms) holds on a busy small machine too
QUICK_SERVER_QPS = 250.0


def scenario_config(cfg: Config, scenario: str, model_rules: rules.ModelRules, estimate=None) -> Config:
    """The configuration of one scenario's runs: a Server run uses the benchmark's own latency bound
    (ResNet50: 15 ms), never the generous bound a quick run uses elsewhere; a quick one also a
    lighter load than a plain quick run, so that it meets that bound."""
    scfg = dataclasses.replace(cfg, scenario=scenario)
    bound = rules.latency_bound_ns(model_rules, scenario)
    if scenario == "Server" and bound and cfg.target_latency_ms is None:
        scfg = dataclasses.replace(scfg, target_latency_ms=bound / 1e6)
    if scenario == "Server" and cfg.quick and cfg.target_qps is None and estimate is not None:
        scfg = dataclasses.replace(scfg, target_qps=max(1.0, min(0.25 * estimate.samples_per_s, QUICK_SERVER_QPS)))
    return scfg


def system_fields(cfg: Config, user_desc: dict, division: str, submitter: str, quick: bool) -> dict:
    """The user's --system-desc values, checked before the runs: without ``quick`` every field the
    checker needs and no machine tells must be there (ConfigError naming each with an example);
    with ``quick`` placeholders stand in for them."""
    detected = system_desc.detect(cfg.backend, cfg.device, cfg.backend)
    desc, _ = system_desc.describe(detected, user_desc, division, submitter)
    if quick:
        return {**system_desc.quick_placeholders(desc), **user_desc}
    problems = system_desc.field_problems(desc)
    if problems:
        raise ConfigError("the system description needs more before hours of runs start: "
                          + "; ".join(problems) + " (put them in the JSON file given with --system-desc)")
    return user_desc


def run_submission(cfg: Config, submitter: str, division: str, system_desc_path: str | None = None,
                   quick: bool | None = None, scenarios: list[str] | None = None,
                   with_compliance: bool | None = None, command: str | None = None,
                   echo=print) -> SubmissionResult:
    """Run everything a submission needs and write the tree; see the module docstring."""
    from sut import runner, session  # imports LoadGen
    from sut.accuracy import read_predictions
    from sut.results import RunDirectory, safe_name

    if not submitter or safe_name(submitter) != submitter:
        raise ConfigError(f"submitter '{submitter}' must be a plain name (letters, digits, '_', '-', '.')")
    cfg = dataclasses.replace(cfg, quick=cfg.quick if quick is None else quick, mode="both")
    user_desc = system_desc.load_user_file(system_desc_path)
    system_type = str(user_desc.get("system_type") or "edge")
    model_rules, model_dir, scenario_list, run_compliance = plan(cfg, division, scenarios, with_compliance,
                                                                 system_type)
    user_desc = system_fields(cfg, user_desc, division, submitter, cfg.quick)
    command = command or " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])

    run_dir = RunDirectory(cfg.output, f"submission-{division}-{cfg.model_name}")
    root = run_dir.path
    system = safe_name(cfg.system or session.default_system(cfg))
    tree = Tree(root, division, submitter, system)
    tests = [t for t in TESTS if run_compliance or not t.startswith("TEST")]
    record: dict[str, Any] = {"config": cfg.to_dict(), "division": division, "submitter": submitter,
                              "scenarios": scenario_list, "tests": tests, "command": command}
    verdicts: dict[str, str] = {}
    try:
        dataset, model = session.open_dataset(cfg)
        record["model_path"] = model
        with session.prepared(cfg, dataset, model, record) as parts:
            backend, info, store, estimate = parts.backend, parts.info, parts.store, parts.estimate
            for scenario in scenario_list:
                scfg = scenario_config(cfg, scenario, model_rules, estimate)
                for test in tests:
                    outdir = tree.run_dir(model_dir, scenario, test)
                    outdir.mkdir(parents=True, exist_ok=True)
                    if test.startswith("TEST"):  # TEST04 repeats one loaded sample: it needs their count
                        compliance.write_audit_config(test, outdir, model_rules,
                                                      performance_samples(scfg, estimate, len(store)))
                    mode = "accuracy" if test == "accuracy" else "performance"
                    if mode == "performance":  # measure every timed run from the same warm state
                        runner.warm_up(backend, info, dataset, store, cfg.samples_per_query or 8,
                                       cfg.sample_timeout_s)
                    echo(f"running {scenario} {test} ({len(store)} samples) ...")
                    result = runner.run_test(scfg, mode, backend, info, dataset, store, estimate, outdir)
                    if result.error:
                        failure = BackendFailure(f"{scenario} {test}: {result.error}")
                        failure.hung = result.hung  # the CLI must os._exit when LoadGen is stuck
                        raise failure
            runtime = backend.version()
        for scenario in scenario_list:
            _assemble(tree, scenario_config(cfg, scenario, model_rules, estimate), model_rules, model_dir, scenario, run_compliance, dataset, info, model,
                      command, verdicts, read_predictions, user_desc.get("measurements") or {})
        detected = system_desc.detect(cfg.backend, cfg.device, runtime)
        desc, field_problems = system_desc.describe(detected, user_desc, division, submitter)
        tree.write_system(desc)
        tree.write_src(_src_readme(command, cfg))
        if division == "open":
            tree.write_model_mapping({model_dir: model_rules.official} if model_rules.official else {})
    except BaseException as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        _write_json(root / "full_logs" / "submission.json", record)
        if not getattr(exc, "hung", False):
            # a signal may end the test running as a failure of that test: still an interruption
            stopped = isinstance(exc, (KeyboardInterrupt, Interrupted)) or signals.requested()
            run_dir.finish(state="interrupted" if stopped else "failed")
        raise
    found = validate.findings(root)
    problems = [f.line() for f in found if f.problem]
    notes = [f.line() for f in found if not f.problem]
    for scenario in scenario_list:
        where = tree.scenario_dir(model_dir, scenario).relative_to(root).as_posix()
        model_where = where.rsplit("/", 1)[0]
        mine = [f for f in found if f.where.startswith(where + "/") or f.where in (where, model_where)
                or "/results/" not in f.where]
        readme = _scenario_readme(scenario_config(cfg, scenario, model_rules, estimate), scenario, command, model_dir, mine)
        (tree.scenario_dir(model_dir, scenario) / "README.md").write_text(readme)
    record.update(problems=problems, notes=notes, verdicts=verdicts, system_fields_problems=field_problems)
    _write_json(root / "full_logs" / "submission.json", record)
    status = [QUICK_LABEL] if cfg.quick else []
    status += [f"{len(problems)} problem(s) the official {rules.VERSION} checker reports too "
               f"(submission.validate.check_tree):"] + [
        f"- {p}" for p in problems] if problems else ["submission.validate.check_tree found no problem"]
    if notes:
        status += ["", f"{len(notes)} note(s) the official checker does not check:"] + [f"- {n}" for n in notes]
    (root / "STATUS.txt").write_text("\n".join(status) + "\n")
    final = run_dir.finish(ok=True)
    return SubmissionResult(final, problems, cfg.quick, verdicts, notes)


def performance_samples(cfg: Config, estimate, available: int) -> int:
    """How many samples LoadGen loads for ``cfg``'s performance test: the
    requested performance sample count, at most the ``available`` ones
    (what ``sut.runner.run_test`` gives LoadGen)."""
    from sut import settings  # imports LoadGen

    requested = settings.build(cfg, "performance", estimate).performance_sample_count_override
    return min(requested or available, available)


def _assemble(tree: Tree, cfg: Config, model_rules, model_dir: str, scenario: str, run_compliance: bool,
              dataset, info, model_path, command: str, verdicts: dict, read_predictions,
              measurement_overrides: dict) -> None:
    from sut.logs import read_detail

    tree.add_accuracy(model_dir, scenario)
    tree.add_performance(model_dir, scenario)
    perf_detail = tree.run_dir(model_dir, scenario, "performance") / "mlperf_log_detail.txt"
    if run_compliance:
        acc_log = tree.run_dir(model_dir, scenario, "accuracy") / "mlperf_log_accuracy.json"
        t01 = tree.run_dir(model_dir, scenario, "TEST01")
        checked = compliance.verify_test01_accuracy(acc_log, t01 / "mlperf_log_accuracy.json", dataset.score)
        logged = read_predictions_safe(read_predictions, t01 / "mlperf_log_accuracy.json")
        files = {"accuracy.txt": dataset.score(logged).line() + "\n"}
        if checked.baseline is not None:
            files["baseline_accuracy.txt"] = checked.baseline.line() + "\n"
            files["compliance_accuracy.txt"] = checked.compliance.line() + "\n"
        perf01 = compliance.verify_test01_performance(perf_detail, t01 / "mlperf_log_detail.txt")
        tree.add_compliance(model_dir, scenario, "TEST01", checked.verdict.text(), perf01.text(), files)
        t04 = tree.run_dir(model_dir, scenario, "TEST04")
        perf04 = compliance.verify_test04_performance(perf_detail, t04 / "mlperf_log_detail.txt")
        tree.add_compliance(model_dir, scenario, "TEST04", None, perf04.text())
        for name, verdict in (("TEST01/verify_accuracy.txt", checked.verdict),
                              ("TEST01/verify_performance.txt", perf01), ("TEST04/verify_performance.txt", perf04)):
            verdicts[f"{scenario}/{name}"] = compliance.PASS if verdict.passed else compliance.FAIL
    note = "QUICK RUN: short settings, not valid for submission." if cfg.quick else ""
    bound = rules.latency_bound_ns(model_rules, scenario)
    user_conf = user_conf_text(read_detail(perf_detail), cfg.mlperf_model, scenario, note,
                               bound / 1e6 if bound else None)
    measurements = {**_measurements(cfg, info, model_path), **measurement_overrides}
    tree.write_scenario_files(model_dir, scenario, measurements,
                              user_conf, _scenario_readme(cfg, scenario, command, model_dir))


def read_predictions_safe(read_predictions, path: Path) -> dict:
    try:
        return read_predictions(path)
    except (BackendFailure, ValueError, OSError) as exc:
        log.warning("cannot score %s: %s", path, exc)
        return {}


def _measurements(cfg: Config, info, model_path) -> dict[str, Any]:
    dtype = info.input.dtype.name
    weights = cfg.precision or (dtype if info.input.quantized else {"float32": "fp32", "float16": "fp16"}.get(
        dtype, dtype))
    return {
        "input_data_types": dtype,
        "retraining": "No",
        "starting_weights_filename": os.path.basename(str(model_path or "none")),
        "weight_data_types": weights,
        "weight_transformations": "none: the model file is used as given" if not cfg.precision else
        f"converted by the runtime to {cfg.precision}",
        "backend": cfg.backend,
        "harness_profile": cfg.profile,
    }


def _git_commit() -> str:
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def _src_readme(command: str, cfg: Config) -> str:
    return (f"# Source\n\nThese results were produced with the mlperf-edge LoadGen harness\n"
            f"(`python run.py`), commit {_git_commit()}.\n\n"
            f"Backend `{cfg.backend}`, profile `{cfg.profile or '-'}`, on {platform.platform()}, "
            f"Python {platform.python_version()}.\n\nCommand:\n\n    {command}\n")


def _scenario_readme(cfg: Config, scenario: str, command: str, model_dir: str, found=None) -> str:
    quick = f"**{QUICK_LABEL}**\n\n" if cfg.quick else ""
    single = ["python", "run.py", "--profile", cfg.profile or "demo", "--backend", cfg.backend,
              "--scenario", scenario, "--mode", "both", "--user-conf", "user.conf"]
    if cfg.model:
        single += ["--model", str(cfg.model)]
    if cfg.dataset_path:
        single += ["--dataset-path", str(cfg.dataset_path)]
    if cfg.count:
        single += ["--count", str(cfg.count)]
    text = (f"# {model_dir} {scenario}\n\n{quick}"
            f"Produced by the harness's submission mode (commit {_git_commit()}):\n\n    {command}\n\n"
            f"The accuracy and performance runs of this scenario alone, with the settings in user.conf:\n\n"
            f"    {' '.join(shlex.quote(a) for a in single)}\n\n")
    if found is not None:
        problems = [f.line() for f in found if f.problem]
        notes = [f.line() for f in found if not f.problem]
        text += (f"## Problems the official {rules.VERSION} checker reports for this scenario\n\n"
                 + ("".join(f"- {p}\n" for p in problems) if problems else "None.\n") + "\n")
        if notes:
            text += "## Notes (not checked by the official checker)\n\n" + "".join(f"- {n}\n" for n in notes) + "\n"
    return text + f"Resolved configuration:\n\n```json\n{json.dumps(cfg.to_dict(), indent=2)}\n```\n"


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
