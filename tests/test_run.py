"""``run.py`` end to end with the real LoadGen: the demo, every scenario, and
what a user sees when something is wrong."""

import glob
import json
import os
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import need_module, shared_path
from tests.helpers import NULL_AS_DEMO, ROOT, run_cli, run_dirs

SCENARIOS = ["SingleStream", "MultiStream", "Offline", "Server"]


def test_demo_accuracy_is_perfect_and_performance_valid(tmp_path):
    proc = run_cli("--profile", "demo", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy=100.000%, good=60, total=60" in proc.stdout
    assert "result    : VALID" in proc.stdout
    (run,) = run_dirs(tmp_path)
    assert not run.name.endswith((".partial", ".failed"))
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["profile"] == "demo" and config["response_dtype"] == "float32"
    scenario = next(run.glob("*/synthetic/SingleStream"))
    assert (scenario / "accuracy" / "accuracy.txt").read_text().startswith("accuracy=100.000%")
    assert "Result is : VALID" in (scenario / "performance/run_1/mlperf_log_summary.txt").read_text()
    assert (run / "summary.txt").read_text() in proc.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_null_backend_every_scenario_valid(tmp_path, scenario):
    proc = run_cli("--profile", "demo", *NULL_AS_DEMO, "--mode", "performance", "--quick",
                   "--scenario", scenario, "--max-batchsize", "4", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "result    : VALID" in proc.stdout, proc.stdout


# warm-up makes 50 single calls + 5 timed items of all 60 demo samples
# (sut.runner.warm_up) = 350 predict calls with these fast one-sample
# backends: faults after 380 happen under LoadGen, and accuracy runs (60
# samples) end at call 410
FAULTS = [(s, "performance", 400) for s in SCENARIOS] + [("SingleStream", "accuracy", 380),
                                                         ("Offline", "accuracy", 380)]


def fault_run(tmp_path, scenario, mode, after, fault):
    """(CompletedProcess, seconds) of one faulty run."""
    start = time.monotonic()
    proc = run_cli("--profile", "demo", *NULL_AS_DEMO[2:], "--backend", f"tests.sut.faulty_backend:{fault}",
                   "--scenario", scenario, "--mode", mode, "--quick", "--sample-timeout", "1",
                   "--max-batchsize", "1", tmp_path=tmp_path, timeout=60, env={"FAULT_AFTER": str(after)})
    return proc, time.monotonic() - start


@pytest.fixture(scope="module")
def fault_runs(request, tmp_path_factory):
    """The selected faulty runs, started together: each mostly waits (a hung call's timeout, then the
    runner's grace before it gives up on LoadGen), so six at a time take about the time of two."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [item.callspec.params for item in request.session.items
             if getattr(item, "originalname", None) == "test_backend_fault_ends_run_with_clear_error"
             and item.module is request.module]
    keys = sorted({(c["scenario"], c["mode"], c["after"], c["fault"]) for c in cases}, key=lambda k: k[3])
    with ThreadPoolExecutor(6) as pool:  # the hanging runs first: they take the longest
        started = {}
        for key in keys:
            tmp = tmp_path_factory.mktemp("fault")
            started[key] = (tmp, pool.submit(fault_run, tmp, *key))
    return {key: (tmp, future) for key, (tmp, future) in started.items()}


@pytest.mark.parametrize("scenario,mode,after", FAULTS)
@pytest.mark.parametrize("fault", ["RaisingBackend", "HangingBackend"])
def test_backend_fault_ends_run_with_clear_error(fault_runs, scenario, mode, after, fault):
    tmp_path, future = fault_runs[(scenario, mode, after, fault)]
    proc, elapsed = future.result()
    assert proc.returncode == 6, (proc.stdout, proc.stderr)
    assert "warm-up" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    expected = f"injected failure on call {after + 1}" if fault == "RaisingBackend" else "no answer for"
    assert last.startswith("error: ") and expected in last, proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < 30
    (run,) = run_dirs(tmp_path)
    assert run.name.endswith((".failed", ".partial")), run.name  # never looks complete


def test_fault_during_warm_up_is_reported(tmp_path):
    proc = run_cli("--profile", "demo", *NULL_AS_DEMO[2:], "--backend", "tests.sut.faulty_backend:RaisingBackend",
                   tmp_path=tmp_path, env={"FAULT_AFTER": "0"})
    assert proc.returncode == 6
    assert "failed during warm-up: RuntimeError: injected failure on call 1" in proc.stderr


def test_wrong_result_count_fails(tmp_path):
    proc = run_cli("--profile", "demo", *NULL_AS_DEMO[2:], "--backend", "tests.sut.faulty_backend:WrongCountBackend",
                   "--scenario", "Offline", "--mode", "performance", "--quick", "--max-batchsize", "4",
                   tmp_path=tmp_path, env={"FAULT_AFTER": "400"})
    assert proc.returncode == 6
    assert "backend returned 3 results for a batch of 4 samples" in proc.stderr


@pytest.mark.parametrize("args,code,message", [
    (["--profile", "nope"], 2, "error: unknown profile 'nope'; choose one of:"),
    (["--profile", "demo", "--model", "/nonexistent/m.onnx"], 3, "error: model file not found: /nonexistent/m.onnx"),
    (["--profile", "demo", "--backend", "nope"], 2, "error: unknown backend 'nope'"),
    (["--profile", "demo", "--count", "0"], 2, "error: --count / count must be a whole number >= 1, got 0"),
    (["--profile", "demo", "--count", "1000"], 4, "asks for more samples than"),
    (["--profile", "demo", "--user-conf", "/nonexistent/user.conf"], 2, "error: user.conf not found"),
    (["--profile", "mobilenet_tflite", "--model", "x.tflite", "--dataset-path", "/nonexistent/imagenet"],
     4, "/nonexistent/imagenet"),
    (["--profile", "mobilenet_tflite", "--model", "x.tflite"], 4,
     "error: profile 'mobilenet_tflite' runs on the imagenet dataset: pass --dataset-path"),
    (["--profile", "kws_tflite"], 4, "error: profile 'kws_tflite' runs on the speech_commands dataset: pass --dataset-path"),
])
def test_user_mistakes_give_one_line_and_exit_code(tmp_path, args, code, message):
    args = [a.replace("{data}", str(tmp_path)) for a in args]
    proc = run_cli(*args, tmp_path=tmp_path)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_earlier_results_are_never_overwritten(tmp_path):
    for _ in range(2):
        proc = run_cli("--profile", "demo", *NULL_AS_DEMO, "--mode", "performance", "--quick", tmp_path=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert len(run_dirs(tmp_path)) == 2


def test_help_and_listing(tmp_path):
    proc = run_cli("--help", tmp_path=tmp_path)
    assert proc.returncode == 0 and "--samples-per-query" in proc.stdout and "examples:" in proc.stdout
    proc = run_cli("--list-profiles", tmp_path=tmp_path)
    assert "mobilenet_tflite" in proc.stdout and "backends: null" in proc.stdout


def test_show_config_prints_the_merged_layers(tmp_path):
    proc = run_cli("--profile", "mobilenet_tflite", "--scenario", "Offline", "--show-config", tmp_path=tmp_path)
    config = json.loads(proc.stdout)
    assert config["backend"] == "litert" and config["scenario"] == "Offline"


def test_submission_from_the_command_line_then_checked(tmp_path):
    proc = run_cli("--profile", "demo", *NULL_AS_DEMO, "--quick", "--submission", "open", "--submitter", "Acme",
                   "--scenarios", "Offline", tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stderr  # a quick tree always has problems
    assert "submission tree: " in proc.stdout and "not valid for submission" in proc.stdout
    problems = [line[3:] for line in proc.stdout.splitlines() if line.startswith(" - ")]
    # the official checker's complaints about a quick run: its duration, its sample counts
    perf = r"open/Acme/results/[^/]+-null/synthetic/Offline/performance/run_1/mlperf_log_detail\.txt: "
    assert any(re.fullmatch(perf + r"min duration \d+ ms < 600000 ms", p) for p in problems), problems
    assert any(re.fullmatch(perf + r"performance sample count \d+ < 1024", p) for p in problems), problems
    root = proc.stdout.split("submission tree: ")[1].split()[0]
    check = run_cli("--check-submission", root, tmp_path=tmp_path)
    assert check.returncode == 1, check.stderr
    # the checker finds on disk exactly what the run reported, then lists its notes
    lines = check.stdout.splitlines()
    end = lines.index(f"{len(problems)} problem(s) in {root}")
    assert [line[2:] for line in lines[:end]] == problems and all(line.startswith("- ") for line in lines[:end])
    from submission import validate

    assert problems == validate.check_tree(root)
    assert lines[end + 1:] == [f"  note: {note}" for note in validate.check_notes(root)] and lines[end + 1:]


def test_submission_needs_a_submitter(tmp_path):
    proc = run_cli("--profile", "demo", "--submission", "open", tmp_path=tmp_path)
    assert proc.returncode == 2 and "--submitter" in proc.stderr


# --- what the environment lacks: one line, never a traceback ----------------------------

def old_pythons():
    """pyenv's interpreters older than 3.8 (this machine has 2.7, 3.6, 3.7), else none."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(os.path.join(root, "versions", "[23].[0-7].*", "bin", "python")))
    return found or [pytest.param(None, marks=pytest.mark.skip(reason="no Python older than 3.8 under pyenv"))]


@pytest.mark.parametrize("python", old_pythons(), ids=lambda p: p and p.split(os.sep)[-3])
def test_python_older_than_3_8_is_one_line(python):
    proc = subprocess.run([python, str(ROOT / "run.py"), "--profile", "demo"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={"PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: this harness needs Python 3.8 or newer")


def run_without(module: str, *args: str):
    """run.py in a subprocess in which ``module`` cannot be imported."""
    code = ("import runpy, sys; sys.modules[%r] = None; sys.argv = ['run.py'] + %r; "
            "runpy.run_path(%r, run_name='__main__')" % (module, list(args), str(ROOT / "run.py")))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_missing_loadgen_says_how_to_install_it(tmp_path):
    proc = run_without("mlperf_loadgen", "--profile", "demo", "--output", str(tmp_path))
    assert proc.returncode == 5, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: MLPerf LoadGen (Python module 'mlperf_loadgen') is not installed")
    assert "pip install 'mlcommons-loadgen>=6.0.16'" in line and "build-essential python3-dev" in line


def test_missing_numpy_says_to_install_the_dependencies():
    proc = run_without("numpy", "--list-profiles")
    assert proc.returncode == 5 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: the Python package 'numpy' is not installed") and "pip install -e ." in line


def test_edgetpu_without_its_runtime_is_one_line(tmp_path):
    """For real: no libedgetpu here (LiteRT or tflite-runtime; .ci/compat/py39-tflite-runtime.sh runs it
    with tflite-runtime)."""
    need_module("ai_edge_litert.interpreter", "the Edge TPU backend is LiteRT with a delegate")
    model = shared_path("models", "mobilenet", "mobilenet_v1_0.25_128_quant_edgetpu.tflite")
    proc = run_cli("--profile", "mobilenet_coral", "--model", str(model), "--dataset", "synthetic",
                   "--quick", tmp_path=tmp_path)
    assert proc.returncode == 5, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("error: cannot open the Edge TPU delegate 'libedgetpu.so.1'") and "libedgetpu1-std" in line
