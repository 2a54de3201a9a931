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
from sut.errors import BackendFailure, ConfigError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
TESTS = ("accuracy", "performance", "TEST01", "TEST04")
QUICK_LABEL = "QUICK RUN: NOT VALID FOR SUBMISSION (short runs on purpose; see the problems below)"


@dataclasses.dataclass
class SubmissionResult:
    root: Path
    problems: list[str]           # everything check_tree found, plus system fields to fill
    quick: bool
    verdicts: dict[str, str]      # "<Scenario>/TEST01/verify_accuracy.txt" -> "TEST PASS" / "TEST FAIL"

    @property
    def ok(self) -> bool:
        return not self.problems


def plan(cfg: Config, division: str, scenarios: list[str] | None, with_compliance: bool | None
         ) -> tuple[rules.ModelRules, str, list[str], bool]:
    """(rules, model directory name, scenarios, compliance?) or ConfigError."""
    if division not in rules.DIVISIONS:
        raise ConfigError(f"unknown division '{division}'; choose one of: {', '.join(rules.DIVISIONS)}")
    model_rules = rules.BY_MLPERF_MODEL.get(cfg.mlperf_model)
    if model_rules is None:
        raise ConfigError(f"no submission rules for mlperf_model '{cfg.mlperf_model}'; "
                          f"known: {', '.join(rules.BY_MLPERF_MODEL)}")
    if division == "closed":
        if model_rules.official not in rules.CLOSED_MODELS or cfg.model_name not in ("resnet", "resnet50"):
            raise ConfigError(
                f"the closed division has no benchmark for model '{cfg.model_name}' "
                f"(v6.1 closed image classification is ResNet50 only; MobileNet was closed only in v0.5, "
                f"keyword spotting never): use division 'open'")
        model_dir = model_rules.official
        default_scenarios = list(model_rules.required_scenarios_edge)
    else:
        model_dir = cfg.model_name
        default_scenarios = [cfg.scenario]
    chosen = list(scenarios or default_scenarios)
    unknown = [s for s in chosen if s not in rules.SCENARIOS]
    if unknown:
        raise ConfigError(f"unknown scenario {', '.join(unknown)}; choose from: {', '.join(rules.SCENARIOS)}")
    if division == "closed":
        missing = [s for s in model_rules.required_scenarios_edge if s not in chosen]
        if missing:
            raise ConfigError(f"closed edge {model_dir} needs scenarios {', '.join(missing)} too")
    return model_rules, model_dir, chosen, (division == "closed") if with_compliance is None else with_compliance


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
    model_rules, model_dir, scenario_list, run_compliance = plan(cfg, division, scenarios, with_compliance)
    user_desc = system_desc.load_user_file(system_desc_path)
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
                scfg = dataclasses.replace(cfg, scenario=scenario)
                for test in tests:
                    outdir = tree.run_dir(model_dir, scenario, test)
                    outdir.mkdir(parents=True, exist_ok=True)
                    if test.startswith("TEST"):
                        compliance.write_audit_config(test, outdir, model_rules)
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
            _assemble(tree, cfg, model_rules, model_dir, scenario, run_compliance, dataset, info, model,
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
            run_dir.finish(ok=False)
        raise
    problems = validate.check_tree(root)
    record.update(problems=problems, verdicts=verdicts, system_fields_to_fill=field_problems)
    _write_json(root / "full_logs" / "submission.json", record)
    status = [QUICK_LABEL] if cfg.quick else []
    status += [f"{len(problems)} problem(s) found by submission.validate.check_tree:"] + [
        f"- {p}" for p in problems] if problems else ["submission.validate.check_tree found no problem"]
    (root / "STATUS.txt").write_text("\n".join(status) + "\n")
    final = run_dir.finish(ok=True)
    return SubmissionResult(final, problems, cfg.quick, verdicts)


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
    user_conf = user_conf_text(read_detail(perf_detail), cfg.mlperf_model, scenario, note)
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


def _scenario_readme(cfg: Config, scenario: str, command: str, model_dir: str) -> str:
    quick = f"**{QUICK_LABEL}**\n\n" if cfg.quick else ""
    single = ["python", "run.py", "--profile", cfg.profile or "demo", "--backend", cfg.backend,
              "--scenario", scenario, "--mode", "both", "--user-conf", "user.conf"]
    if cfg.model:
        single += ["--model", str(cfg.model)]
    if cfg.dataset_path:
        single += ["--dataset-path", str(cfg.dataset_path)]
    if cfg.count:
        single += ["--count", str(cfg.count)]
    return (f"# {model_dir} {scenario}\n\n{quick}"
            f"Produced by the harness's submission mode (commit {_git_commit()}):\n\n    {command}\n\n"
            f"The accuracy and performance runs of this scenario alone, with the settings in user.conf:\n\n"
            f"    {' '.join(shlex.quote(a) for a in single)}\n\n"
            f"Resolved configuration:\n\n```json\n{json.dumps(cfg.to_dict(), indent=2)}\n```\n")


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
