import json
from pathlib import Path

import pytest

from profiles import Config
from sut import sweep
from sut.errors import ConfigError, Interrupted, ModelError
from sut.signals import Stop
from tests.helpers import NULL_AS_DEMO, run_cli, run_dirs


def test_parse_precisions():
    assert sweep.parse_precisions("fp32, fp16,int8") == ["fp32", "fp16", "int8"]
    with pytest.raises(ConfigError, match="unknown precision bf8"):
        sweep.parse_precisions("fp32,bf8")


def test_table_speedup_for_latency_and_throughput():
    rows = [sweep.SweepRow("fp32", "VALID", 2e6, "2.000 ms", "76.000%"),
            sweep.SweepRow("fp16", "VALID", 1e6, "1.000 ms", "75.900%"),
            sweep.SweepRow("int8", error="no calibration")]
    text = sweep.table(rows, "SingleStream")
    assert "2.00x" in text.splitlines()[3] and "1.00x" in text.splitlines()[2]
    assert "FAILED   no calibration" in text
    rows = [sweep.SweepRow("fp32", "VALID", 100.0), sweep.SweepRow("fp16", "VALID", 250.0)]
    assert "2.50x" in sweep.table(rows, "Offline")


def test_speedups_within_the_measured_noise_are_marked():
    rows = sweep.Sweep([sweep.SweepRow("fp32", "VALID", 100.0, "100.00 samples/s", applied="fp32", directory="r/a"),
                        sweep.SweepRow("fp16", "VALID", 104.0, "104.00 samples/s", applied="f16 (hint)"),
                        sweep.SweepRow("int8", "VALID", 150.0, "150.00 samples/s")])
    rows.repeat = sweep.SweepRow("fp32", "VALID", 95.0, "95.00 samples/s", directory="r/b")
    rows.noise = 0.05
    lines = sweep.table(rows, "Offline").splitlines()
    assert lines[2].endswith("1.00x")  # the baseline itself is not judged
    assert lines[3].endswith("1.04x ~ (within noise)") and lines[4].endswith("1.50x")
    assert "run-to-run noise: 5.0% (fp32 measured twice: 100.00 samples/s, then 95.00 samples/s" in lines[5]
    assert "fp16: ran f16 (hint); -" in lines and "fp32 (repeat): ran -; r/b" in lines
    data = sweep.to_json(rows, "Offline")
    assert [r["within_noise"] for r in data["rows"]] == [False, True, False]
    assert data["noise"] == 0.05 and data["repeat"]["directory"] == "r/b" and data["baseline"] == "fp32"


def test_run_checks_first_then_repeats_the_baseline(tmp_path):
    calls = []

    class Outcome:
        def __init__(self, directory):
            self.directory, self.tests = directory, [Test()]

    class Test:
        error, accuracy, mode, validity, metric = None, None, "performance", "VALID", ("x", "1.0 ms")
        detail = {"result_90.00_percentile_latency_ns": 1e6}

    def execute(cfg):
        calls.append((cfg.precision, cfg.mode))
        directory = tmp_path / f"run{len(calls)}"
        directory.mkdir()
        (directory / "config.json").write_text(json.dumps({"backend": {"precision": f"ran {cfg.precision}"}}))
        return Outcome(directory)

    def check(cfg, precisions):
        calls.append(("check", tuple(precisions)))

    cfg = Config(output=str(tmp_path / "out"), profile="p", mode="both")
    rows = sweep.run(cfg, ["fp32", "int8"], execute, echo=lambda *_: None, check=check)
    assert calls == [("check", ("fp32", "int8")), ("fp32", "both"), ("int8", "both"), ("fp32", "performance")]
    assert [r.applied for r in rows] == ["ran fp32", "ran int8"] and rows.noise == sweep.NOISE_FLOOR
    saved = json.loads((rows.saved / "sweep.json").read_text())
    assert saved["rows"][1]["applied"] == "ran int8" and (rows.saved / "sweep.txt").read_text().startswith("precision")

    def refuse(cfg, precisions):
        raise ConfigError("backend 'x' cannot apply precision fp16")

    calls.clear()
    with pytest.raises(ConfigError):
        sweep.run(cfg, ["fp32", "fp16"], execute, echo=lambda *_: None, check=refuse)
    assert calls == []


@pytest.mark.parametrize("stop", [Interrupted(15), Stop(2)], ids=["Interrupted", "signals.Stop"])
def test_an_interruption_stops_the_sweep_at_once(tmp_path, stop):
    calls = []

    def execute(cfg):
        calls.append(cfg.precision)
        if cfg.precision == "fp16":
            raise ModelError("fp16 failed")  # an ordinary error: a FAILED row, the sweep goes on
        raise stop

    cfg = Config(output=str(tmp_path / "out"), profile="p")
    with pytest.raises(type(stop)):
        sweep.run(cfg, ["fp16", "fp32", "int8"], execute, echo=lambda *_: None, check=lambda *a: None)
    assert calls == ["fp16", "fp32"] and not (tmp_path / "out").exists()


def test_sweep_end_to_end_with_null_backend(tmp_path):
    proc = run_cli("--profile", "demo", *NULL_AS_DEMO, "--precision", "fp32,fp16", "--scenario", "Offline",
                   tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "precision  result" in proc.stdout
    assert proc.stdout.count("VALID") >= 2 and "accuracy" in proc.stdout
    assert "run-to-run noise:" in proc.stdout and "fp16: ran none (the null backend runs no model)" in proc.stdout
    sweeps = [d for d in run_dirs(tmp_path) if d.name.endswith("-sweep")]
    assert len(sweeps) == 1 and len(run_dirs(tmp_path)) == 4  # fp32, fp16, the fp32 repeat, the table
    data = json.loads((sweeps[0] / "sweep.json").read_text())
    assert [r["precision"] for r in data["rows"]] == ["fp32", "fp16"] and data["repeat"]["precision"] == "fp32"
    assert all(Path(r["directory"]).is_dir() for r in data["rows"])
    assert (sweeps[0] / "sweep.txt").read_text() in proc.stdout


def test_a_precision_the_backend_cannot_apply_is_refused_before_any_run(tmp_path):
    proc = run_cli("--profile", "demo", "--precision", "fp32,fp16,int8", tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error: backend 'onnxruntime' cannot apply precision fp16" in proc.stderr
    assert run_dirs(tmp_path) == [] and "== precision" not in proc.stdout
    proc = run_cli("--profile", "demo", "--precision", "fp16", tmp_path=tmp_path)
    assert proc.returncode == 2 and "cannot apply precision fp16" in proc.stderr and run_dirs(tmp_path) == []


def test_onnxruntime_sweep_runs_int8_as_a_calibrated_copy(tmp_path):
    pytest.importorskip("onnx", reason="int8 calibration reads the model with onnx")
    proc = run_cli("--profile", "demo", "--precision", "fp32,int8", "--count", "40", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sweeps = [d for d in run_dirs(tmp_path) if d.name.endswith("-sweep")]
    data = json.loads((sweeps[0] / "sweep.json").read_text())
    fp32, int8 = data["rows"]
    assert fp32["applied"] == "fp32" and fp32["accuracy"] == "100.000%"
    assert int8["applied"].startswith("int8 (Q/DQ model ") and str(tmp_path / "cache" / "qdq") in int8["applied"]
    assert int8["accuracy"] == "100.000%" and int8["validity"] == "VALID"
