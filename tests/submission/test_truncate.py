import hashlib
import json

from submission import truncate
from submission.rules import MAX_ACCURACY_LOG_BYTES


def _log(path, entries):
    path.write_text(json.dumps([{"seq_id": i, "qsl_idx": i, "data": "0000803F"} for i in range(entries)], indent=0))
    return path


def test_large_log_keeps_head_and_tail_and_the_full_hash(tmp_path):
    full = _log(tmp_path / "full.json", 5000)
    data = full.read_bytes()
    out = tmp_path / "tree" / "mlperf_log_accuracy.json"
    digest = truncate.truncate_copy(full, out)
    assert digest == hashlib.sha256(data).hexdigest()
    kept = out.read_bytes()
    assert kept == data[:4096] + b"\n\n...\n\n" + data[-4096:]
    assert len(kept) <= MAX_ACCURACY_LOG_BYTES
    assert full.read_bytes() == data  # the full log is never touched


def test_small_log_is_copied_whole(tmp_path):
    full = _log(tmp_path / "full.json", 3)
    out = tmp_path / "out.json"
    truncate.truncate_copy(full, out)
    assert out.read_bytes() == full.read_bytes()


def test_hash_line_is_appended_once(tmp_path):
    txt = tmp_path / "accuracy.txt"
    txt.write_text("accuracy=92.333%, good=277, total=300\n")
    truncate.write_hash_line(txt, "ab" * 32)
    truncate.write_hash_line(txt, "cd" * 32)
    assert txt.read_text() == "accuracy=92.333%, good=277, total=300\nhash=" + "cd" * 32 + "\n"
    assert truncate.read_hash_line(txt) == "cd" * 32
