"""sut.errors is the ground floor: every package imports it at module top."""

import ast
import subprocess
import sys
from pathlib import Path

from sut import errors

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("backends", "datasets", "profiles", "submission", "sut", "benchmarks")


def test_importing_errors_imports_no_other_project_module():
    code = ("import sys, sut.errors; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in %r))" % (PACKAGES,))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['sut', 'sut.errors']"


def test_no_function_imports_the_error_types():
    late = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    for inner in ast.walk(node):
                        if isinstance(inner, ast.ImportFrom) and inner.module == "sut.errors":
                            late.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert late == [], "import sut.errors at module top: " + ", ".join(late)


def test_every_error_has_its_own_exit_code():
    kinds = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.HarnessError)]
    codes = [c.exit_code for c in kinds if c is not errors.HarnessError]
    assert len(codes) == len(set(codes))
