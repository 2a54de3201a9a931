"""Our top-level ``datasets`` package and Hugging Face's must not break each other."""

import ast
import subprocess
import sys

from tests.helpers import ROOT


def test_setup_installs_no_top_level_packages():
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    packages = next(k.value for k in call.keywords if k.arg == "packages")
    assert isinstance(packages, ast.List) and packages.elts == []


def fake_hf_datasets(tmp_path):
    pkg = tmp_path / "site" / "datasets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("HUGGING_FACE = True\n")
    return tmp_path / "site"


def test_run_py_uses_our_datasets_even_when_another_is_installed(tmp_path):
    site = fake_hf_datasets(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "--list-profiles"], capture_output=True,
                          text=True, cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert "datasets: imagenet" in proc.stdout


def test_other_programs_still_get_their_datasets(tmp_path):
    site = fake_hf_datasets(tmp_path)
    proc = subprocess.run([sys.executable, "-c", "import datasets; print(datasets.HUGGING_FACE)"],
                          capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert proc.stdout.strip() == "True", proc.stderr


def test_import_backends_needs_only_numpy():
    code = ("import sys; sys.path.insert(0, %r); import backends, datasets, profiles; "
            "import backends.litert, backends.onnxrt, backends.null; "
            "bad = [m for m in ('ai_edge_litert', 'onnxruntime', 'openvino', 'tensorflow', 'tensorrt', "
            "'mlperf_loadgen', 'PIL') if m in sys.modules]; print(bad)") % str(ROOT)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_every_module_parses_as_python_3_8():
    """Syntax newer than 3.8 (match, parenthesised context managers, except*, ...) fails here on any
    Python; what 3.8 lacks at run time is found by running the suite there (.ci/compat/py38.sh)."""
    skip = {".venv", ".git", "build", "results"}
    files = [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]
    bad = []
    for path in files:
        try:
            ast.parse(path.read_text(encoding="utf-8"), str(path), feature_version=(3, 8))
        except SyntaxError as exc:
            bad.append(f"{path.relative_to(ROOT)}:{exc.lineno}: {exc.msg}")
    assert len(files) > 50 and not bad, bad


def test_setup_py_is_truthful_about_python():
    text = (ROOT / "setup.py").read_text(encoding="utf-8")
    assert 'python_requires=">=3.8"' in text and "tomli" in text
