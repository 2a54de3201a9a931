"""datasets.index: index files read as UTF-8 with errors that name the file and line."""

import pytest

from datasets import index
from sut.errors import DatasetError


def test_lines_are_numbered_blank_ones_skipped_and_a_leading_bom_dropped(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes("\ufeffa 1\r\n\n  \nb 2\n\ufeffc 3".encode())
    assert [(n, line.strip()) for n, line in index.read_lines(str(path))] == [(1, "a 1"), (4, "b 2"), (5, "\ufeffc 3")]


def test_unreadable_and_non_utf8_files_are_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="cannot read .*missing.txt: No such file"):
        list(index.read_lines(str(tmp_path / "missing.txt")))
    path = tmp_path / "list.txt"
    path.write_bytes(b"ok 1\nna\xefve 2\n")
    with pytest.raises(DatasetError, match=r"list.txt line 2: byte 0xef is not UTF-8"):
        list(index.read_lines(str(path)))


def test_visible_shows_what_cannot_be_seen():
    assert index.visible("plain/name.JPEG") == "plain/name.JPEG"
    assert index.visible("\ufeffname.JPEG") == "'\\ufeffname.JPEG'"


def test_unique_names_the_first_line():
    unique = index.Unique("v.txt")
    unique.add("a", 1)
    unique.add("b", 2)
    with pytest.raises(DatasetError, match=r"v.txt line 3 lists a again \(first at line 1\)"):
        unique.add("a", 3)
