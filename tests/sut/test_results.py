from sut.results import RunDirectory


def test_runs_never_overwrite_and_partial_is_marked(tmp_path):
    a = RunDirectory(tmp_path, "demo")
    b = RunDirectory(tmp_path, "demo")
    assert a.path != b.path
    assert a.path.name.endswith(".partial")
    d = a.test_dir("sys", "model", "Offline", "performance")
    assert d.relative_to(a.path).parts == ("sys", "model", "Offline", "performance", "run_1")
    ok = a.finish(ok=True)
    failed = b.finish(ok=False)
    assert ok.exists() and not ok.name.endswith((".partial", ".failed"))
    assert failed.name.endswith(".failed")
    c = RunDirectory(tmp_path, "demo")
    assert c.run_id not in (ok.name, failed.name[:-len(".failed")])
