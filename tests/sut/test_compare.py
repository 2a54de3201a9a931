"""sut/compare.py: ``run.py --compare DIR...`` on real runs and on a precision sweep's directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sut import compare, plots
from sut.cli import main
from sut.errors import ResultsError
from tests.sut.report_runs import external_references, png_size, run

HAVE_MATPLOTLIB = plots.available() is None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    first = run(root, mode="performance")
    second = run(root, count=40)  # accuracy and performance
    assert first.ok and second.ok
    return root, Path(first.directory), Path(second.directory)


def sweep_dir(root: Path, first: Path, second: Path) -> Path:
    """A sweep.json as sut/sweep.py writes it, naming the two runs."""
    directory = root / "results" / "20990101-000000-demo-SingleStream-sweep"
    directory.mkdir(parents=True, exist_ok=True)
    rows = [{"precision": "fp32", "applied": "fp32", "directory": str(first)},
            {"precision": "int8", "applied": "int8 (Q/DQ model /x.onnx)", "directory": str(second)}]
    (directory / "sweep.json").write_text(json.dumps({"scenario": "SingleStream", "noise": 0.05, "rows": rows,
                                                      "repeat": None}))
    return directory


def test_runs_and_a_folder_of_them(runs):
    root, first, second = runs
    entries = compare.collect([str(first), str(second)])
    assert [e.label for e in entries] == [first.name, second.name]
    assert entries[0].run.accuracy is None and entries[1].accuracy_percent == 100.0
    assert [e.label for e in compare.collect([str(root / "results")])] == [first.name, second.name]
    text = compare.text_table(entries)
    assert "90th percentile latency = " in text and "1.00x" in text and "100.000%" in text


def test_a_sweep_directory_lists_its_rows_in_order(runs):
    root, first, second = runs
    entries = compare.collect([str(sweep_dir(root, first, second))])
    assert [e.label for e in entries] == ["fp32 (ran fp32)", "int8 (ran int8)"]
    assert entries[1].noise == 0.05 and entries[1].applied == "int8"


def test_the_command_writes_a_self_contained_comparison(runs, capsys):
    root, first, second = runs
    out = root / "compared"
    assert main(["--compare", str(sweep_dir(root, first, second)), str(first), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fp32 (ran fp32)" in printed and "saved:" in printed
    (directory,) = out.iterdir()
    html = (directory / "compare.html").read_text()
    assert external_references(html) == []
    assert (directory / "compare.txt").read_text().splitlines()[0].startswith("run")
    if HAVE_MATPLOTLIB:
        assert png_size(directory / "compare_metric.png") == plots.SIZE
        assert png_size(directory / "compare_cdf.png") == plots.SIZE
        assert png_size(directory / "compare_accuracy.png") == plots.SIZE
        assert html.count("src='data:image/png;base64,") == 3
    else:
        assert "pip install matplotlib" in html


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason=f"needs matplotlib for plots ({plots.available()})")
def test_several_scenarios_get_a_panel_each(tmp_path):
    group = lambda name, unit: {"title": name, "unit": unit, "lower_is_better": unit == "ms",  # noqa: E731
                                "bars": [{"label": "a", "value": 1.0, "valid": True, "speedup": 1.0, "noise": 0.1},
                                         {"label": "b", "value": None, "valid": False, "speedup": None}]}
    path = compare.plots.compare_bars([group("SingleStream", "ms"), group("Offline", "samples/s")],
                                      tmp_path / "bars.png")
    assert png_size(path) == plots.TALL


def test_what_is_not_a_result_directory_is_one_error(tmp_path, capsys):
    with pytest.raises(ResultsError, match="no results in"):
        compare.collect([str(tmp_path)])
    assert main(["--compare", str(tmp_path / "absent")]) == ResultsError.exit_code
    assert capsys.readouterr().err.strip() == f"error: --compare: no directory {tmp_path / 'absent'}"
