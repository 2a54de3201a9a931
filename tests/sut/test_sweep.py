import pytest

from sut import sweep
from sut.errors import ConfigError
from tests.helpers import NULL_AS_DEMO, run_cli


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


def test_sweep_end_to_end_with_null_backend(tmp_path):
    proc = run_cli("--profile", "demo", *NULL_AS_DEMO, "--precision", "fp32,fp16", "--scenario", "Offline",
                   tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "precision  result" in proc.stdout
    assert proc.stdout.count("VALID") >= 2 and "accuracy" in proc.stdout
