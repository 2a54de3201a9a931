"""check_tree on copies of a real quick tree, each broken in one way."""

import json
import shutil

import pytest

from submission.validate import check_tree


@pytest.fixture
def tree(kws_tree, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(kws_tree.root, root)
    base = root / "open" / "TestOrg"
    system = next((base / "results").iterdir()).name
    return root, base, system, base / "results" / system / "kws" / "Offline"


def new_problems(root, kws_tree):
    before = {p for p in kws_tree.problems}
    return [p for p in check_tree(root) if p not in before]


def test_the_copy_has_the_same_problems(tree, kws_tree):
    assert check_tree(tree[0]) == kws_tree.problems


def test_missing_and_empty_files(tree, kws_tree):
    root, base, system, scen = tree
    (scen / "user.conf").write_text("")
    (scen / "README.md").unlink()
    (scen / "accuracy" / "mlperf_log_summary.txt").unlink()
    (scen / "TEST04" / "verify_performance.txt").unlink()
    shutil.rmtree(base / "src")
    rel = f"open/TestOrg/results/{system}/kws/Offline"
    assert sorted(new_problems(root, kws_tree)) == sorted([
        f"{rel}/user.conf: empty", f"{rel}/README.md: missing",
        f"{rel}/accuracy/mlperf_log_summary.txt: missing", f"{rel}/TEST04/verify_performance.txt: missing",
        "open/TestOrg/src: missing or empty (code or a pointer to it)"])


def test_untruncated_log_and_wrong_hash(tree, kws_tree):
    root, base, system, scen = tree
    full = root / "full_logs" / system / "kws" / "Offline" / "accuracy" / "mlperf_log_accuracy.json"
    shutil.copyfile(full, scen / "accuracy" / "mlperf_log_accuracy.json")
    txt = scen / "accuracy" / "accuracy.txt"
    txt.write_text(txt.read_text().replace("hash=", "hash=00"))
    problems = new_problems(root, kws_tree)
    assert any("accuracy/mlperf_log_accuracy.json:" in p and "not truncated" in p for p in problems)
    assert any(p.endswith(f"hash does not match the full log full_logs/{system}/kws/Offline/accuracy/"
                          "mlperf_log_accuracy.json") for p in problems)
    txt.write_text("top-1 92%\n")
    problems = new_problems(root, kws_tree)
    assert any("first line is not the scorer's" in p for p in problems)
    assert any("no 'hash=<sha256>' line" in p for p in problems)


def test_system_json_fields_and_names(tree, kws_tree):
    root, base, system, scen = tree
    path = base / "systems" / f"{system}.json"
    desc = json.loads(path.read_text())
    desc.update(submitter="Other", cooling="", accelerators_per_node=0)
    del desc["hw_notes"]
    path.write_text(json.dumps(desc))
    rel = f"open/TestOrg/systems/{system}.json"
    assert sorted(new_problems(root, kws_tree)) == sorted([
        f"{rel}: field 'hw_notes' is missing", f"{rel}: field 'cooling' is empty: give it in --system-desc",
        f"{rel}: field 'accelerators_per_node' is empty: give it in --system-desc",
        f"{rel}: submitter is 'Other' but the directory is 'TestOrg'"])
    path.unlink()
    assert f"{rel}: missing system description" in check_tree(root)


def test_measurements_fields(tree, kws_tree):
    root, base, system, scen = tree
    data = json.loads((scen / "measurements.json").read_text())
    data["retraining"] = ""
    (scen / "measurements.json").write_text(json.dumps(data))
    assert new_problems(root, kws_tree) == [
        f"open/TestOrg/results/{system}/kws/Offline/measurements.json: field 'retraining' is missing or empty"]


def test_closed_rules(tree):
    root, base, system, scen = tree
    closed = root / "closed" / "TestOrg"
    shutil.move(str(base), str(closed))
    desc_path = closed / "systems" / f"{system}.json"
    desc_path.write_text(desc_path.read_text().replace('"open"', '"closed"'))
    shutil.rmtree(closed / "results" / system / "kws" / "Offline" / "TEST04")
    problems = check_tree(root)
    model = f"closed/TestOrg/results/{system}/kws"
    assert f"{model}: the closed division has no model 'kws'; accepted: resnet" in problems
    assert f"{model}/Offline/TEST04: missing (compliance test required in the closed division)" in problems
    # as resnet: the required scenarios and the closed accuracy target apply
    shutil.move(str(closed / "results" / system / "kws"), str(closed / "results" / system / "resnet"))
    problems = check_tree(root)
    model = f"closed/TestOrg/results/{system}/resnet"
    assert f"{model}: closed edge needs scenarios SingleStream, MultiStream" in problems
    assert f"{model}/Offline/accuracy/mlperf_log_detail.txt: accuracy run covers 300 samples, the dataset has 50000" \
        in problems
    assert not any("closed target" in p for p in problems)  # 92.3% > 75.7%


def test_not_a_tree(tmp_path):
    assert check_tree(tmp_path / "nothing") == [f"{tmp_path / 'nothing'}: not a directory"]
    (tmp_path / "elsewhere").mkdir()
    assert check_tree(tmp_path) == [f"{tmp_path}: no division directory (closed, open)",
                                    "elsewhere: unknown division; accepted: closed, open"]
