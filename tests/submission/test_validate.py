"""check_tree on copies of real quick trees, each broken in one way.

Every rule the official v6.1 checker enforces for the models we write is
broken in turn and our checker must name exactly that rule at that place.
With ``MLPERF_INFERENCE_DIR`` pointing at a checkout of mlcommons/inference,
the official checker runs on the same broken trees and must report the same
problems, item for item (tests/submission/official_checker.py); without it
that comparison is skipped with the reason.
"""

import json
import re
import shutil

import pytest

from submission import validate
from submission.validate import check_notes, check_tree
from tests.submission import official_checker

MODEL = "{division}/TestOrg/results/{system}/{model}"


def ours(root):
    return official_checker.our_findings(root)


def make_copy(result, tmp_path, division="open"):
    """A copy of a tree; closed: moved to closed/, model directory 'resnet' like a closed tree."""
    root = tmp_path / "tree"
    shutil.copytree(result.root, root)
    base = root / "open" / "TestOrg"
    system = next((base / "results").iterdir()).name
    model = next((base / "results" / system).iterdir()).name
    if division == "closed":
        closed = root / "closed" / "TestOrg"
        closed.parent.mkdir()
        shutil.move(str(base), str(closed))
        shutil.rmtree(root / "open")
        (closed / "model_mapping.json").unlink()
        desc = closed / "systems" / f"{system}.json"
        desc.write_text(desc.read_text().replace('"division": "open"', '"division": "closed"'))
        shutil.move(str(closed / "results" / system / model), str(closed / "results" / system / "resnet"))
        model, base = "resnet", closed
    rel = MODEL.format(division=division, system=system, model=model)
    settle(root)
    return root, base, system, rel


def settle(root):
    """One-second runs on a busy machine may miss early stopping or a compliance band now and then;
    the copies say they met both, so that each breakage below is the only change."""
    for path in root.glob("*/TestOrg/results/**/mlperf_log_detail.txt"):
        text = path.read_text()
        path.write_text(text.replace('"key": "early_stopping_met", "value": false,',
                                     '"key": "early_stopping_met", "value": true,'))
    for path in root.glob("*/TestOrg/results/**/verify_performance.txt"):
        path.write_text(path.read_text().replace("TEST FAIL", "TEST PASS"))


def edit_json(path, **changes):
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def edit_log(path, key, old, new):
    text = path.read_text()
    pattern = f'"key": "{key}", "value": {old},'
    assert pattern in text, (path, pattern)
    path.write_text(text.replace(pattern, f'"key": "{key}", "value": {new},'))


def detail(root, rel, scenario, test=""):
    return root / rel / scenario / (f"{test}/" if test else "") / "performance" / "run_1" / "mlperf_log_detail.txt"


def system_json(root, base, system):
    return base / "systems" / f"{system}.json"


# each: (name, division, break(root, base, system, rel), the findings it adds: (kind, where relative to rel))
BREAKAGES = [
    ("seed", "closed", lambda r, b, s, m: edit_log(detail(r, m, "Offline"), "effective_qsl_rng_seed",
                                                  2085463073848966840, 1),
     {("seed:qsl_rng_seed", "Offline")}),
    ("early_stopping", "closed", lambda r, b, s, m: edit_log(detail(r, m, "Server"), "early_stopping_met",
                                                             "true", "false"),
     {("early_stopping", "Server")}),
    ("server_latency_bound", "closed", lambda r, b, s, m: edit_log(detail(r, m, "Server"),
                                                                  "effective_target_latency_ns", 15000000, 100000000),
     {("latency_constraint", "Server")}),
    ("server_latency_bound_compliance", "closed",
     lambda r, b, s, m: edit_log(detail(r, m, "Server", "TEST04"), "effective_target_latency_ns", 15000000, 100000000),
     {("latency_constraint", "Server/TEST04")}),
    ("edge_system_with_server", "closed", lambda r, b, s, m: edit_json(system_json(r, b, s), system_type="edge"),
     {("unknown_scenarios", "")}),
    ("status", "open", lambda r, b, s, m: edit_json(system_json(r, b, s), status="sold"),
     {("system_status", "systems")}),
    ("system_type", "open", lambda r, b, s, m: edit_json(system_json(r, b, s), system_type="cloud"),
     {("system_type", "systems")}),
    ("field_missing_and_empty", "open", lambda r, b, s, m: edit_json(system_json(r, b, s), hw_notes=None,
                                                                     cooling="", accelerators_per_node=0),
     {("system_field_missing:hw_notes", "systems"), ("system_field_empty:cooling", "systems"),
      ("system_field_empty:accelerators_per_node", "systems")}),
    ("names", "open", lambda r, b, s, m: edit_json(system_json(r, b, s), submitter="Other", division="closed"),
     {("system_submitter", "systems"), ("system_division", "systems")}),
    ("measurements", "open", lambda r, b, s, m: edit_json(r / m / "Offline" / "measurements.json", retraining="",
                                                          weight_data_types=None),
     {("measurements_field_empty:retraining", "Offline/measurements.json"),
      ("measurements_field_missing:weight_data_types", "Offline/measurements.json")}),
    ("scenario_files", "open", lambda r, b, s, m: ((r / m / "Offline" / "user.conf").write_text(""),
                                                   (r / m / "Offline" / "README.md").unlink()),
     {("scenario_file_empty:user.conf", "Offline/user.conf"), ("scenario_file_missing:README.md",
                                                                "Offline/README.md")}),
    ("src", "open", lambda r, b, s, m: shutil.rmtree(b / "src"), {("src_missing", "src")}),
    ("hash_line", "open", lambda r, b, s, m: (r / m / "Offline" / "accuracy" / "accuracy.txt").write_text(
        (r / m / "Offline" / "accuracy" / "accuracy.txt").read_text().split("hash=")[0]),
     {("accuracy_hash", "Offline/accuracy")}),
    ("untruncated_log", "open", lambda r, b, s, m: (r / m / "Offline" / "accuracy" / "mlperf_log_accuracy.json")
     .write_text("[" + ",".join(['{"seq_id": 0, "qsl_idx": 0, "data": "00"}'] * 400) + "]"),
     {("accuracy_log_untruncated", "Offline/accuracy/mlperf_log_accuracy.json")}),
    ("accuracy_target", "closed", lambda r, b, s, m: (r / m / "Offline" / "accuracy" / "accuracy.txt").write_text(
        re.sub(r"^accuracy=[\d.]+", "accuracy=50.000", (r / m / "Offline" / "accuracy" / "accuracy.txt").read_text())),
     {("accuracy_target", "Offline/accuracy")}),
    ("test04_missing", "closed", lambda r, b, s, m: shutil.rmtree(r / m / "Offline" / "TEST04"),
     {("compliance_missing", "Offline/TEST04"),
      ("compliance_file_missing:verify_performance.txt", "Offline/TEST04/verify_performance.txt"),
      ("compliance_file_missing:mlperf_log_detail.txt", "Offline/TEST04")}),
    ("test04_fails", "closed", lambda r, b, s, m: (r / m / "Server" / "TEST04" / "verify_performance.txt")
     .write_text("test speed / reference speed = 1.5\nTEST FAIL\n"),
     {("compliance_performance", "Server/TEST04/verify_performance.txt")}),
    ("test01_accuracy_fails", "closed", lambda r, b, s, m: (r / m / "Server" / "TEST01" / "verify_accuracy.txt")
     .write_text("num_perf_log_data_mismatch = 3\nTEST FAIL\n"),
     {("compliance_accuracy_files", "Server/TEST01/accuracy")}),
]


def _where(kind_where, rel):
    kind, where = kind_where
    return kind, official_checker.normalise(f"{rel}/{where}" if where else rel)


@pytest.mark.parametrize("name, division, breaker, expected", BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_each_rule_is_caught(demo_tree, tmp_path, name, division, breaker, expected):
    root, base, system, rel = make_copy(demo_tree, tmp_path, division)
    before = ours(root)
    breaker(root, base, system, rel)
    after = ours(root)
    sys_rel = f"{division}/TestOrg/systems/{system}.json"
    want = {(k, sys_rel if w == "systems" else f"{division}/TestOrg/src" if w == "src" else _where((k, w), rel)[1])
            for k, w in expected}
    assert after - before == want
    inference = official_checker.checkout()
    if inference is not None:
        official, mine, output = official_checker.compare(inference, root)
        assert official == mine, output[-4000:]


def test_a_quick_tree_has_only_the_quick_problems(demo_tree):
    """Duration and sample count of every performance run, dataset size of every accuracy run;
    the Server runs use ResNet50's 15 ms bound (and a load that meets it). Open division: the
    checker skips compliance runs, whose one-second verdicts vary on a busy machine."""
    kinds = {k for k, _ in ours(demo_tree.root)}
    # a query or two over 15 ms in a one-second run on a busy machine fails early stopping: allowed
    # here for the Server run alone; it says nothing about the tree
    if "early_stopping" in kinds:
        assert {w.rsplit("/", 1)[-1] for k, w in ours(demo_tree.root) if k == "early_stopping"} <= {
            "Server"}, ours(demo_tree.root)
        kinds.discard("early_stopping")
    assert kinds == {"min_duration", "performance_sample_count", "dataset_size"}
    server = next(demo_tree.root.glob("open/TestOrg/results/*/*/Server"))
    for test in ("", "TEST01", "TEST04"):
        text = (server / test / "performance" / "run_1" / "mlperf_log_detail.txt").read_text()
        assert '"key": "effective_target_latency_ns", "value": 15000000,' in text, test


def test_the_copy_has_the_same_problems(demo_tree, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(demo_tree.root, root)
    assert check_tree(root) == demo_tree.problems
    assert check_notes(root) == demo_tree.notes


def test_parity_with_the_official_checker(demo_tree, tmp_path):
    inference = official_checker.checkout()
    if inference is None:
        pytest.skip(f"set {official_checker.ENV} to a checkout of mlcommons/inference to run the official checker")
    for division in ("open", "closed"):
        root, *_ = make_copy(demo_tree, tmp_path / division, division)
        official, mine, output = official_checker.compare(inference, root)
        assert official == mine, output[-4000:]


def test_open_compliance_and_invalid_results_are_notes(demo_tree, tmp_path):
    root, base, system, rel = make_copy(demo_tree, tmp_path)
    before = check_tree(root)
    (root / rel / "Offline" / "TEST04" / "verify_performance.txt").write_text("TEST FAIL\n")
    text = detail(root, rel, "Offline").read_text()
    detail(root, rel, "Offline").write_text(text.replace('"key": "result_validity", "value": "VALID"',
                                                         '"key": "result_validity", "value": "INVALID"'))
    assert check_tree(root) == before  # the checker skips both
    notes = check_notes(root)
    assert f"{rel}/Offline/TEST04/verify_performance.txt: does not say TEST PASS" in notes
    assert any(n.startswith(f"{rel}/Offline/performance/run_1/mlperf_log_detail.txt: result is INVALID") for n in notes)


def test_keyword_spotting_is_checked_by_our_rules_and_said_to_be_unknown(kws_tree, tmp_path):
    kinds = {re.sub(r"^.*?: ", "", re.sub(r"min duration \d+ ms", "min duration N ms", p))
             for p in kws_tree.problems if "verify_performance" not in p}
    assert kinds == {"min duration N ms < 600000 ms", "performance sample count 300 < 4890",
                     "accuracy run covers 300 samples, the dataset has 4890"}
    assert any(validate.UNKNOWN_MODEL_NOTE in n for n in kws_tree.notes)
    root = tmp_path / "tree"
    shutil.copytree(kws_tree.root, root)
    scen = next(root.glob("open/TestOrg/results/*/kws/Offline"))
    full = next(root.glob("full_logs/*/kws/Offline/accuracy/mlperf_log_accuracy.json"))
    txt = scen / "accuracy" / "accuracy.txt"
    txt.write_text(txt.read_text().replace("hash=", "hash=00"))
    assert any(n.endswith(f"hash does not match the full log {full.relative_to(root)}") for n in check_notes(root))


def test_not_a_tree(tmp_path):
    assert check_tree(tmp_path / "nothing") == [f"{tmp_path / 'nothing'}: not a directory"]
    (tmp_path / "elsewhere").mkdir()
    assert check_tree(tmp_path) == [f"{tmp_path}: no division directory (closed, open)"]
    assert check_notes(tmp_path) == ["elsewhere: unknown division, ignored by the checker; accepted: closed, open"]
